"""Pieces both ends of a notebook-client connection share.

Values cross in the serialization layout every nbray process uses
(``nbray.common.serialization``); large ones in chunks, which either end
reads straight out of (or writes straight into) the layout's buffers.
Errors cross as the layout of the exception, so the client raises the
original type (``RayTaskError`` subclasses included).
"""

from __future__ import annotations

from typing import Any

from nbray.common.serialization import FLAG_ERROR, Serialized, deserialize, serialize
from nbray.exceptions import RaySystemError, RayTaskError

# Values up to this size travel inside one message; larger ones in chunks.
INLINE_BYTES = 1 << 20


def error_bytes(exc: BaseException) -> bytes:
    """The wire form of an exception (falls back to RaySystemError)."""
    try:
        return serialize(exc, is_error=True).to_bytes()
    except Exception:
        fallback = RaySystemError(f"{type(exc).__name__}: {exc}")
        return serialize(fallback, is_error=True).to_bytes()


def raise_if_error(data: bytes) -> None:
    if data:
        error = deserialize(data)
        if not isinstance(error, BaseException):
            error = RaySystemError(f"the session sent a malformed error: {error!r}")
        if isinstance(error, RayTaskError):
            error = error.as_instanceof_cause()  # `except ValueError` catches a remote ValueError
        raise error


class RawLayout:
    """An already serialized value (bytes in the layout), usable where the
    object store expects a ``Serialized``."""

    __slots__ = ("data", "nested_refs", "total_bytes", "is_error")

    def __init__(self, data: bytes, nested_refs: list[tuple[bytes, bytes]]) -> None:
        self.data = data
        self.nested_refs = nested_refs
        self.total_bytes = len(data)
        self.is_error = bool(data and data[0] & FLAG_ERROR)

    def to_bytes(self) -> bytes:
        return self.data

    def write_into(self, dest: memoryview) -> None:
        dest[: self.total_bytes] = self.data


class LayoutReader:
    """Byte ranges of a serialized value, without assembling the whole
    layout: a range inside one buffer is a view of it (no copy)."""

    def __init__(self, serialized: Serialized, keep_alive: Any = None) -> None:
        self.size = serialized.total_bytes
        self._pieces = [(offset, memoryview(piece).cast("B")) for offset, piece in serialized.segments()]
        self._keep_alive = keep_alive  # the value whose memory the buffers view

    def read(self, offset: int, length: int) -> Any:
        end = min(self.size, offset + length)
        for start, piece in self._pieces:
            if start <= offset and end <= start + piece.nbytes:
                return piece[offset - start : end - start]
        out = bytearray(end - offset)
        for start, piece in self._pieces:
            lo = max(offset, start)
            hi = min(end, start + piece.nbytes)
            if lo < hi:
                out[lo - offset : hi - offset] = piece[lo - start : hi - start]
        return out


def chunks(serialized: Serialized, chunk_bytes: int) -> list[tuple[int, memoryview]]:
    """(offset, view) pieces of at most chunk_bytes covering the layout's
    data (padding left out), each a view of the value's own memory."""
    out = []
    for offset, piece in serialized.segments():
        view = memoryview(piece).cast("B")
        for lo in range(0, view.nbytes, chunk_bytes):
            out.append((offset + lo, view[lo : lo + chunk_bytes]))
    return out
