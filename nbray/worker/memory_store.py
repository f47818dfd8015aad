"""Values known to this process, and the threads waiting for them.

Holds inline values of objects this process owns (or has fetched as a
borrower), markers for objects that live in a node's shared-memory store,
and errors. Readers block here until a value arrives; completion callbacks
serve ``await ref`` and ``ref.future()``.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class Entry:
    """A ready object: inline bytes, an error, or a plasma location."""

    __slots__ = ("data", "is_error", "in_plasma", "node_id", "size", "nested")

    def __init__(self, data: bytes | None, *, is_error: bool = False, in_plasma: bool = False,
                 node_id: bytes = b"", size: int = 0, nested: Any = ()) -> None:
        self.data = data
        self.is_error = is_error
        self.in_plasma = in_plasma
        self.node_id = node_id
        self.size = size if size else (len(data) if data is not None else 0)
        self.nested = nested


class _Waiter:
    __slots__ = ("remaining", "lock", "wake_on_error")

    def __init__(self, remaining: int, wake_on_error: bool) -> None:
        self.remaining = remaining
        self.wake_on_error = wake_on_error
        self.lock = threading.Lock()
        self.lock.acquire()


class MemoryStore:
    def __init__(self, local_node_id: bytes = b"") -> None:
        self._lock = threading.Lock()
        self._entries: dict[bytes, Entry] = {}
        self.local_node_id = local_node_id
        # Objects that live in another node's store (wait(fetch_local=True) pulls them).
        self.remote_plasma: set[bytes] = set()
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._callbacks: dict[bytes, list[Callable[[Entry], None]]] = {}
        # Called (outside the lock) with the id of each deleted entry that
        # marked a shared-memory object.
        self.on_delete: Callable[[bytes], None] | None = None

    def get(self, object_id: bytes) -> Entry | None:
        return self._entries.get(object_id)

    def contains(self, object_id: bytes) -> bool:
        return object_id in self._entries

    def missing(self, object_ids: list[bytes]) -> list[bytes]:
        """The distinct ids among `object_ids` with no entry yet, in order."""
        entries = self._entries
        return [oid for oid in dict.fromkeys(object_ids) if oid not in entries]

    def contains_each(self, object_ids: list[bytes]) -> list[bool]:
        entries = self._entries
        return [oid in entries for oid in object_ids]

    def put(self, object_id: bytes, entry: Entry) -> None:
        self.put_many([(object_id, entry)])

    def put_many(self, items: list[tuple[bytes, Entry]]) -> None:
        """Store several entries under one lock (a task's many returns)."""
        ready: list[tuple[list[Callable[[Entry], None]], Entry]] = []
        with self._lock:
            entries = self._entries
            remote = self.remote_plasma
            local = self.local_node_id
            all_waiters = self._waiters
            all_callbacks = self._callbacks
            for object_id, entry in items:
                entries[object_id] = entry
                if entry.in_plasma and entry.node_id != local:
                    remote.add(object_id)
                elif remote:
                    remote.discard(object_id)
                if not all_waiters and not all_callbacks:
                    continue
                waiters = all_waiters.pop(object_id, None)
                callbacks = all_callbacks.pop(object_id, None)
                if callbacks:
                    ready.append((callbacks, entry))
                if waiters:
                    for w in waiters:
                        if w.remaining <= 0:
                            continue
                        if w.wake_on_error and entry.is_error:
                            w.remaining = 0
                        else:
                            w.remaining -= 1
                        if w.remaining == 0:
                            w.lock.release()
        for callbacks, entry in ready:
            for cb in callbacks:
                cb(entry)

    def delete(self, object_id: bytes) -> Entry | None:
        with self._lock:
            self.remote_plasma.discard(object_id)
            entry = self._entries.pop(object_id, None)
        if entry is not None and entry.in_plasma and self.on_delete is not None:
            self.on_delete(object_id)
        return entry

    def delete_many(self, object_ids: list[bytes]) -> None:
        """Delete several entries under one lock (a released batch of refs)."""
        in_plasma: list[bytes] = []
        with self._lock:
            entries = self._entries
            remote = self.remote_plasma
            for object_id in object_ids:
                if remote:
                    remote.discard(object_id)
                entry = entries.pop(object_id, None)
                if entry is not None and entry.in_plasma:
                    in_plasma.append(object_id)
        on_delete = self.on_delete
        if on_delete is not None:
            for object_id in in_plasma:
                on_delete(object_id)

    def shrink(self) -> bool:
        """Give back the room of deleted entries (dicts keep it); True if there was some."""
        with self._lock:
            entries = self._entries
            self._entries = shrunk(entries)
            self._waiters = shrunk(self._waiters)
            self._callbacks = shrunk(self._callbacks)
            return self._entries is not entries

    def on_ready(self, object_id: bytes, callback: Callable[[Entry], None]) -> None:
        """Run callback(entry) once the object is ready (now, if it is)."""
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                self._callbacks.setdefault(object_id, []).append(callback)
                return
        callback(entry)

    def wait(self, object_ids: Iterable[bytes], num_required: int, timeout_s: float | None,
             wake_on_error: bool = False) -> bool:
        """Block until `num_required` of the objects are ready (or, with
        `wake_on_error`, until one of them is an error); False on timeout."""
        ids = list(object_ids)
        with self._lock:
            missing = [oid for oid in ids if oid not in self._entries]
            ready = len(ids) - len(missing)
            if ready >= num_required:
                return True
            if wake_on_error and any(self._entries[oid].is_error for oid in ids if oid in self._entries):
                return True
            waiter = _Waiter(num_required - ready, wake_on_error)
            for oid in missing:
                self._waiters.setdefault(oid, []).append(waiter)
        if timeout_s is None:
            acquired = waiter.lock.acquire()
        else:
            acquired = waiter.lock.acquire(timeout=max(0.0, timeout_s))
        if not acquired:
            with self._lock:
                for oid in missing:
                    ws = self._waiters.get(oid)
                    if ws and waiter in ws:
                        ws.remove(waiter)
                        if not ws:
                            del self._waiters[oid]
                acquired = waiter.remaining <= 0
        return acquired

    def ready_ids(self, object_ids: Iterable[bytes]) -> list[bytes]:
        entries = self._entries
        return [oid for oid in object_ids if oid in entries]

    def __len__(self) -> int:
        return len(self._entries)


def deadline_after(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def shrunk(table: dict[Any, Any]) -> dict[Any, Any]:
    """`table`, or a copy of it if most of its room is unused (after many deletions)."""
    if sys.getsizeof(table) > _BYTES_PER_LIVE_ENTRY * (len(table) + 1024):
        return dict(table)
    return table


# A full dict needs some 50 bytes per entry; past this it mostly holds room.
_BYTES_PER_LIVE_ENTRY = 400


_malloc_trim: list[Any] = []


def prepare_heap_trim() -> None:
    """Look malloc_trim up now (at start-up). Looking it up creates a few
    long-lived objects; made in the middle of a large release, they would
    land among the freed objects and keep those memory arenas alive."""
    if not _malloc_trim:
        try:
            _malloc_trim.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _malloc_trim.append(None)  # not glibc


def return_free_heap() -> None:
    """Hand the C heap's free pages back to the OS after a large release
    (glibc keeps them otherwise); does nothing where malloc_trim is missing."""
    prepare_heap_trim()
    trim = _malloc_trim[0]
    if trim is not None:
        trim(0)
