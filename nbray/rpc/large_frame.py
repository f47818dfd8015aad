"""The buffer a connection receives one big frame into (every nbray process).

A frame bigger than a connection's read buffer is received on its own: into
the caller's buffer when a reply's trailer has one waiting, else into
memory taken for it here. A peer announces the frame's size before sending
it, so memory taken from that number alone would let any authenticated peer
make a process hold 512 MiB per connection by sending one header; here only
frames up to LARGE_FRAME_UPFRONT_BYTES are allocated whole, and bigger ones
grow with the bytes that actually arrive.
"""

from __future__ import annotations

import mmap

# A frame up to this size is received into one buffer taken when its header
# arrives: object chunks (8 MiB) come this way, and the allocator hands the
# same memory back frame after frame, which fresh mappings cannot match
# (their page faults cost more than the copy). A bigger frame is received
# into an anonymous mapping that starts this big and doubles as bytes
# arrive, so a peer that announces 512 MiB and sends little holds this much
# address space and no more resident memory than it sent.
LARGE_FRAME_UPFRONT_BYTES = 16 << 20


class LargeFrame:
    """A frame bigger than the read buffer, received into its own buffer:
    the caller's (``direct_body`` set), one taken whole (frames up to
    LARGE_FRAME_UPFRONT_BYTES), or an anonymous mapping that grows with
    the bytes received."""

    __slots__ = ("mid", "kind", "rid", "body_len", "size", "filled", "direct_body", "_buffer", "_capacity")

    def __init__(self, mid: int, kind: int, rid: int, body_len: int, view: memoryview | None, size: int,
                 direct_body: bytes | None = None) -> None:
        self.mid = mid
        self.kind = kind
        self.rid = rid
        self.body_len = body_len
        self.size = size
        self.filled = 0
        self.direct_body = direct_body
        self._buffer: memoryview | bytearray | mmap.mmap
        if view is not None:
            self._buffer = view
            self._capacity = size
        elif size <= LARGE_FRAME_UPFRONT_BYTES:
            self._buffer = bytearray(size)
            self._capacity = size
        else:
            self._capacity = large_frame_capacity(size, 0)
            self._buffer = _anonymous_mapping(self._capacity)

    @property
    def capacity(self) -> int:
        """Bytes of the frame the buffer holds room for now."""
        return self._capacity

    def receive_view(self) -> memoryview:
        """Where the next bytes go (never empty before the frame is
        complete); the caller must drop it before asking again."""
        if self.filled == self._capacity and self.filled < self.size:
            self._grow(large_frame_capacity(self.size, self.filled + 1))
        return memoryview(self._buffer)[self.filled : self._capacity]

    def append(self, data: memoryview) -> None:
        """Copy bytes that arrived with the header (growing first if need be)."""
        end = self.filled + data.nbytes
        if end > self._capacity:
            self._grow(large_frame_capacity(self.size, end))
        with memoryview(self._buffer) as view:
            view[self.filled : end] = data
        self.filled = end

    def completed_view(self) -> memoryview:
        return memoryview(self._buffer)[: self.size]

    def _grow(self, capacity: int) -> None:
        buffer = self._buffer
        assert isinstance(buffer, mmap.mmap), "only a mapping grows"
        try:
            # mremap: the kernel moves the page tables, no byte is copied.
            buffer.resize(capacity)
            _advise_huge_pages(buffer)
        except BufferError:
            # A view of the old buffer is still alive: copy into a new one.
            bigger = _anonymous_mapping(capacity)
            with memoryview(bigger) as dst, memoryview(buffer) as src:
                dst[: self.filled] = src[: self.filled]
            self._buffer = bigger
        self._capacity = capacity


def large_frame_capacity(size: int, needed: int, first_bytes: int = LARGE_FRAME_UPFRONT_BYTES) -> int:
    """The buffer size for a `size`-byte frame once `needed` bytes of it
    must fit: `first_bytes`, doubled as often as needed, at most `size`.

    Raises ValueError for sizes that make no sense."""
    if first_bytes <= 0 or size < 0 or not 0 <= needed <= size:
        raise ValueError(f"no buffer fits {needed} of {size} bytes starting at {first_bytes}")
    capacity = first_bytes
    while capacity < needed:
        capacity *= 2
    return min(capacity, size)


def _anonymous_mapping(nbytes: int) -> mmap.mmap:
    # Private: a shared anonymous mapping cannot grow (pages past its first
    # size would fault with SIGBUS). Its pages are only backed once written.
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _advise_huge_pages(buffer)
    return buffer


def _advise_huge_pages(buffer: mmap.mmap) -> None:
    # One fault per 2 MiB instead of per 4 KiB: measured on this kind of VM,
    # filling a fresh 100 MiB mapping ran at about 0.3 GB/s with small pages
    # and 1.5 GB/s with huge ones. Only a hint; kernels without THP ignore it.
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            buffer.madvise(advice)
        except OSError:
            pass
