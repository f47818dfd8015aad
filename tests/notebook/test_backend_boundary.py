"""The notebook layer's import rules and the backend choice (no cluster, no Ray)."""

from __future__ import annotations

import ast
import pathlib
import queue

import pytest

from nbray.jupyter import backends
from nbray.jupyter.backends import ray_backend, ray_worker
from nbray.jupyter.backends.base import BackendUnavailable

PKG = pathlib.Path(__file__).resolve().parents[2] / "nbray"
NOTEBOOK_LAYER = ("jupyter", "widgets")
RUNTIME_CORE = ("object_ref.py", "driver_hooks.py", "worker", "raylet", "gcs", "object_store", "rpc", "common")


def _imports(path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) for every import in `path`, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.append((base, node.lineno, id(node) in top_level))
            out += [(f"{base}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
    return out


def _files(*roots: str) -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    for root in roots:
        path = PKG / root
        files += [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
    return files


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_notebook_layer_never_imports_worker_internals() -> None:
    bad = [f"{path.relative_to(PKG)}:{line} imports {module}"
           for path in _files(*NOTEBOOK_LAYER)
           for module, line, _ in _imports(path) if _under(module, "nbray.worker")]
    assert bad == []


def test_the_runtime_core_never_imports_notebook_code() -> None:
    bad = [f"{path.relative_to(PKG)}:{line} imports {module}" for path in _files(*RUNTIME_CORE)
           for module, line, _ in _imports(path)
           if _under(module, "nbray.jupyter") or _under(module, "nbray.widgets")]
    assert bad == []


def test_ray_is_imported_only_inside_the_ray_backend_and_only_when_called() -> None:
    for path in _files(*NOTEBOOK_LAYER):
        for module, line, top in _imports(path):
            if _under(module, "ray"):
                where = f"{path.relative_to(PKG)}:{line}"
                in_ray_backend = path.parent.name == "backends" and path.name.startswith("ray_")
                assert in_ray_backend, f"{where} imports {module}"
                assert not top, f"{where} imports {module} at import time"


def test_the_import_rules_see_function_level_and_relative_imports(tmp_path: pathlib.Path) -> None:
    sample = PKG / "jupyter" / "backends" / "base.py"
    found = {module for module, _, _ in _imports(sample)}
    assert "abc" in found and "dataclasses.dataclass" in found
    assert any(top is False for _, _, top in _imports(PKG / "jupyter" / "backends" / "ray_backend.py"))


def test_nbray_is_the_default_backend() -> None:
    assert backends.current().name == "nbray"
    with pytest.raises(ValueError, match="unknown backend 'dask'"):
        backends.make("dask")


def test_choosing_ray_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(BackendUnavailable, match=r"pip install 'ray\[default\]>=2.50'"):
        backends.make("ray")


@pytest.mark.parametrize("version", ["2.49.2", "1.13.0", "2.9.3"])
def test_an_old_ray_is_refused_naming_both_versions(version: str) -> None:
    with pytest.raises(BackendUnavailable) as info:
        ray_backend.check_ray_version(version)
    assert version in str(info.value) and ">= 2.50" in str(info.value)


@pytest.mark.parametrize("version", ["2.50.0", "2.60.0", "2.60.1rc1", "3.0.0"])
def test_supported_ray_versions_pass(version: str) -> None:
    ray_backend.check_ray_version(version)


@pytest.mark.parametrize(("address", "target"), [
    (None, None), ("auto", None), ("local", None),
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10001", ("head", 10001)),
    ("ray://[::1]:10001", ("::1", 10001)),
])
def test_the_address_to_check_before_connecting(address: str | None, target: tuple[str, int] | None) -> None:
    assert ray_backend.tcp_target(address) == target


def test_an_unreadable_address_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot read a Ray address from 'head'"):
        ray_backend.tcp_target("head")


def test_drain_joins_pieces_of_one_stream_and_sees_the_end() -> None:
    chunks: queue.Queue[object] = queue.Queue()
    for item in [(False, "a"), (False, "b"), (True, "err"), (False, "c")]:
        chunks.put(item)
    assert ray_worker.drain(chunks, 0.01) == ([(False, "ab"), (True, "err"), (False, "c")], False)
    chunks.put((False, "last"))
    chunks.put(ray_worker._DONE)
    assert ray_worker.drain(chunks, 0.01) == ([(False, "last")], True)
    assert ray_worker.drain(chunks, 0.01) == ([], False)


def test_stream_cell_yields_output_then_the_result() -> None:
    from nbray.jupyter.remote_cell import CellRequest

    req = CellRequest(code="print('one')\nz = 2\nz * 3", label="In[1]", run_id="r", pull=("z",),
                      last_expression=True)
    items = list(ray_worker.stream_cell(req))
    text = "".join(t for kind, *rest in items if kind == "out" for _err, t in rest[0])
    assert text.startswith("one\n")
    kind, value, reply = items[-1]
    assert (kind, value, reply.pulled) == ("result", 6, {"z": 2})


def test_stream_cell_hands_back_the_cells_error_with_its_lines() -> None:
    from nbray.jupyter.remote_cell import TRACEBACK_ATTR, CellRequest

    req = CellRequest(code="a = 1\nraise KeyError(a)", label="In[4]", run_id="r", header_line="%%remote")
    kind, error = list(ray_worker.stream_cell(req))[-1]
    assert kind == "error" and isinstance(error, KeyError)
    assert "Cell In[4], line 3" in getattr(error, TRACEBACK_ATTR)


def test_object_refs_render_as_html_once_the_notebook_layer_is_loaded() -> None:
    from nbray import object_ref
    from nbray.jupyter import reprs

    assert object_ref.html_renderers["ObjectRef"] is reprs.object_ref_html
    assert object_ref.html_renderers["ObjectRefGenerator"] is reprs.generator_html
