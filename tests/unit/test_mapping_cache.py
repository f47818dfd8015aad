"""The reader-side cache of pinned views, and the writer's populated blocks (pure logic)."""

import pytest

from nbray.object_store.mapping_cache import MappingCache, PopulatedBlocks

pytestmark = pytest.mark.timeout(10)


class Token:
    """Stands for the memory-store entry a view was read under."""


def test_a_view_read_under_the_current_reference_is_served_again():
    cache = MappingCache(max_bytes=1000, max_objects=10)
    ref = Token()
    assert cache.add(b"a", ref, "view-a", 100) == []
    assert cache.lookup(b"a", ref) == "view-a"
    assert cache.hits == 1


def test_a_replaced_reference_never_sees_the_old_view():
    cache = MappingCache(1000, 10)
    old, new = Token(), Token()
    cache.add(b"a", old, "view-a", 100)
    assert cache.lookup(b"a", new) is None  # the object was freed and read again under a new entry
    assert b"a" not in cache and cache.bytes == 0
    assert cache.lookup(b"a", old) is None  # and the stale view is gone for good


def test_releasing_the_reference_drops_the_view():
    cache = MappingCache(1000, 10)
    ref = Token()
    cache.add(b"a", ref, "view-a", 100)
    assert cache.invalidate(b"a") == "view-a"
    assert cache.lookup(b"a", ref) is None
    assert cache.invalidate(b"a") is None
    assert cache.bytes == 0


def test_least_recently_read_views_go_first_when_bytes_run_out():
    cache = MappingCache(max_bytes=300, max_objects=10)
    refs = {k: Token() for k in (b"a", b"b", b"c", b"d")}
    for k in (b"a", b"b", b"c"):
        cache.add(k, refs[k], "view-" + k.decode(), 100)
    cache.lookup(b"a", refs[b"a"])  # a is now the most recent
    assert cache.add(b"d", refs[b"d"], "view-d", 100) == ["view-b"]
    assert b"b" not in cache and {b"a", b"c", b"d"} <= set(cache._views)
    assert cache.bytes == 300


def test_the_object_count_is_bounded_too():
    cache = MappingCache(max_bytes=10_000, max_objects=2)
    t = [Token() for _ in range(3)]
    cache.add(b"a", t[0], "A", 1)
    cache.add(b"b", t[1], "B", 1)
    assert cache.add(b"c", t[2], "C", 1) == ["A"]
    assert len(cache) == 2


def test_objects_larger_than_the_budget_or_without_a_reference_are_not_kept():
    cache = MappingCache(max_bytes=100, max_objects=10)
    assert cache.add(b"big", Token(), "BIG", 101) == []
    assert cache.add(b"x", None, "X", 1) == []
    assert len(cache) == 0
    assert MappingCache(0, 0).add(b"x", Token(), "X", 0) == []


def test_adding_again_replaces_the_previous_view():
    cache = MappingCache(1000, 10)
    ref = Token()
    cache.add(b"a", ref, "v1", 100)
    assert cache.add(b"a", ref, "v2", 100) == ["v1"]
    assert cache.lookup(b"a", ref) == "v2" and cache.bytes == 100


def test_clear_returns_every_view():
    cache = MappingCache(1000, 10)
    cache.add(b"a", Token(), "A", 1)
    cache.add(b"b", Token(), "B", 1)
    assert sorted(cache.clear()) == ["A", "B"] and cache.bytes == 0


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError):
        MappingCache(-1, 1)


MB2 = PopulatedBlocks.BLOCK_BYTES


def test_populated_blocks_are_not_populated_twice():
    blocks = PopulatedBlocks(10 * MB2)
    todo = blocks.claim(0, 3 * MB2)
    assert todo == [(0, 3 * MB2, range(0, 3))]
    blocks.mark(todo[0][2])
    assert blocks.claim(0, 3 * MB2) == []
    assert blocks.claim(MB2, 4 * MB2) == [(3 * MB2, 4 * MB2, range(3, 4))]


def test_partly_covered_blocks_are_populated_but_not_marked():
    blocks = PopulatedBlocks(10 * MB2)
    todo = blocks.claim(100, 2 * MB2 + 100)
    assert todo == [(100, 2 * MB2 + 100, range(1, 2))]
    blocks.mark(todo[0][2])
    assert not blocks.is_done(0) and blocks.is_done(1) and not blocks.is_done(2)
    # the edges are populated again by the next object that uses them
    assert blocks.claim(0, 3 * MB2) == [(0, MB2, range(0, 1)), (2 * MB2, 3 * MB2, range(2, 3))]


def test_a_small_object_inside_one_block():
    blocks = PopulatedBlocks(4 * MB2 + 5)  # capacity not a multiple of the block
    assert blocks.claim(10, 20) == [(10, 20, range(0))]
    assert blocks.claim(4 * MB2, 4 * MB2 + 5) == [(4 * MB2, 4 * MB2 + 5, range(0))]
