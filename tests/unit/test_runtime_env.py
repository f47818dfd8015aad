"""Runtime environments without a cluster: fields, merging, packing, node-side checks."""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nbray import _options
from nbray.runtime_env import RuntimeEnv, merge, packaging, resolve
from nbray.runtime_env.node_agent import RuntimeEnvAgent, choose_evictions, safe_extract, single_top_dir
from nbray.runtime_env.pip_env import pip_command, pip_hash
from nbray.runtime_env.spec import setup_timeout_s, validate

pytestmark = pytest.mark.timeout(30)


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


# ---- fields ------------------------------------------------------------------------------------


def test_unknown_field_names_it_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\['conda_env'\].*working_dir, py_modules, pip, env_vars"):
        validate({"conda_env": "x"}, "f")
    with pytest.raises(ValueError, match="workign_dir"):
        RuntimeEnv(workign_dir=".")
    with pytest.raises(ValueError, match="unknown field"):
        _options.validate({"runtime_env": {"nope": 1}}, _options.TASK_OPTIONS, "task f")


@pytest.mark.parametrize("env, match", [
    ({"env_vars": {"A": 1}}, "strings to strings"),
    ({"working_dir": 3}, "working_dir"),
    ({"py_modules": "pkg"}, "py_modules"),
    ({"pip": 5}, "pip"),
    ({"pip": {"packages": ["a"], "extra": 1}}, "extra"),
    ({"excludes": "*.log"}, "excludes"),
    ({"config": {"setup_timeout_seconds": 0}}, "setup_timeout_seconds"),
    ({"config": {"bogus": 1}}, "bogus"),
])
def test_bad_values_are_refused(env: dict[str, Any], match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        validate(env, "f")


def test_runtime_env_class_is_a_checked_dict(tmp_path: Path) -> None:
    env = RuntimeEnv(working_dir="src", pip=["a==1"], env_vars={"X": "1"}, config={"setup_timeout_seconds": 5})
    assert isinstance(env, dict)
    assert env["pip"] == {"packages": ["a==1"], "pip_install_options": []}
    assert env.env_vars() == {"X": "1"} and env.working_dir() == "src"
    assert RuntimeEnv.deserialize(env.serialize()) == env
    assert setup_timeout_s(env) == 5.0 and setup_timeout_s({}) == 600.0


def test_pip_requirements_file_is_read(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\nfoo==1.0\n\nbar\n")
    assert validate({"pip": str(req)}, "f")["pip"]["packages"] == ["foo==1.0", "bar"]
    with pytest.raises(ValueError, match="cannot read"):
        validate({"pip": str(tmp_path / "missing.txt")}, "f")


def test_merge_task_fields_override_job_fields_and_env_vars_merge_by_key() -> None:
    job = {"working_dir": "job", "pip": {"packages": ["a"]}, "env_vars": {"A": "job", "B": "job"}}
    task = {"working_dir": "task", "env_vars": {"B": "task", "C": "task"}}
    assert merge(job, task) == {"working_dir": "task", "pip": {"packages": ["a"]},
                                "env_vars": {"A": "job", "B": "task", "C": "task"}}
    assert merge(None, task) == task and merge(job, None) == job


def test_encoded_fields_merge_one_by_one() -> None:
    parent = resolve.encode({"working_dir": "gcs://_nbray_pkg_" + "a" * 32 + ".zip", "env_vars": {"A": "1"}})
    child = resolve.encode({"pip": {"packages": ["x"], "pip_install_options": []}})
    assert parent["A"] == "1"
    merged = json.loads(resolve.merge_encoded(parent[resolve.RUNTIME_ENV_VAR], child[resolve.RUNTIME_ENV_VAR]))
    assert set(merged) == {"working_dir", "pip"}
    # env_vars alone (or config) need no node setup: no extra variable
    assert resolve.encode({"env_vars": {"A": "1"}, "config": {"setup_timeout_seconds": 3}}) == {"A": "1"}


# ---- packing -------------------------------------------------------------------------------------


def test_packing_is_deterministic_and_content_addressed(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", {"m.py": "x = 1\n", "d/data.txt": "hello"})
    b = tree(tmp_path / "b", {"d/data.txt": "hello", "m.py": "x = 1\n"})
    os.utime(b / "m.py", (1, 1))
    da, db = packaging.pack_directory(str(a)), packaging.pack_directory(str(b))
    assert da == db and packaging.uri_of(da) == packaging.uri_of(db)
    (b / "m.py").write_text("x = 2\n")
    assert packaging.uri_of(packaging.pack_directory(str(b))) != packaging.uri_of(da)
    assert sorted(zipfile.ZipFile(io.BytesIO(da)).namelist()) == ["d/data.txt", "m.py"]


@pytest.mark.parametrize("patterns, kept", [
    (["*.log"], ["a.py", "data/x.csv", "secret/k.txt"]),
    (["secret/"], ["a.py", "data/x.csv", "logs/run.log"]),
    (["/data"], ["a.py", "logs/run.log", "secret/k.txt"]),
    (["data/*.csv", "logs"], ["a.py", "secret/k.txt"]),
    (["# comment", ""], ["a.py", "data/x.csv", "logs/run.log", "secret/k.txt"]),
])
def test_excludes_follow_gitignore_style_rules(tmp_path: Path, patterns: list[str], kept: list[str]) -> None:
    root = tree(tmp_path, {"a.py": "", "data/x.csv": "", "logs/run.log": "", "secret/k.txt": ""})
    assert [rel for _, rel in packaging.iter_files(str(root), patterns)] == kept


def test_size_limit_fails_before_anything_is_packed(tmp_path: Path) -> None:
    root = tree(tmp_path / "big", {"small.py": "x"})
    (root / "huge.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(packaging.PackageError, match="huge.bin.*excludes"):
        packaging.pack_directory(str(root), max_bytes=4096)
    assert packaging.pack_directory(str(root), max_bytes=4096, excludes=["*.bin"])
    with pytest.raises(packaging.PackageError, match="limit"):
        resolve.pack({"working_dir": str(root), "config": {"max_package_bytes": 100}}, "f")


def test_missing_or_odd_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(packaging.PackageError, match="does not exist"):
        resolve.pack({"working_dir": str(tmp_path / "nope")}, "f")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(packaging.PackageError, match="neither a directory nor a .zip"):
        resolve.pack({"working_dir": str(tmp_path / "file.txt")}, "f")
    with pytest.raises(packaging.PackageError, match="does not exist"):
        resolve.pack({"py_modules": [str(tmp_path / "nope")]}, "f")


def test_py_modules_keep_their_top_level_folder(tmp_path: Path) -> None:
    pkg = tree(tmp_path / "mypkg", {"__init__.py": "", "sub/m.py": ""})
    names = zipfile.ZipFile(io.BytesIO(packaging.pack_py_module(str(pkg), (), None))).namelist()
    assert sorted(names) == ["mypkg/__init__.py", "mypkg/sub/m.py"]
    names = zipfile.ZipFile(io.BytesIO(packaging.pack_py_module(json, (), None))).namelist()
    assert "json/__init__.py" in names


def test_resolved_environments_name_uris_and_resolve_again_unchanged(tmp_path: Path) -> None:
    wd = tree(tmp_path / "wd", {"m.py": ""})
    resolved, uploads = resolve.pack({"working_dir": str(wd), "env_vars": {"A": "1"}}, "f")
    assert packaging.is_package_uri(resolved["working_dir"]) and list(uploads) == [resolved["working_dir"]]
    again, more = resolve.pack(resolved, "f")
    assert again == resolved and more == {}


class FakeKV:
    """The two GCS calls packages use, in memory."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.puts = 0

    def call(self, name: str, request: Any, timeout_s: float | None = None) -> Any:
        from nbray.protocol import gcs_pb2

        if name == "KVPut":
            self.puts += 1
            self.data[request.key] = request.value
            return gcs_pb2.KVPutReply(added=True)
        value = self.data.get(request.key)
        return gcs_pb2.KVGetReply(found=value is not None, value=value or b"")


def test_packages_travel_through_the_kv_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    uri = packaging.uri_of(data)
    kv = FakeKV()
    assert packaging.store_package(kv, uri, data, chunk_bytes=3000)
    assert kv.puts == 5  # 4 chunks + the entry saying it is complete
    assert not packaging.store_package(kv, uri, data, chunk_bytes=3000)  # stored once
    assert packaging.fetch_package(kv, uri) == data
    kv.data[b"pkg:" + packaging.hash_of_uri(uri).encode() + b":1"] = b"x" * 3000
    with pytest.raises(packaging.PackageError, match="corrupt"):
        packaging.fetch_package(kv, uri)


# ---- node side ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["gcs://_nbray_pkg_../../etc.zip", "/etc/passwd", "gcs://other.zip",
                                 "gcs://_nbray_pkg_" + "a" * 32 + ".zip/../x"])
def test_uris_that_are_not_package_names_are_refused(uri: str) -> None:
    with pytest.raises(packaging.PackageError, match="refusing"):
        packaging.hash_of_uri(uri)


@pytest.mark.parametrize("member", ["../evil.py", "/abs/evil.py", "a/../../evil.py"])
def test_unpacking_refuses_escaping_members(tmp_path: Path, member: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.py", "")
        zf.writestr(member, "x")
    with pytest.raises(packaging.PackageError, match="refusing"):
        safe_extract(buf.getvalue(), str(tmp_path / "out"))
    assert not (tmp_path / "evil.py").exists()


def test_agent_unpacks_once_and_collects_unused(tmp_path: Path) -> None:
    wd = tree(tmp_path / "wd", {"top/m.py": "x = 1"})
    data = packaging.pack_directory(str(wd))
    uri = packaging.uri_of(data)
    kv = FakeKV()
    packaging.store_package(kv, uri, data)
    posted: list[Any] = []
    agent = RuntimeEnvAgent(str(tmp_path / "node"), lambda: kv, lambda fn, *a: posted.append((fn, a)), 0)
    context, dirs = agent.setup({"working_dir": uri})
    ctx = json.loads(context[resolve.CONTEXT_VAR])
    assert ctx["cwd"] == single_top_dir(dirs[0]) and ctx["cwd"].endswith("top")
    assert open(os.path.join(ctx["cwd"], "m.py")).read() == "x = 1"
    gets = len(kv.data)
    assert agent.ensure_package(uri) == dirs[0] and len(kv.data) == gets
    agent._finish(json.dumps({"working_dir": uri}), context, dirs, "")
    assert agent.collect({json.dumps({"working_dir": uri})}) == []  # in use: kept
    assert agent.collect(set()) == dirs


def test_evictions_keep_in_use_and_the_most_recent_unused() -> None:
    last = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert choose_evictions(last, {"a"}, 1) == ["c", "b"]
    assert choose_evictions(last, set(), 10) == []
    assert choose_evictions(last, {"a", "b", "c", "d"}, 0) == []


def test_pip_is_kept_offline_only_when_every_requirement_is_local(tmp_path: Path) -> None:
    wheel = tmp_path / "p-0.1-py3-none-any.whl"
    wheel.write_bytes(b"")
    local = pip_command(sys.executable, {"packages": [str(wheel)], "pip_install_options": []})
    assert "--no-index" in local and local[-1] == str(wheel)
    remote = pip_command(sys.executable, {"packages": ["requests"], "pip_install_options": []})
    assert "--no-index" not in remote
    assert pip_hash({"packages": ["a"]}) == pip_hash({"packages": ["a"]}) != pip_hash({"packages": ["b"]})


def test_setup_stops_at_its_deadline(tmp_path: Path) -> None:
    import time

    from nbray.runtime_env.pip_env import SetupFailed, ensure_venv

    with pytest.raises(SetupFailed, match="setup_timeout_seconds"):
        ensure_venv(str(tmp_path), {"packages": ["x"], "pip_install_options": []}, time.monotonic() + 0.05)
    assert [p for p in os.listdir(tmp_path) if not p.endswith(".lock")] == []


def test_incompressible_files_are_stored_and_the_rest_deflated(tmp_path: Path) -> None:
    (tmp_path / "noise.bin").write_bytes(os.urandom(200_000))
    (tmp_path / "text.txt").write_text("the same line again\n" * 10_000)
    (tmp_path / "tiny.txt").write_text("x")
    data = packaging.pack_directory(str(tmp_path))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
        assert zf.read("noise.bin") == (tmp_path / "noise.bin").read_bytes()
    assert kinds == {"noise.bin": zipfile.ZIP_STORED, "text.txt": zipfile.ZIP_DEFLATED,
                     "tiny.txt": zipfile.ZIP_DEFLATED}
    assert packaging.pack_directory(str(tmp_path)) == data  # still the same bytes for the same files
