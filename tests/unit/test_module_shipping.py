"""Which modules travel by value (nbray.common.module_shipping), without a cluster."""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbray.common import module_shipping, serialization
from nbray.jupyter.magic_options import parse_runtime_env

pytestmark = pytest.mark.timeout(30)

ROOTS = ("/usr/lib/python3.11", "/opt/venv/lib/python3.11/site-packages")


@pytest.mark.parametrize(("name", "file", "by_value"), [
    ("helper", "/home/me/notebooks/helper.py", True),
    ("pkg.sub", "/home/me/lib/pkg/sub.py", True),
    ("json", "/usr/lib/python3.11/json/__init__.py", False),
    ("numpy", "/opt/venv/lib/python3.11/site-packages/numpy/__init__.py", False),
    ("other", "/somewhere/env/lib/python3.12/site-packages/other.py", False),
    ("deb", "/usr/lib/python3/dist-packages/deb.py", False),
    ("nbray.api", "/work/checkout/nbray/api.py", False),
    ("nbray", "/work/checkout/nbray/__init__.py", False),
    ("cloudpickle", "/work/checkout/cloudpickle/__init__.py", False),
    ("__main__", "/home/me/script.py", False),
    ("ext", "/home/me/lib/ext.cpython-311-x86_64-linux-gnu.so", False),
    ("builtin_like", None, False),
    ("near", "/usr/lib/python3.11x/near.py", True),  # a prefix of a root's name is not inside it
])
def test_rule(name: str, file: str | None, by_value: bool) -> None:
    assert module_shipping.ships_by_value(name, file, ROOTS) is by_value


def test_installed_roots_cover_this_interpreter() -> None:
    roots = module_shipping.installed_roots()
    assert not module_shipping.ships_by_value("os", os.__file__, roots)
    assert not module_shipping.ships_by_value("pytest", pytest.__file__, roots)


def test_mode_parsing() -> None:
    assert module_shipping.parse_mode(" Always ") == "always"
    with pytest.raises(ValueError, match="auto, always, never"):
        module_shipping.parse_mode("sometimes")


@pytest.fixture
def local_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module `shipme_helper` (importing `shipme_inner`) in a directory on sys.path."""
    (tmp_path / "shipme_inner.py").write_text("def inner(x):\n    return x + 1\n")
    (tmp_path / "shipme_helper.py").write_text(
        "import shipme_inner\n\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n\n"
        "def compute(x):\n    return shipme_inner.inner(x) * 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path
    finally:
        module_shipping.configure(mode="auto", cluster_is_remote=False)
        for name in ("shipme_helper", "shipme_inner"):
            sys.modules.pop(name, None)


def _loads_without(data: bytes, *names: str) -> object:
    """Unpickle as a process that cannot import `names` would."""
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    saved_path = list(sys.path)
    sys.path[:] = [p for p in sys.path if not os.path.exists(os.path.join(p, "shipme_helper.py"))]
    try:
        return pickle.loads(data)
    finally:
        sys.path[:] = saved_path
        sys.modules.update(saved)


def test_local_module_goes_by_value_only_when_active(local_module: Path) -> None:
    helper = importlib.import_module("shipme_helper")
    module_shipping.configure(mode="auto", cluster_is_remote=False)
    by_reference = serialization.dumps_function(helper.compute)
    with pytest.raises(ModuleNotFoundError):
        _loads_without(by_reference, "shipme_helper", "shipme_inner")
    module_shipping.configure(cluster_is_remote=True)
    data, modules = serialization.dumps_function_with_modules(helper.compute)
    compute = _loads_without(data, "shipme_helper", "shipme_inner")
    assert compute(1) == 20  # type: ignore[operator]  # the nested local import travelled too
    assert modules and not modules.reloaded()
    module_shipping.configure(mode="never")
    with pytest.raises(ModuleNotFoundError):
        _loads_without(serialization.dumps_function(helper.compute), "shipme_helper", "shipme_inner")


def test_installed_modules_stay_by_reference(local_module: Path) -> None:
    module_shipping.configure(mode="always")
    data, modules = serialization.dumps_function_with_modules(os.path.join)
    assert not modules
    assert b"posixpath" in data


def test_reload_is_noticed(local_module: Path) -> None:
    from nbray.worker.function_manager import ExportedFunction

    helper = importlib.import_module("shipme_helper")
    module_shipping.configure(mode="always")
    exported = ExportedFunction(helper.compute)
    assert not exported.outdated()
    (local_module / "shipme_helper.py").write_text(
        "def compute(x):\n    return x * 100\n")
    importlib.reload(helper)
    assert exported.outdated()
    again = ExportedFunction(helper.compute)
    assert again.function_id != exported.function_id
    assert _loads_without(again.pickled, "shipme_helper", "shipme_inner")(2) == 200  # type: ignore[operator]


def test_ordinary_functions_carry_no_modules() -> None:
    from nbray.worker.function_manager import ExportedFunction

    exported = ExportedFunction(len)
    assert not exported.local_modules and not exported.outdated()


def test_instances_come_back_as_the_drivers_class(local_module: Path) -> None:
    helper = importlib.import_module("shipme_helper")
    module_shipping.configure(mode="always")
    data = serialization.serialize(helper.Point(3)).to_bytes()
    remote = serialization.deserialize(data)  # here the class is tracked: the same one comes back
    assert type(remote) is helper.Point and remote.x == 3


def test_runtime_env_options(tmp_path: Path) -> None:
    assert parse_runtime_env(None, None) is None
    env = parse_runtime_env('{"env_vars": {"A": "1"}}', str(tmp_path))
    assert env == {"env_vars": {"A": "1"}, "working_dir": str(tmp_path)}
    assert parse_runtime_env(None, "s3://bucket/dir.zip") == {"working_dir": "s3://bucket/dir.zip"}
    with pytest.raises(ValueError, match="--runtime-env must be a JSON object like"):
        parse_runtime_env("{env_vars: 1}", None)
    with pytest.raises(ValueError, match="--runtime-env must be a JSON object, not list"):
        parse_runtime_env("[1]", None)
    with pytest.raises(ValueError, match="--working-dir: .* does not exist"):
        parse_runtime_env(None, str(tmp_path / "missing"))


def test_init_magic_passes_runtime_env_to_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from IPython.core.error import UsageError

    import nbray
    from nbray.jupyter import backends, magics
    from nbray.jupyter.backends.nbray_runtime import NbrayRuntimeBackend
    from nbray.jupyter.magic_options import nbray_parser

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(backends, "_current", [NbrayRuntimeBackend()])
    monkeypatch.setattr(nbray, "is_initialized", lambda: False)
    monkeypatch.setattr(nbray, "init", lambda address, **kw: calls.append((address, kw)) or "ctx")
    fake = SimpleNamespace(ext=SimpleNamespace(router=SimpleNamespace(attach=lambda: None)))

    def run(line: str) -> object:
        args = nbray_parser().parse_args(magics._split(line))
        return magics.NbrayMagics._cmd_init(fake, args)  # type: ignore[arg-type]

    assert run(f"init nbray://head:10001 --working-dir {tmp_path} "
               "--runtime-env '{\"env_vars\": {\"MODE\": \"test\"}}'") == "ctx"
    assert calls == [("nbray://head:10001", {"runtime_env": {"env_vars": {"MODE": "test"},
                                                              "working_dir": str(tmp_path)}})]
    with pytest.raises(UsageError, match="--runtime-env must be a JSON object like"):
        run("init --runtime-env '{bad'")
    with pytest.raises(UsageError, match="--working-dir"):
        run(f"init --working-dir {tmp_path / 'nowhere'}")
    assert len(calls) == 1
