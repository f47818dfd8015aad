"""put/get, zero-copy reads, reference counting, spilling, store limits."""

import gc
import os
import time

import numpy as np
import pytest

import nbray
from nbray.testing import wait_for_condition

pytestmark = pytest.mark.timeout(60)


def _store_used():
    core = nbray.object_ref._core[0]
    from nbray.protocol import method, raylet_pb2

    stats = core.raylet.call_sync(method("RayletService.GetNodeStats"), raylet_pb2.GetNodeStatsRequest(), 10)
    return stats.store_used_bytes, stats.num_objects


def test_put_get_small_values(shared_cluster):
    for value in [1, "s", None, {"a": [1, 2]}, b"x" * 1000]:
        assert nbray.get(nbray.put(value)) == value


def test_put_of_an_object_ref_is_refused(shared_cluster):
    with pytest.raises(TypeError, match="ObjectRef"):
        nbray.put(nbray.put(1))


def test_large_numpy_get_is_zero_copy_and_read_only(shared_cluster):
    a = np.random.default_rng(0).random(5_000_000)
    ref = nbray.put(a)
    b = nbray.get(ref)
    c = nbray.get(ref)
    np.testing.assert_array_equal(a, b)
    assert not b.flags.writeable
    assert np.shares_memory(b, c) or b.ctypes.data == c.ctypes.data
    with pytest.raises(ValueError):
        b[0] = 1.0


def test_get_time_does_not_grow_with_size(shared_cluster):
    small = nbray.put(np.ones(1 << 17))   # 1 MiB
    large = nbray.put(np.ones(1 << 24))   # 128 MiB
    nbray.get(small), nbray.get(large)  # warm up mappings

    def best(ref):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            v = nbray.get(ref)
            times.append(time.perf_counter() - t)
            del v
        return min(times)

    assert best(large) < max(20 * best(small), 0.005)


def test_objects_are_freed_when_refs_go_away(shared_cluster):
    refs = [nbray.put(np.ones(1_000_000)) for _ in range(5)]
    used_with, _ = _store_used()
    assert used_with >= 5 * 8_000_000
    del refs
    gc.collect()
    wait_for_condition(lambda: _store_used()[0] <= used_with - 5 * 8_000_000, timeout=10,
                       message="store space released after del")


def test_object_held_by_a_view_stays_until_the_view_dies(shared_cluster):
    ref = nbray.put(np.full(2_000_000, 7.0))
    view = nbray.get(ref)
    used_with, _ = _store_used()
    del ref
    gc.collect()
    time.sleep(0.2)  # let a (wrong) free happen if it would
    assert _store_used()[0] >= 16_000_000
    filler = [nbray.put(np.zeros(2_000_000)) for _ in range(3)]  # would reuse freed space
    assert view.sum() == 14_000_000  # memory still valid and unchanged
    del view, filler
    gc.collect()
    wait_for_condition(lambda: _store_used()[0] <= used_with - 16_000_000, timeout=10)


def test_nested_refs_in_put_values_stay_alive(shared_cluster):
    inner = nbray.put(np.arange(500_000))
    outer = nbray.put({"inner": inner})
    del inner
    gc.collect()

    @nbray.remote
    def use(d):
        return int(nbray.get(d["inner"]).sum())

    assert nbray.get(use.remote(outer)) == int(np.arange(500_000).sum())
    assert int(nbray.get(nbray.get(outer)["inner"]).sum()) == int(np.arange(500_000).sum())


def test_refs_returned_from_tasks_are_usable(shared_cluster):
    @nbray.remote
    def make():
        return [nbray.put(np.ones(300_000)), nbray.put("small")]

    refs = nbray.get(make.remote())
    gc.collect()
    assert nbray.get(refs[0]).sum() == 300_000 and nbray.get(refs[1]) == "small"


def test_borrowed_ref_kept_by_an_actor_survives_the_owner_dropping_it(shared_cluster):
    @nbray.remote
    class Keeper:
        def keep(self, refs):
            self.ref = refs[0]
            return True

        def read(self):
            return int(nbray.get(self.ref).sum())

    k = Keeper.remote()
    ref = nbray.put(np.ones(400_000))
    assert nbray.get(k.keep.remote([ref]))
    del ref
    gc.collect()
    time.sleep(0.2)
    assert nbray.get(k.read.remote()) == 400_000


def test_no_shared_memory_files(shared_cluster):
    nbray.put(np.ones(1_000_000))
    assert not [f for f in os.listdir("/dev/shm") if "nbray" in f]
