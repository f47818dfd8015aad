"""The shared-memory object store of one node; lives in the raylet process.

Memory is one anonymous ``memfd`` arena, so nothing is left in /dev/shm
even if the raylet is killed: the kernel frees it when the last process
mapping it exits. Local drivers and workers map the same arena (through
``/proc/<raylet pid>/fd/<n>``) and read objects in place.

Object life cycle::

    create -> CREATING --seal--> SEALED --spill--> SPILLED --restore--> SEALED
                                    \\-- free (when no reader pins it) --> gone

Readers pin an object while they hold views into it; pinned objects are
never moved. When an allocation does not fit, least recently used sealed
objects nobody pins are spilled to files and restored on the next read.
An allocation that still cannot fit waits for readers to let go, up to a
configured time; then, or at once for an object larger than the whole
arena, it is created in a file of its own (``fallback``) when fallback
allocation is on, and fails with a message naming the sizes when it is off.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nbray.object_store.allocator import Allocator, align_up
from nbray.object_store.fallback import FallbackAllocationError, FallbackFiles, FallbackMapping

logger = logging.getLogger(__name__)

CREATING = "CREATING"
SEALED = "SEALED"
SPILLED = "SPILLED"



class StoreFullError(Exception):
    """An allocation cannot be satisfied; the message names the sizes."""


class StoredObject:
    __slots__ = ("object_id", "offset", "size", "state", "owner", "is_primary", "pins",
                 "creator", "spill_path", "freed", "fallback")

    def __init__(self, object_id: bytes, size: int, owner: Any, creator: Any, is_primary: bool) -> None:
        self.object_id = object_id
        self.offset = -1
        self.size = size
        self.state = CREATING
        self.owner = owner
        self.is_primary = is_primary
        # client -> number of read pins it holds
        self.pins: dict[Any, int] = {}
        self.creator = creator
        self.spill_path = ""
        # The owner freed it while readers still pinned it.
        self.freed = False
        # Set when the object lives in a file of its own, not in the arena.
        self.fallback: FallbackMapping | None = None

    @property
    def pin_count(self) -> int:
        return sum(self.pins.values())

    @property
    def where(self) -> str:
        """Where its bytes are, as node statistics report it."""
        if self.fallback is not None:
            return "FALLBACK"
        return "SPILLED" if self.state == SPILLED else "IN_MEMORY"


class _PendingCreate:
    __slots__ = ("object_id", "size", "owner", "client", "deadline", "callback", "is_primary")

    def __init__(self, object_id: bytes, size: int, owner: Any, client: Any, deadline: float,
                 callback: Callable[[int | None, str], None], is_primary: bool) -> None:
        self.object_id = object_id
        self.size = size
        self.owner = owner
        self.client = client
        self.deadline = deadline
        self.callback = callback
        self.is_primary = is_primary


class ObjectStore:
    def __init__(
        self,
        capacity_bytes: int,
        spill_dir: str,
        *,
        spilling_enabled: bool = True,
        full_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        fallback_enabled: bool = False,
        fallback_dir: str = "",
    ) -> None:
        self.capacity = capacity_bytes
        self.spill_dir = spill_dir
        self.spilling_enabled = spilling_enabled
        self.fallback_enabled = fallback_enabled
        self.fallback_files = FallbackFiles(fallback_dir or os.path.join(spill_dir, "fallback"))
        self.full_timeout_s = full_timeout_s
        self.clock = clock
        self.allocator = Allocator(capacity_bytes)
        self.fd = os.memfd_create("nbray-object-store", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, capacity_bytes)
        self.mm = mmap.mmap(self.fd, capacity_bytes)
        self.objects: dict[bytes, StoredObject] = {}
        # Sealed, in-memory objects in least-recently-used order.
        self._lru: OrderedDict[bytes, None] = OrderedDict()
        self._seal_waiters: dict[bytes, list[Callable[[bytes], None]]] = {}
        self._pending: list[_PendingCreate] = []
        self.spilled_bytes = 0
        self.spilled_objects_total = 0
        self.restored_objects_total = 0
        # Bytes and count of objects living in fallback files right now,
        # and how many were ever created there.
        self.fallback_bytes = 0
        self.fallback_objects = 0
        self.fallback_objects_total = 0
        # Called with (object_id, added) when a copy appears or disappears.
        self.on_location_change: Callable[[StoredObject, bool], None] | None = None

    # ---- queries ----------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return self.allocator.used_bytes

    def get(self, object_id: bytes) -> StoredObject | None:
        return self.objects.get(object_id)

    def is_local(self, object_id: bytes) -> bool:
        obj = self.objects.get(object_id)
        return obj is not None and obj.state != CREATING and not obj.freed

    def view(self, obj: StoredObject) -> memoryview:
        """The object's bytes (writable: for the raylet's own transfers)."""
        if obj.fallback is not None:
            return obj.fallback.view()
        return memoryview(self.mm)[obj.offset : obj.offset + obj.size]

    def fallback_path(self, object_id: bytes) -> str:
        """The file holding `object_id`, or "" when it lives in the arena."""
        obj = self.objects.get(object_id)
        return obj.fallback.path if obj is not None and obj.fallback is not None else ""

    # ---- creating ---------------------------------------------------------------

    def create(self, object_id: bytes, size: int, owner: Any, client: Any,
               callback: Callable[[int | None, str], None], is_primary: bool = True) -> None:
        """Allocate an object; ``callback(offset, error)`` runs now or later.

        ``offset`` is None when it failed (``error`` says why) or -1 when the
        object already exists (a retried task stored it before). A fallback
        object has offset 0 in its own file (see ``fallback_path``).
        """
        existing = self.objects.get(object_id)
        if existing is not None and not existing.freed:
            callback(-1, "")
            return
        if size > self.capacity and self.fallback_enabled:
            self._create_fallback(object_id, size, owner, client, callback, is_primary)
            return
        if size > self.capacity:
            callback(None, (
                f"object {object_id.hex()} is {size} bytes but the object store holds only "
                f"{self.capacity} bytes; start the node with a larger --object-store-memory"
            ))
            return
        offset = self._allocate(size)
        if offset is not None:
            self._add(object_id, offset, size, owner, client, is_primary)
            callback(offset, "")
            return
        self._pending.append(_PendingCreate(object_id, size, owner, client,
                                            self.clock() + self.full_timeout_s, callback, is_primary))

    def _create_fallback(self, object_id: bytes, size: int, owner: Any, client: Any,
                         callback: Callable[[int | None, str], None], is_primary: bool) -> None:
        try:
            mapping = self.fallback_files.create(object_id, size)
        except FallbackAllocationError as exc:
            callback(None, (
                f"object {object_id.hex()} ({size} bytes) does not fit in the object store "
                f"(capacity {self.capacity} bytes, {self.used_bytes} in use) and its fallback "
                f"file failed: {exc}. Free disk space or give the node more --object-store-memory."
            ))
            return
        obj = self._add(object_id, 0, size, owner, client, is_primary)
        obj.fallback = mapping
        self.fallback_bytes += size
        self.fallback_objects += 1
        self.fallback_objects_total += 1
        callback(0, "")

    def _add(self, object_id: bytes, offset: int, size: int, owner: Any, client: Any,
             is_primary: bool) -> StoredObject:
        obj = StoredObject(object_id, size, owner, client, is_primary)
        obj.offset = offset
        self.objects[object_id] = obj
        return obj

    def _allocate(self, size: int) -> int | None:
        offset = self.allocator.allocate(size)
        if offset is None and (self.spilling_enabled or any(not o.is_primary for o in self.objects.values())):
            if self._spill_for(size):
                offset = self.allocator.allocate(size)
        # No pre-allocation here: fallocate of fresh pages blocked this loop
        # for about 1 s per GiB and saved the writer little, because the
        # pages are zeroed on first touch anyway. The writer maps its
        # destination in one call instead (client.PlasmaClient.populate).
        return offset

    def seal(self, object_id: bytes) -> None:
        obj = self.objects.get(object_id)
        if obj is None or obj.state != CREATING:
            return
        obj.state = SEALED
        if obj.fallback is None:  # a fallback file is on disk already: never spilled
            self._lru[object_id] = None
        if self.on_location_change is not None:
            self.on_location_change(obj, True)
        for cb in self._seal_waiters.pop(object_id, ()):
            cb(object_id)

    def abort(self, object_id: bytes) -> None:
        """Drop an object that was never sealed (its writer went away)."""
        obj = self.objects.get(object_id)
        if obj is not None and obj.state == CREATING:
            self._delete(obj)

    def add_seal_waiter(self, object_id: bytes, callback: Callable[[bytes], None]) -> None:
        self._seal_waiters.setdefault(object_id, []).append(callback)

    def remove_seal_waiter(self, object_id: bytes, callback: Callable[[bytes], None]) -> None:
        waiters = self._seal_waiters.get(object_id)
        if waiters and callback in waiters:
            waiters.remove(callback)
            if not waiters:
                del self._seal_waiters[object_id]

    # ---- reading ------------------------------------------------------------------

    def pin(self, object_id: bytes, client: Any) -> StoredObject | None:
        """Pin a local object for `client`, restoring it if it was spilled."""
        obj = self.objects.get(object_id)
        if obj is None or obj.state == CREATING or obj.freed:
            return None
        if obj.state == SPILLED and not self._restore(obj):
            return None
        obj.pins[client] = obj.pins.get(client, 0) + 1
        if obj.fallback is None:
            self._lru.move_to_end(object_id)
        return obj

    def release(self, object_id: bytes, client: Any) -> None:
        obj = self.objects.get(object_id)
        if obj is None:
            return
        count = obj.pins.get(client, 0)
        if count <= 1:
            obj.pins.pop(client, None)
        else:
            obj.pins[client] = count - 1
        if not obj.pins and obj.freed:
            self._delete(obj)
        self.retry_pending()

    def release_client(self, client: Any) -> None:
        """A reader disconnected: drop its pins and its unfinished creations."""
        for obj in list(self.objects.values()):
            if client in obj.pins:
                del obj.pins[client]
                if not obj.pins and obj.freed:
                    self._delete(obj)
            elif obj.state == CREATING and obj.creator is client:
                self._delete(obj)
        self.retry_pending()

    # ---- freeing ------------------------------------------------------------------

    def free(self, object_id: bytes) -> bool:
        """The owner no longer needs the object. Returns True if it existed."""
        obj = self.objects.get(object_id)
        if obj is None:
            return False
        if obj.pins:
            obj.freed = True
        else:
            self._delete(obj)
        self.retry_pending()
        return True

    def free_owned_by(self, owner_matches: Callable[[Any], bool]) -> int:
        """Free every object whose owner matches (the owner died)."""
        victims = [o.object_id for o in self.objects.values() if owner_matches(o.owner)]
        for oid in victims:
            self.free(oid)
        return len(victims)

    def _delete(self, obj: StoredObject) -> None:
        self.objects.pop(obj.object_id, None)
        self._lru.pop(obj.object_id, None)
        if obj.fallback is not None:
            obj.fallback.delete()
            obj.fallback = None
            self.fallback_bytes -= obj.size
            self.fallback_objects -= 1
        elif obj.state == SPILLED:
            self.spilled_bytes -= obj.size
            _unlink_quietly(obj.spill_path)
        elif obj.offset >= 0:
            self.allocator.free(obj.offset)
        if obj.state != CREATING and self.on_location_change is not None:
            self.on_location_change(obj, False)

    # ---- spilling -----------------------------------------------------------------

    def _spill_for(self, size: int) -> bool:
        """Make `size` bytes fit: first drop unpinned secondary copies (they
        can be pulled again), then spill unpinned primaries, least recently
        used first. True on success."""
        need = align_up(size)
        for object_id in list(self._lru):
            if self.allocator.largest_free_block() >= need:
                return True
            obj = self.objects[object_id]
            if not obj.is_primary and not obj.pins and obj.state == SEALED:
                self._delete(obj)
        if not self.spilling_enabled:
            return self.allocator.largest_free_block() >= need
        for object_id in list(self._lru):
            if self.allocator.largest_free_block() >= need:
                return True
            obj = self.objects[object_id]
            if obj.pins or obj.state != SEALED:
                continue
            self._spill(obj)
        return self.allocator.largest_free_block() >= need

    def _spill(self, obj: StoredObject) -> None:
        os.makedirs(self.spill_dir, exist_ok=True)
        path = os.path.join(self.spill_dir, obj.object_id.hex())
        with open(path, "wb") as f:
            f.write(self.view(obj))
        self.allocator.free(obj.offset)
        obj.offset = -1
        obj.state = SPILLED
        obj.spill_path = path
        self._lru.pop(obj.object_id, None)
        self.spilled_bytes += obj.size
        self.spilled_objects_total += 1

    def _restore(self, obj: StoredObject) -> bool:
        offset = self._allocate(obj.size)
        if offset is None:
            return False
        with open(obj.spill_path, "rb") as f:
            f.readinto(memoryview(self.mm)[offset : offset + obj.size])
        _unlink_quietly(obj.spill_path)
        obj.offset = offset
        obj.state = SEALED
        obj.spill_path = ""
        self.spilled_bytes -= obj.size
        self.restored_objects_total += 1
        self._lru[obj.object_id] = None
        return True

    # ---- waiting allocations ------------------------------------------------------

    def retry_pending(self) -> None:
        if not self._pending:
            return
        still: list[_PendingCreate] = []
        for req in self._pending:
            offset = self._allocate(req.size)
            if offset is None:
                still.append(req)
                continue
            self._add(req.object_id, offset, req.size, req.owner, req.client, req.is_primary)
            req.callback(offset, "")
        self._pending = still

    def expire_pending(self) -> None:
        """Fail allocations that waited longer than the full timeout."""
        if not self._pending:
            return
        now = self.clock()
        still = []
        for req in self._pending:
            if req.deadline > now:
                still.append(req)
                continue
            if self.fallback_enabled:
                self._create_fallback(req.object_id, req.size, req.owner, req.client, req.callback,
                                      req.is_primary)
                continue
            pinned = sum(o.size for o in self.objects.values() if o.pins)
            req.callback(None, (
                f"the object store is full: cannot allocate {req.size} bytes for object "
                f"{req.object_id.hex()}; capacity {self.capacity} bytes, {self.used_bytes} in use, "
                f"{pinned} pinned by readers, {self.spilled_bytes} spilled. Release references "
                "to objects you no longer need (del ref), or give the node more "
                "--object-store-memory."
            ))
        self._pending = still

    def has_pending(self) -> bool:
        return bool(self._pending)

    # ---- shutdown -----------------------------------------------------------------

    def close(self) -> None:
        for obj in self.objects.values():
            if obj.fallback is not None:
                obj.fallback.delete()
            elif obj.state == SPILLED:
                _unlink_quietly(obj.spill_path)
        self.objects.clear()
        try:
            self.mm.close()
        except BufferError:
            pass  # a view is still exported; the mapping goes with the process
        os.close(self.fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def arena_address(mm: mmap.mmap) -> int:
    """Base address of a mapping (for zero-copy views through ctypes)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))
