"""Package attributes bound on first use (PEP 562), for ``nbray`` and ``nbray.util``.

Imports nothing beyond ``importlib``: every cluster process imports ``nbray`` first.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # (typing itself costs more than this module's work)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_attribute(namespace: dict[str, object], lazy_names: dict[str, str], name: str) -> object:
    """What a package's ``__getattr__(name)`` returns: a name listed in
    `lazy_names` (name -> the module defining it) or a submodule, loaded now
    and bound in the package's `namespace` so this runs once per name.

    Raises AttributeError for anything else; a submodule that exists but
    needs something missing raises its own ModuleNotFoundError."""
    package = namespace["__name__"]
    module_name = lazy_names.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name), name)
    elif name.startswith("__"):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise  # the submodule exists but needs something missing
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    namespace[name] = value
    return value


_core_or_init: Callable[[], Any] | None = None


def core() -> Any:
    """This process's core worker (or notebook client), starting nbray if
    needed: what ``f.remote()`` and actor calls submit through. Runs per
    call, so ``nbray.api`` is imported on first use only, not every time."""
    global _core_or_init
    if _core_or_init is None:
        from nbray.api import core_or_init

        _core_or_init = core_or_init
    return _core_or_init()
