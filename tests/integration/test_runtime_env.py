"""Runtime environments on a real cluster: working_dir, excludes, py_modules,
pip (offline, with a wheel built here), setup failures, client mode, and
the node's cache being collected."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbray
from nbray.exceptions import RuntimeEnvSetupError
from nbray.testing import Cluster, wait_for_condition

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def head() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "ray_client_server_port": 0})
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The driver runs from a directory that holds none of the shipped files."""
    d = tmp_path / "driver_cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


@pytest.fixture
def driver(head: Cluster, elsewhere: Path) -> Iterator[Any]:
    ctx = nbray.init(address=head.address)
    try:
        yield ctx
    finally:
        nbray.shutdown()


def make_working_dir(root: Path, name: str = "wd") -> Path:
    wd = root / name
    (wd / "sub").mkdir(parents=True)
    (wd / f"helper_{name}.py").write_text("def answer():\n    return 42\n")
    (wd / "sub" / "data.txt").write_text("payload\n")
    (wd / "skip.log").write_text("log\n")
    (wd / "secret").mkdir()
    (wd / "secret" / "key.txt").write_text("nope\n")
    return wd


def build_wheel(root: Path, name: str, value: str) -> Path:
    """A pure-Python wheel made by hand (no network, no build backend)."""
    dist = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    path = root / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, text in files.items():
            zf.writestr(p, text)
        zf.writestr(f"{dist}/RECORD", record)
    return path


# ---- working_dir ------------------------------------------------------------------------------


def test_working_dir_reaches_a_task_and_an_actor(driver: Any, tmp_path: Path, elsewhere: Path) -> None:
    wd = make_working_dir(tmp_path)
    env = {"working_dir": str(wd)}

    @nbray.remote
    def use_it() -> tuple[int, str, str]:
        import helper_wd

        with open("sub/data.txt") as f:
            return helper_wd.answer(), f.read(), os.getcwd()

    answer, data, cwd = nbray.get(use_it.options(runtime_env=env).remote(), timeout=60)
    assert (answer, data) == (42, "payload\n")
    assert cwd != str(wd) and cwd != str(elsewhere)  # the unpacked copy on the node

    @nbray.remote
    class Reader:
        def read(self) -> tuple[int, str]:
            import helper_wd

            return helper_wd.answer(), open("sub/data.txt").read()

    actor = Reader.options(runtime_env=env).remote()
    assert nbray.get(actor.read.remote(), timeout=60) == (42, "payload\n")

    @nbray.remote
    def child() -> int:
        import helper_wd

        return helper_wd.answer()

    @nbray.remote
    def parent() -> int:
        return nbray.get(child.remote())  # a child task runs in its parent's environment

    assert nbray.get(parent.options(runtime_env=env).remote(), timeout=60) == 42

    @nbray.remote
    def plain() -> bool:
        import importlib.util

        return importlib.util.find_spec("helper_wd") is None

    assert nbray.get(plain.remote(), timeout=60)


def test_excludes_leave_files_out(driver: Any, tmp_path: Path) -> None:
    wd = make_working_dir(tmp_path, "wdx")

    @nbray.remote
    def listing() -> list[str]:
        return sorted(os.path.relpath(os.path.join(d, f), ".") for d, _, fs in os.walk(".") for f in fs)

    env = {"working_dir": str(wd), "excludes": ["secret/", "*.log"]}
    files = nbray.get(listing.options(runtime_env=env).remote(), timeout=60)
    assert files == ["helper_wdx.py", os.path.join("sub", "data.txt")]


def test_missing_working_dir_fails_at_the_call(driver: Any, tmp_path: Path) -> None:
    @nbray.remote
    def f() -> int:
        return 1

    with pytest.raises(ValueError, match="does not exist"):
        f.options(runtime_env={"working_dir": str(tmp_path / "nope")}).remote()
    with pytest.raises(ValueError, match="unknown field"):
        f.options(runtime_env={"working_dri": "."})


def test_job_level_working_dir_merges_with_task_env_vars(head: Cluster, tmp_path: Path, elsewhere: Path) -> None:
    wd = make_working_dir(tmp_path, "wdjob")
    nbray.init(address=head.address, runtime_env={"working_dir": str(wd), "env_vars": {"A": "job", "B": "job"}})
    try:
        @nbray.remote
        def look() -> tuple[int, str, str]:
            import helper_wdjob

            return helper_wdjob.answer(), os.environ["A"], os.environ["B"]

        assert nbray.get(look.remote(), timeout=60) == (42, "job", "job")
        task_env = {"env_vars": {"B": "task"}}
        assert nbray.get(look.options(runtime_env=task_env).remote(), timeout=60) == (42, "job", "task")
    finally:
        nbray.shutdown()


# ---- py_modules -----------------------------------------------------------------------------------


def test_py_modules_from_a_directory_and_a_module_object(driver: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkgs" / "rtpkg_dir"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .inner import VALUE\n")
    (pkg / "inner.py").write_text("VALUE = 'from a directory'\n")
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "rtmod_single.py").write_text("VALUE = 'from a module object'\n")
    monkeypatch.syspath_prepend(str(mods))
    import rtmod_single  # type: ignore[import-not-found]

    @nbray.remote
    def use() -> tuple[str, str]:
        import rtmod_single
        import rtpkg_dir

        return rtpkg_dir.VALUE, rtmod_single.VALUE

    env = {"py_modules": [str(pkg), rtmod_single]}
    assert nbray.get(use.options(runtime_env=env).remote(), timeout=60) == (
        "from a directory", "from a module object")
    sys.modules.pop("rtmod_single", None)


# ---- pip ----------------------------------------------------------------------------------------


def test_pip_installs_a_local_wheel_for_its_tasks_only(driver: Any, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "rtwheelpkg", "installed by pip")

    @nbray.remote
    def use() -> tuple[str, str]:
        import rtwheelpkg

        return rtwheelpkg.VALUE, rtwheelpkg.__file__

    value, where = nbray.get(use.options(runtime_env={"pip": [str(wheel)]}).remote(), timeout=120)
    assert value == "installed by pip"
    assert "runtime_resources" in where and "site-packages" in where

    @nbray.remote
    def without() -> bool:
        import importlib.util

        return importlib.util.find_spec("rtwheelpkg") is None

    assert nbray.get(without.remote(), timeout=60)
    import importlib.util

    assert importlib.util.find_spec("rtwheelpkg") is None  # the driver's environment is untouched


def test_a_failing_pip_spec_raises_setup_error_with_pips_output(driver: Any) -> None:
    @nbray.remote
    def f() -> int:
        return 1

    bad = {"pip": {"packages": ["nbray-no-such-package-xyz==9.9"], "pip_install_options": ["--no-index"]}}
    with pytest.raises(RuntimeEnvSetupError) as info:
        nbray.get(f.options(runtime_env=bad).remote(), timeout=120)
    assert "No matching distribution" in str(info.value) or "nbray-no-such-package-xyz" in str(info.value)

    @nbray.remote
    class A:
        def ping(self) -> int:
            return 1

    actor = A.options(runtime_env=bad).remote()
    with pytest.raises(RuntimeEnvSetupError):
        nbray.get(actor.ping.remote(), timeout=120)
    assert nbray.get(f.remote(), timeout=60) == 1


# ---- client mode -------------------------------------------------------------------------------


def test_client_mode_ships_a_working_dir(head: Cluster, tmp_path: Path, elsewhere: Path) -> None:
    wd = make_working_dir(tmp_path, "wdclient")
    nbray.init(head.client_address, runtime_env={"working_dir": str(wd)})
    try:
        @nbray.remote
        def use_it() -> tuple[int, str]:
            import helper_wdclient

            return helper_wdclient.answer(), open("sub/data.txt").read()

        assert nbray.get(use_it.remote(), timeout=60) == (42, "payload\n")
        wd2 = make_working_dir(tmp_path, "wdclient2")

        @nbray.remote
        def use_other() -> int:
            import helper_wdclient2

            return helper_wdclient2.answer()

        assert nbray.get(use_other.options(runtime_env={"working_dir": str(wd2)}).remote(), timeout=60) == 42
    finally:
        nbray.shutdown()


# ---- collection -------------------------------------------------------------------------------


def test_unused_environments_are_deleted_from_the_node(tmp_path: Path, elsewhere: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1},
                      system_config={"runtime_env_max_unused": 0, "idle_worker_kill_ms": 200})
    try:
        nbray.init(address=cluster.address)
        wd = make_working_dir(tmp_path, "wdgc")

        @nbray.remote
        def where() -> str:
            return os.getcwd()

        path = nbray.get(where.options(runtime_env={"working_dir": str(wd)}).remote(), timeout=60)
        assert os.path.isdir(path) and "runtime_resources" in path
        wait_for_condition(lambda: not os.path.exists(path), timeout=30)
    finally:
        nbray.shutdown()
        cluster.shutdown()


def test_benchmark_figures(driver: Any, tmp_path: Path) -> None:
    """Not an assertion of speed: prints the setup costs the report quotes."""
    wd = tmp_path / "big"
    wd.mkdir()
    for i in range(10):
        (wd / f"blob{i}.bin").write_bytes(os.urandom(1024 * 1024))

    @nbray.remote
    def noop() -> int:
        return 1

    nbray.get(noop.remote(), timeout=60)
    t0 = time.perf_counter()
    nbray.get(noop.remote(), timeout=60)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    opts = noop.options(runtime_env={"working_dir": str(wd)})
    nbray.get(opts.remote(), timeout=120)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        nbray.get(opts.remote(), timeout=60)
    cached_s = (time.perf_counter() - t0) / 20
    wheel = build_wheel(tmp_path, "rtbenchpkg", "x")
    nbray.get(noop.options(runtime_env={"pip": [str(wheel)]}).remote(), timeout=120)
    t0 = time.perf_counter()  # same venv, new worker (other env_vars): the venv is reused
    nbray.get(noop.options(runtime_env={"pip": [str(wheel)], "env_vars": {"K": "1"}}).remote(), timeout=60)
    pip_cached_s = time.perf_counter() - t0
    print(f"\nplain task {plain_s * 1000:.1f} ms; first task with a new 10 MB working_dir {first_s * 1000:.0f} ms; "
          f"later tasks with it {cached_s * 1000:.1f} ms; first task in a new worker with a cached pip env "
          f"{pip_cached_s * 1000:.0f} ms")
    assert cached_s < 1.0


# ---- packages in the GCS ----------------------------------------------------------------------------

_HOLDING_DRIVER = """
import sys
import nbray
from nbray.api import core_or_init
from nbray.runtime_env import packaging

nbray.init(address=sys.argv[1], runtime_env={"working_dir": sys.argv[2]})

@nbray.remote
def read():
    with open("data.txt") as f:
        return f.read().strip()

print("read", nbray.get(read.remote(), timeout=60), flush=True)
sys.stdin.readline()
# Another job using the package ended meanwhile: it is still there for this one.
print("fetched", len(packaging.fetch_package(core_or_init().gcs, sys.argv[3])), flush=True)
sys.stdin.readline()
"""


class _Driver:
    def __init__(self, script: Path, *args: str, cwd: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.proc = subprocess.Popen([sys.executable, str(script), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                     env=env)

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def next(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def _package_keys(uri: str) -> list[bytes]:
    from nbray.api import core_or_init
    from nbray.protocol import gcs_pb2
    from nbray.runtime_env import package_refs, packaging

    prefix = package_refs.package_prefix(packaging.hash_of_uri(uri))
    return list(core_or_init().gcs.call("KVKeys", gcs_pb2.KVKeysRequest(ns=packaging.KV_NAMESPACE,
                                                                        prefix=prefix)).keys)


def _holders(uri: str) -> list[bytes]:
    from nbray.api import core_or_init
    from nbray.protocol import gcs_pb2
    from nbray.runtime_env import packaging

    prefix = f"ref:{packaging.hash_of_uri(uri)}:".encode()
    return list(core_or_init().gcs.call("KVKeys", gcs_pb2.KVKeysRequest(ns=packaging.KV_NAMESPACE,
                                                                        prefix=prefix)).keys)


@pytest.mark.timeout(240)
def test_a_package_lives_while_a_job_uses_it_and_goes_with_the_last_one(tmp_path: Path, elsewhere: Path) -> None:
    from nbray.runtime_env import packaging

    grace_s = 0.3
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2},
                      system_config={"runtime_env_package_grace_ms": int(grace_s * 1000)})
    wd = tmp_path / "shared_wd"
    wd.mkdir()
    (wd / "data.txt").write_text("shared payload\n")
    uri = packaging.uri_of(packaging.pack_working_dir(str(wd), (), None))
    script = tmp_path / "holding_driver.py"
    script.write_text(_HOLDING_DRIVER)
    drivers: list[_Driver] = []
    try:
        nbray.init(address=cluster.address)  # this test's own driver holds nothing
        first = _Driver(script, cluster.address, str(wd), uri, cwd=elsewhere)
        drivers.append(first)
        assert first.line() == "read shared payload"
        assert _package_keys(uri), "the working_dir was uploaded"
        second = _Driver(script, cluster.address, str(wd), uri, cwd=elsewhere)
        drivers.append(second)
        assert second.line() == "read shared payload"
        wait_for_condition(lambda: len(_holders(uri)) == 2, timeout=30)

        first.next()
        first.line()
        first.next()
        assert first.proc.wait(30) == 0
        wait_for_condition(lambda: len(_holders(uri)) == 1, timeout=30)
        # Nothing should happen now: watch over several grace periods that the package stays.
        watch_until = time.monotonic() + 5 * grace_s
        while time.monotonic() < watch_until:
            assert _package_keys(uri), "deleted while another job still uses it"
            time.sleep(0.05)
        second.next()
        assert second.line() == f"fetched {len(packaging.pack_working_dir(str(wd), (), None))}"
        second.next()
        assert second.proc.wait(30) == 0
        wait_for_condition(lambda: not _package_keys(uri) and not _holders(uri), timeout=30)
    finally:
        for d in drivers:
            d.close()
        nbray.shutdown()
        cluster.shutdown()
