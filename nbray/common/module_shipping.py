"""Which of this process's own modules travel with the work, by value.

Runs in drivers and notebook clients, while functions, classes and values
are pickled. A notebook imports modules from its own directory (or from a
path it put on ``sys.path``); the cluster's workers run elsewhere, with
another working directory, often on another machine, and cannot import
them. Such modules are pickled by value (cloudpickle's
``register_pickle_by_value``), so their functions and classes go with the
tasks, actors and ``%%remote`` cells that use them, with nothing to
configure.

The rule (``ships_by_value``) is pure: a module whose file lies under an
installed location (the standard library, site-packages, dist-packages)
or that belongs to nbray or cloudpickle goes by reference, like any
installed package; a module with a ``.py`` file anywhere else goes by
value. Modules without a Python source file (built-ins, extensions,
namespace packages) always go by reference: there is nothing to copy.

When it applies (``NBRAY_SHIP_LOCAL_MODULES`` or the ``ship_local_modules``
config field): ``auto`` (default) while this process is a notebook client
or a driver of a cluster it did not start; ``always``; ``never`` (then
``runtime_env={"py_modules": [...]}`` or ``working_dir`` is the way).

A function exported once is cached; ``LocalModules`` remembers which
shipped modules its pickle holds, and whether ``importlib.reload`` has
since replaced any of them (a reload gives the module a new ``__spec__``),
so the next call exports the new code.
"""

from __future__ import annotations

import os
import site
import sys
import threading
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# cloudpickle (and sysconfig) are imported where a module is first registered or
# the install locations first read: init() configures shipping before it starts
# the cluster, and needs neither for that.

MODES = ("auto", "always", "never")

# Top-level packages every process of the cluster has installed.
_ALWAYS_INSTALLED = frozenset({"nbray", "cloudpickle"})
# Path parts that mark an installed package wherever the environment lives.
_INSTALLED_DIR_NAMES = frozenset({"site-packages", "dist-packages"})


# ---- the rule ---------------------------------------------------------------------------------------------


def ships_by_value(module_name: str, module_file: str | None, installed_roots: Iterable[str]) -> bool:
    """True when the module `module_name`, loaded from `module_file`, must
    travel by value: a Python source file outside every path in
    `installed_roots` (normalised absolute paths) and outside any
    site-packages or dist-packages folder. ``__main__`` is not decided here
    (cloudpickle always ships it by value)."""
    if module_name == "__main__" or module_name.partition(".")[0] in _ALWAYS_INSTALLED:
        return False
    if not module_file or not module_file.endswith(".py"):
        return False
    path = os.path.normcase(os.path.abspath(module_file))
    parts = path.replace("\\", "/").split("/")
    if any(part in _INSTALLED_DIR_NAMES for part in parts):
        return False
    for root in installed_roots:
        root = os.path.normcase(root).rstrip("/\\")
        if root and (path == root or path.startswith(root + os.sep)):
            return False
    return True


def installed_roots() -> tuple[str, ...]:
    """Where this interpreter's standard library and installed packages
    live (with symbolic links resolved, and as written)."""
    import sysconfig

    paths: list[str] = []
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            paths.append(path)
    try:
        paths.extend(site.getsitepackages())
    except AttributeError:  # old virtualenv's site module has no getsitepackages
        pass
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if isinstance(user_site, str):
        paths.append(user_site)
    roots: list[str] = []
    for path in paths:
        for form in (os.path.abspath(path), os.path.realpath(path)):
            if form not in roots:
                roots.append(form)
    return tuple(roots)


def parse_mode(text: str) -> str:
    """``"auto"``, ``"always"`` or ``"never"`` (case-insensitive); ValueError otherwise."""
    mode = text.strip().lower()
    if mode not in MODES:
        raise ValueError(f"NBRAY_SHIP_LOCAL_MODULES (ship_local_modules) must be one of {', '.join(MODES)}, not {text!r}")
    return mode


# ---- process state ----------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.mode = "auto"
        self.cluster_is_remote = False
        self.active = False
        self.roots: tuple[str, ...] | None = None
        # module name -> (module file, by value?) as decided; a module
        # re-created under the same name with another file is decided again.
        self.decided: dict[str, tuple[str | None, bool]] = {}
        self.lock = threading.Lock()


_state = _State()


class _Collecting(threading.local):
    def __init__(self) -> None:
        self.modules: dict[str, types.ModuleType] | None = None


_collecting = _Collecting()


def configure(*, mode: str | None = None, cluster_is_remote: bool | None = None) -> None:
    """Set the mode (``auto``/``always``/``never``) and whether this process
    works with a cluster whose workers may not see its files (a client, or
    a driver of a cluster it did not start). Raises ValueError for a bad mode."""
    if mode is not None:
        _state.mode = parse_mode(mode)
    if cluster_is_remote is not None:
        _state.cluster_is_remote = cluster_is_remote
    _state.active = _state.mode == "always" or (_state.mode == "auto" and _state.cluster_is_remote)
    if not _state.active:
        _unregister_all()


def is_active() -> bool:
    """Whether local modules are shipped by value now."""
    return _state.active


def _module_of(obj: Any) -> types.ModuleType | None:
    if isinstance(obj, types.ModuleType):
        return obj
    name = getattr(obj, "__module__", None)
    if type(name) is not str:
        return None
    return sys.modules.get(name)


def note(obj: Any) -> None:
    """Called for each function, class or module being pickled while
    shipping is active: registers its module with cloudpickle when the
    module must travel by value (and records it for ``collect``)."""
    module = _module_of(obj)
    if module is None:
        return
    name = module.__name__
    file = getattr(module, "__file__", None)
    decided = _state.decided.get(name)
    if decided is None or decided[0] != file:
        by_value = _decide(module, name, file)
    else:
        by_value = decided[1]
    if by_value:
        collected = _collecting.modules
        if collected is not None:
            collected[name] = module


def _decide(module: types.ModuleType, name: str, file: str | None) -> bool:
    with _state.lock:
        if _state.roots is None:
            _state.roots = installed_roots()
        by_value = sys.modules.get(name) is module and ships_by_value(name, file, _state.roots)
        if by_value:
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        _state.decided[name] = (file, by_value)
    return by_value


def _unregister_all() -> None:
    with _state.lock:
        for name, (_, by_value) in list(_state.decided.items()):
            if by_value and name in sys.modules:
                import cloudpickle

                try:
                    cloudpickle.unregister_pickle_by_value(sys.modules[name])
                except ValueError:  # the user unregistered it already
                    pass
        _state.decided.clear()


@contextmanager
def collect() -> Iterator[dict[str, types.ModuleType]]:
    """Within this block (on this thread), the modules shipped by value are
    gathered into the dict it yields."""
    saved = _collecting.modules
    modules: dict[str, types.ModuleType] = {}
    _collecting.modules = modules
    try:
        yield modules
    finally:
        _collecting.modules = saved


class LocalModules:
    """The shipped modules a pickle holds, as they were when it was made."""

    __slots__ = ("_specs",)

    def __init__(self, modules: Iterable[types.ModuleType]) -> None:
        self._specs = tuple((m, getattr(m, "__spec__", None)) for m in modules)

    def __bool__(self) -> bool:
        return bool(self._specs)

    def reloaded(self) -> bool:
        """True once any of them was reloaded (``importlib.reload`` gives
        the module a new spec) since the pickle was made."""
        return any(getattr(m, "__spec__", None) is not spec for m, spec in self._specs)

