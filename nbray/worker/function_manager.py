"""Functions and classes that tasks run, pickled once and cached.

The submitter pickles a function (or actor class) once per definition and
sends the bytes only the first time it pushes that function over a
connection; receivers cache the unpickled object by function id. A
function that carries the driver's own modules by value (see
``nbray.common.module_shipping``) is exported again after one of them is
reloaded: its new pickle has a new id.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from nbray.common.serialization import dumps_function_with_modules, loads_function
from nbray.protocol import common_pb2


class ExportedFunction:
    """A function or class as it travels: id, names and pickled body."""

    __slots__ = ("function_id", "module_name", "qualname", "pickled", "local_modules", "_descriptor")

    def __init__(self, obj: Any) -> None:
        self.pickled, self.local_modules = dumps_function_with_modules(obj)
        self.function_id = hashlib.blake2b(self.pickled, digest_size=28).digest()
        self.module_name = getattr(obj, "__module__", "") or ""
        self.qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", "")) or ""
        self._descriptor: common_pb2.FunctionDescriptor | None = None

    def outdated(self) -> bool:
        """True when a module this pickle carries by value was reloaded
        since: the function must be exported again (callers test
        ``local_modules`` first, so ordinary functions pay one truth test)."""
        return bool(self.local_modules) and self.local_modules.reloaded()

    def descriptor(self, include_body: bool) -> common_pb2.FunctionDescriptor:
        return common_pb2.FunctionDescriptor(
            function_id=self.function_id, module_name=self.module_name, qualname=self.qualname,
            pickled=self.pickled if include_body else b"")


class FunctionCache:
    """Receiver side: function id -> unpickled function or class."""

    def __init__(self) -> None:
        self._cache: dict[bytes, Any] = {}
        self._bodies: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def remember(self, descriptor: common_pb2.FunctionDescriptor) -> None:
        """Keep a body as it arrives: the task carrying it may run later, or
        be handed back, while later pushes omit it."""
        if descriptor.pickled and descriptor.function_id not in self._cache:
            self._bodies[descriptor.function_id] = descriptor.pickled

    def load(self, descriptor: common_pb2.FunctionDescriptor) -> Any:
        fid = descriptor.function_id
        obj = self._cache.get(fid)
        if obj is not None:
            return obj
        body = descriptor.pickled or self._bodies.get(fid)
        if not body:
            raise LookupError(
                f"function {descriptor.qualname} ({fid.hex()[:8]}) was not sent to this worker")
        obj = loads_function(body)
        self._bodies.pop(fid, None)
        with self._lock:
            self._cache[fid] = obj
        return obj

    def has(self, function_id: bytes) -> bool:
        return function_id in self._cache
