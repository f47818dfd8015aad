"""``nbray.cloudpickle``: the pickler nbray ships functions and values with.

Ray programs import ``ray.cloudpickle`` to pickle things the way the
cluster will (to check that a closure travels, or to store a function and
load it in a task). ``dumps``/``dump`` here pickle exactly as nbray does
when it sends a function or a value; ``loads``/``load`` are pickle's, as in
Ray. Everything else is the ``cloudpickle`` package's own API.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

import cloudpickle as _cloudpickle
from cloudpickle import (
    CloudPickler,
    register_pickle_by_value,
    unregister_pickle_by_value,
)

# nbray's pickler: cloudpickle's, keeping the file names of code objects so
# remote tracebacks point at the user's lines.
from nbray.common.serialization import Pickler

__version__ = _cloudpickle.__version__
DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL
PicklingError = pickle.PicklingError
loads = pickle.loads
load = pickle.load


def dump(obj: Any, file: IO[bytes], protocol: int | None = None,
         buffer_callback: Any = None) -> None:
    """Pickle `obj` into `file` as nbray would send it."""
    Pickler(file, protocol=protocol, buffer_callback=buffer_callback).dump(obj)


def dumps(obj: Any, protocol: int | None = None, buffer_callback: Any = None) -> bytes:
    """Pickle `obj` to bytes as nbray would send it."""
    with io.BytesIO() as file:
        dump(obj, file, protocol=protocol, buffer_callback=buffer_callback)
        return file.getvalue()


__all__ = [
    "CloudPickler",
    "DEFAULT_PROTOCOL",
    "Pickler",
    "PicklingError",
    "__version__",
    "dump",
    "dumps",
    "load",
    "loads",
    "register_pickle_by_value",
    "unregister_pickle_by_value",
]
