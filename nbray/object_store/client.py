"""Client side of the node's object store (in every driver and worker).

The arena the raylet owns is mapped into this process once; objects are
written in place after the raylet allocates them and read in place after
it pins them. A read hands out views whose lifetime is tracked: when the
last view of an object (and anything built on it, such as a numpy array)
is garbage collected, the pin is released in the next batch. Views read
under a reference the process still holds are kept in ``mappings`` (see
``mapping_cache``), so reading them again costs no round trip.

Writing a large object first asks the kernel to map (and, for pages the
arena has never used, allocate) the whole destination range in one call
(``MADV_POPULATE_WRITE``), instead of taking one page fault per 4 KiB
page during the copy; that call runs without the GIL.

An object the raylet could not fit in the arena lives in a file of its
own (``fallback``); it is written and read through a mapping of that file,
made per object, with the same pins.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from nbray.common.config import get_config
from nbray.common.serialization import Serialized
from nbray.exceptions import ObjectStoreFullError
from nbray.object_store.mapping_cache import MappingCache, PopulatedBlocks
from nbray.object_store.store import arena_address
from nbray.protocol import common_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection

_CREATE = method("RayletService.CreateObject")
_SEAL = method("RayletService.SealObject")
_GET = method("RayletService.GetObjects")
_RELEASE = method("RayletService.ReleaseObjects")

logger = logging.getLogger(__name__)

# madvise(2) advice (Linux >= 5.14): fault the range in, writable, now.
MADV_POPULATE_WRITE = 23
# Objects at least this large have their pages mapped in one call before the copy.
POPULATE_MIN_BYTES = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)  # CDLL drops the GIL during the call
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int
_PAGE_BYTES = mmap.PAGESIZE


class _Pin:
    """Dropped when the last view of a pinned object goes away."""

    __slots__ = ("object_id", "client")

    def __init__(self, object_id: bytes, client: PlasmaClient) -> None:
        self.object_id = object_id
        self.client = client

    def __del__(self) -> None:
        self.client.queue_release(self.object_id)


class _PinnedFileMap(mmap.mmap):
    """A read-only mapping of one fallback object's file; carries the pin
    that is released when the mapping (and every view of it) is gone."""

    _nbray_pin: _Pin


class PlasmaClient:
    def __init__(self, raylet: Connection, raylet_pid: int, store_fd: int, capacity: int,
                 post: Callable[..., None]) -> None:
        self.raylet = raylet
        self.capacity = capacity
        self._post = post
        fd = os.open(f"/proc/{raylet_pid}/fd/{store_fd}", os.O_RDWR)
        try:
            self.mm = mmap.mmap(fd, capacity)
        finally:
            os.close(fd)
        self.base = arena_address(self.mm)
        self._releases: deque[bytes] = deque()
        self._release_scheduled = False
        config = get_config()
        self.mappings = MappingCache(int(capacity * config.object_mapping_cache_fraction),
                                     config.object_mapping_cache_max_objects)
        # GetObjects calls made (a cached read makes none).
        self.get_round_trips = 0
        self._populate_supported = True
        self._populated = PopulatedBlocks(capacity)

    # ---- writing --------------------------------------------------------------------------

    def put(self, object_id: bytes, serialized: Serialized, owner: common_pb2.Address,
            timeout_s: float | None = None) -> None:
        """Store `serialized` under `object_id` (blocking; not on the loop thread)."""
        size = serialized.total_bytes
        dest = self.create(object_id, size, owner, timeout_s)
        if dest is None:
            return
        if size >= POPULATE_MIN_BYTES:
            self.populate(dest)
        serialized.write_into(dest)
        self.seal(object_id)

    def populate(self, dest: memoryview) -> None:
        """Map the pages under `dest` (a slice of the arena) writable in one
        system call. Best effort: where the kernel lacks it, pages fault in
        one by one during the copy as before."""
        if not self._populate_supported or dest.readonly:
            return
        start = ctypes.addressof(ctypes.c_char.from_buffer(dest)) - self.base
        if not 0 <= start < self.capacity:
            return  # a fallback file: the kernel fills its pages as they are written
        for first, end, whole in self._populated.claim(start, start + dest.nbytes):
            first -= first % _PAGE_BYTES
            if _madvise(self.base + first, end - first, MADV_POPULATE_WRITE) != 0:
                err = ctypes.get_errno()
                if err == errno.EINVAL:  # kernel older than 5.14
                    self._populate_supported = False
                logger.debug("MADV_POPULATE_WRITE failed: %s", os.strerror(err))
                return
            self._populated.mark(whole)

    def create(self, object_id: bytes, size: int, owner: common_pb2.Address,
               timeout_s: float | None = None) -> memoryview | None:
        """Allocate an object; returns the writable memory to fill before
        seal(), or None when the object exists already (blocking)."""
        reply = self.raylet.call_sync(
            _CREATE, raylet_pb2.CreateObjectRequest(object_id=object_id, data_size=size, owner=owner),
            timeout_s)
        if reply.error:
            raise ObjectStoreFullError(reply.error)
        if reply.already_exists:
            return None
        if reply.fallback_path:
            return _map_file(reply.fallback_path, size, writable=True)
        return memoryview(self.mm)[reply.offset : reply.offset + size]

    def seal(self, object_id: bytes) -> None:
        """Make a created object readable (and immutable)."""
        self.raylet.send_oneway(_SEAL, raylet_pb2.SealObjectRequest(object_id=object_id))

    # ---- reading ---------------------------------------------------------------------------

    def get(self, refs: list[common_pb2.ObjectReference], timeout_ms: int) -> list[Any]:
        """Pin objects; returns, per ref, a read-only view, an ErrorInfo, or None (not ready)."""
        self.get_round_trips += 1
        reply = self.raylet.call_sync(_GET, raylet_pb2.GetObjectsRequest(refs=refs, timeout_ms=timeout_ms))
        out: list[Any] = []
        for loc in reply.objects:
            if loc.error.type:
                out.append(loc.error)
            elif loc.ready and loc.fallback_path:
                out.append(self.file_view(loc.object_id, loc.fallback_path, loc.data_size))
            elif loc.ready:
                out.append(self.view(loc.object_id, loc.offset, loc.data_size))
            else:
                out.append(None)
        return out

    def view(self, object_id: bytes, offset: int, size: int) -> memoryview:
        """A read-only view of a pinned object that releases the pin when dropped."""
        array = (ctypes.c_char * size).from_address(self.base + offset)
        array._nbray_pin = _Pin(object_id, self)  # type: ignore[attr-defined]
        return memoryview(array).cast("B").toreadonly()

    def file_view(self, object_id: bytes, path: str, size: int) -> memoryview:
        """A read-only view of a pinned fallback object (mapped from its file)
        that releases the pin when dropped."""
        view = _map_file(path, size, writable=False)
        mapped = view.obj
        assert isinstance(mapped, _PinnedFileMap)
        mapped._nbray_pin = _Pin(object_id, self)
        return view

    def queue_release(self, object_id: bytes) -> None:
        # Runs from __del__ on any thread: no locks, no I/O here.
        self._releases.append(object_id)
        if not self._release_scheduled:
            self._release_scheduled = True
            self._post(self._flush_releases)

    def _flush_releases(self) -> None:
        self._release_scheduled = False
        ids = []
        releases = self._releases
        while releases:
            ids.append(releases.popleft())
        if ids and not self.raylet.closed:
            self.raylet.send_oneway(_RELEASE, raylet_pb2.ObjectIdsRequest(object_ids=ids))

    def close(self) -> None:
        self.mappings.clear()
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass  # views are still alive; the mapping goes with the process


def _map_file(path: str, size: int, *, writable: bool) -> memoryview:
    """Map a fallback object's file (raises OSError when it is gone)."""
    fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
    try:
        mapped = _PinnedFileMap(fd, size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return memoryview(mapped)
