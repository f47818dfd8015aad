"""Views of shared-memory objects kept by a reading process (drivers and workers).

A ``get`` of an object in the node's store pins it with one round trip to
the raylet and returns a read-only view of the arena. This cache keeps
that view, and with it the pin, while the process still holds a reference
to the object, so reading the same object again needs no round trip.

Why a cached view can never show another object's bytes: the view keeps
its pin (the raylet never frees, spills or reuses a pinned object's
space); an entry is dropped as soon as the process's reference to the
object goes away (the ``token`` is the memory-store entry it was read
under, and a replaced entry does not match); and the raylet learns of the
release only when the last view built on the pin is gone.

Pinned objects cannot be spilled, so the cache is bounded in bytes (a
fraction of the store) and in objects, least recently read out first.
Pure logic: no I/O; dropping a view is what later releases its pin.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class _Cached:
    __slots__ = ("token", "view", "size")

    def __init__(self, token: object, view: Any, size: int) -> None:
        self.token = token
        self.view = view
        self.size = size


class MappingCache:
    """object id -> pinned read-only view, bounded, thread-safe."""

    def __init__(self, max_bytes: int, max_objects: int) -> None:
        if max_bytes < 0 or max_objects < 0:
            raise ValueError("cache bounds must not be negative")
        self.max_bytes = max_bytes
        self.max_objects = max_objects
        self.bytes = 0
        self.hits = 0
        self._lock = threading.Lock()
        self._views: OrderedDict[bytes, _Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._views)

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._views

    def lookup(self, object_id: bytes, token: object) -> Any | None:
        """The cached view of `object_id` if it was read under `token` (the
        process's current reference), else None; a stale entry is dropped."""
        with self._lock:
            cached = self._views.get(object_id)
            if cached is None:
                return None
            if cached.token is not token:
                self._drop(object_id)
                return None
            self._views.move_to_end(object_id)
            self.hits += 1
            return cached.view

    def add(self, object_id: bytes, token: object, view: Any, size: int) -> list[Any]:
        """Keep `view` (pinned, `size` bytes) read under `token`. Returns the
        views pushed out, which the caller drops outside any lock of its own."""
        evicted: list[Any] = []
        if token is None or size > self.max_bytes or self.max_objects == 0:
            return evicted
        with self._lock:
            old = self._views.pop(object_id, None)
            if old is not None:
                self.bytes -= old.size
                evicted.append(old.view)
            while self._views and (self.bytes + size > self.max_bytes
                                   or len(self._views) >= self.max_objects):
                _, out = self._views.popitem(last=False)
                self.bytes -= out.size
                evicted.append(out.view)
            self._views[object_id] = _Cached(token, view, size)
            self.bytes += size
        return evicted

    def invalidate(self, object_id: bytes) -> Any | None:
        """The process let go of `object_id` (or the owner freed it): forget
        its view. Returns the dropped view, if any."""
        with self._lock:
            return self._drop(object_id)

    def clear(self) -> list[Any]:
        with self._lock:
            views = [c.view for c in self._views.values()]
            self._views.clear()
            self.bytes = 0
            return views

    def _drop(self, object_id: bytes) -> Any | None:
        cached = self._views.pop(object_id, None)
        if cached is None:
            return None
        self.bytes -= cached.size
        return cached.view


class PopulatedBlocks:
    """Which blocks of the arena this process has already mapped writable.

    Asking the kernel to map pages that are mapped already still walks
    their page tables (about 0.1 s per GiB here), so a writer populates
    only the blocks it has not populated before. Pages of a block only
    partly covered by an object are populated but the block is not marked.
    """

    BLOCK_BYTES = 2 << 20

    def __init__(self, capacity_bytes: int) -> None:
        self._done = bytearray(-(-capacity_bytes // self.BLOCK_BYTES))

    def claim(self, start: int, end: int) -> list[tuple[int, int, range]]:
        """Ranges of [start, end) still to populate, as (start, end, blocks
        wholly inside it to mark once done); neighbouring ones are merged."""
        size = self.BLOCK_BYTES
        out: list[tuple[int, int, range]] = []
        block = start // size
        while block * size < end:
            lo, hi = max(start, block * size), min(end, (block + 1) * size)
            if not self._done[block]:
                whole = range(block, block + 1) if lo == block * size and hi == (block + 1) * size \
                    else range(0)
                if out and out[-1][1] == lo:
                    prev = out[-1]
                    merged = range(prev[2].start, whole.stop) if prev[2] and whole and \
                        prev[2].stop == whole.start else (prev[2] or whole)
                    out[-1] = (prev[0], hi, merged)
                else:
                    out.append((lo, hi, whole))
            block += 1
        return out

    def mark(self, blocks: range) -> None:
        for block in blocks:
            self._done[block] = 1

    def is_done(self, block: int) -> bool:
        return bool(self._done[block])
