"""Space management for one node's shared-memory arena (pure logic).

First fit by address: low addresses are reused first, so the pages a
process has already touched (and mapped) are the ones handed out again,
which keeps repeated puts at memcpy speed. Freed blocks are coalesced with
their neighbours.
"""

from __future__ import annotations

import bisect

ALIGNMENT = 64


def align_up(n: int, alignment: int = ALIGNMENT) -> int:
    return (n + alignment - 1) & ~(alignment - 1)


class Allocator:
    """Hands out aligned [offset, offset + size) ranges of a fixed capacity."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity_bytes
        self._offsets: list[int] = [0]  # sorted starts of free blocks
        self._sizes: dict[int, int] = {0: capacity_bytes}
        self._allocated: dict[int, int] = {}
        self.used_bytes = 0
        # Highest end offset ever handed out (the store pre-faults up to it).
        self.high_water = 0

    @property
    def free_bytes(self) -> int:
        return self.capacity - self.used_bytes

    def largest_free_block(self) -> int:
        return max(self._sizes.values(), default=0)

    def allocate(self, size: int) -> int | None:
        """Offset of a new block of at least `size` bytes, or None if none fits."""
        need = align_up(max(size, 1))
        for i, offset in enumerate(self._offsets):
            block = self._sizes[offset]
            if block < need:
                continue
            del self._sizes[offset]
            if block == need:
                del self._offsets[i]
            else:
                rest = offset + need
                self._offsets[i] = rest
                self._sizes[rest] = block - need
            self._allocated[offset] = need
            self.used_bytes += need
            self.high_water = max(self.high_water, offset + need)
            return offset
        return None

    def free(self, offset: int) -> int:
        """Release the block at `offset`; returns its size."""
        size = self._allocated.pop(offset)
        self.used_bytes -= size
        i = bisect.bisect_left(self._offsets, offset)
        start, end = offset, offset + size
        # merge with the following free block
        if i < len(self._offsets) and self._offsets[i] == end:
            end += self._sizes.pop(self._offsets[i])
            del self._offsets[i]
        # merge with the preceding free block
        if i > 0:
            prev = self._offsets[i - 1]
            if prev + self._sizes[prev] == start:
                self._sizes[prev] += end - start
                return size
        self._offsets.insert(i, start)
        self._sizes[start] = end - start
        return size

    def size_of(self, offset: int) -> int:
        return self._allocated[offset]

    def check_invariants(self) -> None:
        """Assert the free list is sorted, disjoint and accounts for all bytes."""
        assert self._offsets == sorted(self._offsets)
        total_free = 0
        prev_end = -1
        for off in self._offsets:
            size = self._sizes[off]
            assert size > 0
            assert off > prev_end, "free blocks overlap or touch without merging"
            prev_end = off + size
            total_free += size
        assert total_free + self.used_bytes == self.capacity
        spans = sorted(list(self._allocated.items()) + [(o, self._sizes[o]) for o in self._offsets])
        pos = 0
        for off, size in spans:
            assert off == pos, f"gap or overlap at {pos}"
            pos = off + size
        assert pos == self.capacity
