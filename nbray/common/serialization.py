"""How values become bytes and back, in every process.

One layout serves inline objects (carried in messages) and objects in the
shared-memory store, so a reader treats both the same::

    byte 0      flags: 1 = has out-of-band buffers, 2 = the value is an error
    no buffers: bytes 1.. are a pickle
    buffers:    u8 flags | 3 pad | u32 n | u64 meta_len | n x (u64 offset, u64 length)
                | meta (pickle) | buffers, each at a 64-byte aligned offset

Large buffers (numpy arrays, Arrow buffers, bytes-like objects) go out of
band with pickle protocol 5 and are read back as read-only views of the
message or of shared memory: no copy on the read side.

Plain data (numbers, strings, small containers of them) is pickled by the C
pickler; anything else by cloudpickle, so functions and classes defined in
``__main__`` (notebooks) travel by value. ObjectRefs and actor handles met
while pickling are recorded in the thread's serialization context so the
caller can track them as nested references.
"""

from __future__ import annotations

import pickle
import struct
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle

FLAG_BUFFERS = 1
FLAG_ERROR = 2
ALIGNMENT = 64
# Buffers smaller than this stay inside the pickle stream.
MIN_OUT_OF_BAND_BYTES = 2048
_BUF_HEADER = struct.Struct("<B3xIQ")
_BUF_ENTRY = struct.Struct("<QQ")

_PLAIN_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def _is_plain(value: Any, budget: list[int]) -> bool:
    """True if `value` contains only atoms (checked up to a small budget)."""
    t = type(value)
    if t in _PLAIN_ATOMS:
        return True
    atoms = _PLAIN_ATOMS
    if t is tuple or t is list:
        budget[0] -= len(value)
        if budget[0] < 0:
            return False
        for v in value:
            if type(v) not in atoms and not _is_plain(v, budget):
                return False
        return True
    if t is dict:
        budget[0] -= len(value)
        if budget[0] < 0:
            return False
        for k, v in value.items():
            if type(k) not in atoms or (type(v) not in atoms and not _is_plain(v, budget)):
                return False
        return True
    return False


class _Context(threading.local):
    def __init__(self) -> None:
        # Set while pickling: (object_id, owner_address_bytes) of each ref met.
        self.nested_refs: list[tuple[bytes, bytes]] | None = None
        # Set while unpickling: receives each ObjectRef rebuilt.
        self.on_ref_deserialized: Callable[[Any], None] | None = None


context = _Context()


def record_nested_ref(object_id: bytes, owner: bytes) -> None:
    """Called by ObjectRef.__reduce__ while a value is being pickled."""
    refs = context.nested_refs
    if refs is not None:
        refs.append((object_id, owner))


class Serialized:
    """A value pickled with its out-of-band buffers, ready to be written."""

    __slots__ = ("meta", "buffers", "nested_refs", "is_error", "total_bytes", "_plain")

    def __init__(self, meta: bytes, buffers: list[pickle.PickleBuffer],
                 nested_refs: list[tuple[bytes, bytes]], is_error: bool) -> None:
        self.meta = meta
        self.buffers = [b.raw() for b in buffers]
        self.nested_refs = nested_refs
        self.is_error = is_error
        self._plain = not self.buffers
        if self._plain:
            self.total_bytes = 1 + len(meta)
        else:
            offset = _align(_BUF_HEADER.size + _BUF_ENTRY.size * len(self.buffers) + len(meta))
            for buf in self.buffers:
                offset = _align(offset + buf.nbytes)
            self.total_bytes = offset

    def to_bytes(self) -> bytes:
        """The whole layout as one bytes object (for inline transport)."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            return bytes((flags,)) + self.meta
        out = bytearray(self.total_bytes)
        self.write_into(memoryview(out))
        return bytes(out)

    def write_into(self, dest: memoryview) -> None:
        """Write the layout into `dest` (at least total_bytes long)."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            dest[0] = flags
            dest[1 : 1 + len(self.meta)] = self.meta
            return
        n = len(self.buffers)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        _BUF_HEADER.pack_into(dest, 0, flags | FLAG_BUFFERS, n, len(self.meta))
        offset = _align(meta_at + len(self.meta))
        for i, buf in enumerate(self.buffers):
            size = buf.nbytes
            _BUF_ENTRY.pack_into(dest, _BUF_HEADER.size + _BUF_ENTRY.size * i, offset, size)
            dest[offset : offset + size] = buf.cast("B") if buf.format != "B" else buf
            offset = _align(offset + size)
        dest[meta_at : meta_at + len(self.meta)] = self.meta


    def segments(self) -> list[tuple[int, Any]]:
        """The layout as (offset, bytes-like) pieces without copying the
        buffers: the head (flags, buffer table, pickle), then each buffer.
        Gaps between pieces are alignment padding, never read."""
        flags = FLAG_ERROR if self.is_error else 0
        if self._plain:
            return [(0, bytes((flags,)) + self.meta)]
        n = len(self.buffers)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        head = bytearray(meta_at + len(self.meta))
        _BUF_HEADER.pack_into(head, 0, flags | FLAG_BUFFERS, n, len(self.meta))
        head[meta_at:] = self.meta
        pieces: list[tuple[int, Any]] = [(0, head)]
        offset = _align(meta_at + len(self.meta))
        for i, buf in enumerate(self.buffers):
            _BUF_ENTRY.pack_into(head, _BUF_HEADER.size + _BUF_ENTRY.size * i, offset, buf.nbytes)
            pieces.append((offset, buf.cast("B") if buf.format != "B" else buf))
            offset = _align(offset + buf.nbytes)
        return pieces


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


def serialize(value: Any, is_error: bool = False) -> Serialized:
    """Pickle `value`; raises TypeError naming the value if it cannot be."""
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buf: pickle.PickleBuffer) -> bool:
        with buf.raw() as view:
            if view.nbytes < MIN_OUT_OF_BAND_BYTES:
                return True  # in band
        buffers.append(buf)
        return False

    if _is_plain(value, [64]):
        return Serialized(pickle.dumps(value, protocol=5), [], [], is_error)
    saved = context.nested_refs
    refs: list[tuple[bytes, bytes]] = []
    context.nested_refs = refs
    try:
        meta = cloudpickle.dumps(value, protocol=5, buffer_callback=keep_large)
    except Exception as exc:
        raise TypeError(f"Could not serialize {_describe(value)}: {type(exc).__name__}: {exc}") from exc
    finally:
        context.nested_refs = saved
    return Serialized(meta, buffers, refs, is_error)


def dumps_function(fn: Any) -> bytes:
    """Pickle a function or class by value where needed (cloudpickle)."""
    try:
        return cloudpickle.dumps(fn, protocol=5)
    except Exception as exc:
        raise TypeError(f"Could not serialize the function {_describe(fn)}: {exc}") from exc


def loads_function(data: bytes) -> Any:
    return pickle.loads(data)


def is_error_layout(data: Any) -> bool:
    return bool(data[0] & FLAG_ERROR)


def deserialize(data: Any, on_ref: Callable[[Any], None] | None = None) -> Any:
    """Rebuild a value from its layout (bytes or a read-only memoryview).

    Out-of-band buffers become read-only views into `data`, which therefore
    must stay valid as long as the value lives (the caller ties shared
    memory to the views' lifetime).
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    flags = view[0]
    saved = context.on_ref_deserialized
    context.on_ref_deserialized = on_ref
    try:
        if not flags & FLAG_BUFFERS:
            return pickle.loads(view[1:])
        _, n, meta_len = _BUF_HEADER.unpack_from(view, 0)
        meta_at = _BUF_HEADER.size + _BUF_ENTRY.size * n
        bufs = []
        for i in range(n):
            offset, size = _BUF_ENTRY.unpack_from(view, _BUF_HEADER.size + _BUF_ENTRY.size * i)
            bufs.append(view[offset : offset + size])
        return pickle.loads(view[meta_at : meta_at + meta_len], buffers=bufs)
    finally:
        context.on_ref_deserialized = saved


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def find_unserializable(value: Any, max_depth: int = 3) -> str:
    """Best-effort path to the part of `value` that fails to pickle."""
    def fails(v: Any) -> bool:
        try:
            cloudpickle.dumps(v)
            return False
        except Exception:
            return True

    path = "value"
    current = value
    for _ in range(max_depth):
        children: list[tuple[str, Any]] = []
        if isinstance(current, dict):
            children = [(f"[{k!r}]", v) for k, v in current.items()]
        elif isinstance(current, (list, tuple, set)):
            children = [(f"[{i}]", v) for i, v in enumerate(current)]
        elif hasattr(current, "__dict__"):
            children = [(f".{k}", v) for k, v in vars(current).items()]
        bad = next(((name, v) for name, v in children if fails(v)), None)
        if bad is None:
            break
        path += bad[0]
        current = bad[1]
    return f"{path} = {_describe(current)}"
