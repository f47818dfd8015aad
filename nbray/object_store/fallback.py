"""Objects too large for the node's shared-memory arena (raylet process).

When an object cannot be placed in the arena even after spilling (it is
larger than the whole store, or readers pin what it would need), the store
creates it in a file of its own in the node's fallback directory instead.
The file is mapped, not read: the writer fills it in place, readers on the
node map it and read it without copying (numpy arrays are read-only views
of the page cache), and other nodes pull it in chunks as from the arena.
The file is deleted when the object is freed, and its bytes are counted
apart from the arena's (``fallback_bytes``).

Disk blocks are reserved when the file is created, so a full disk surfaces
as an error of the create request, never as a SIGBUS in the writer.
"""

from __future__ import annotations

import errno
import mmap
import os


class FallbackAllocationError(Exception):
    """The fallback file could not be created (disk full, no permission)."""


class FallbackMapping:
    """One object's backing file, mapped read-write in the raylet."""

    __slots__ = ("path", "size", "_mm")

    def __init__(self, path: str, size: int, mm: mmap.mmap) -> None:
        self.path = path
        self.size = size
        self._mm = mm

    def view(self) -> memoryview:
        return memoryview(self._mm)[: self.size]

    def delete(self) -> None:
        """Unmap and remove the file. Processes that still map it keep their
        pages until they unmap; the name is gone at once."""
        try:
            self._mm.close()
        except BufferError:
            pass  # a chunk being sent still holds a view; the mapping goes with it
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class FallbackFiles:
    """Creates the backing files of fallback objects in one directory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path_of(self, object_id: bytes) -> str:
        return os.path.join(self.directory, object_id.hex())

    def create(self, object_id: bytes, size: int) -> FallbackMapping:
        """A new file of `size` bytes with its disk blocks reserved, mapped.

        Raises FallbackAllocationError when the file cannot be made.
        """
        if size <= 0:
            raise ValueError(f"a fallback object needs a positive size, not {size}")
        path = self.path_of(object_id)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise FallbackAllocationError(f"cannot create {path}: {exc.strerror}") from exc
        try:
            _reserve(fd, size)
            mm = mmap.mmap(fd, size)
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(path)
            raise FallbackAllocationError(
                f"cannot reserve {size} bytes for {path}: {exc.strerror}") from exc
        os.close(fd)
        return FallbackMapping(path, size, mm)


def _reserve(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate: sparse file


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
