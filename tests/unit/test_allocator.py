"""Object store space management (pure logic)."""

import random

import pytest

from nbray.object_store.allocator import ALIGNMENT, Allocator


def test_allocations_are_aligned_and_disjoint():
    a = Allocator(1 << 20)
    blocks = [(a.allocate(n), n) for n in (1, 63, 64, 65, 1000, 4096)]
    assert all(off is not None and off % ALIGNMENT == 0 for off, _ in blocks)
    spans = sorted((off, off + a.size_of(off)) for off, _ in blocks)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))
    a.check_invariants()


def test_free_coalesces_neighbours():
    a = Allocator(1024)
    x, y, z = a.allocate(256), a.allocate(256), a.allocate(512)
    assert a.allocate(1) is None  # full
    a.free(y)
    a.free(x)
    assert a.largest_free_block() == 512
    a.free(z)
    assert a.largest_free_block() == 1024
    a.check_invariants()


def test_first_fit_reuses_low_addresses():
    a = Allocator(1 << 16)
    first = a.allocate(1000)
    a.allocate(1000)
    a.free(first)
    assert a.allocate(900) == first


def test_too_large_fails():
    a = Allocator(4096)
    assert a.allocate(4097) is None
    assert a.used_bytes == 0


@pytest.mark.parametrize("seed", range(5))
def test_random_workload_keeps_invariants(seed):
    rng = random.Random(seed)
    a = Allocator(1 << 20)
    live = []
    for _ in range(2000):
        if live and rng.random() < 0.45:
            a.free(live.pop(rng.randrange(len(live))))
        else:
            off = a.allocate(rng.randint(1, 20000))
            if off is not None:
                live.append(off)
        if rng.random() < 0.05:
            a.check_invariants()
    for off in live:
        a.free(off)
    assert a.used_bytes == 0 and a.largest_free_block() == 1 << 20
    a.check_invariants()
