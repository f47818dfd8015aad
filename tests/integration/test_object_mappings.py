"""Repeated reads of a shared-memory object reuse this process's pinned view;
freed space that is reused never shows a reader another object's bytes."""

import gc

import numpy as np
import pytest

import nbray
from nbray.testing import wait_for_condition

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20
STORE = {"num_cpus": 1, "object_store_memory": 256 * MB}


def _plasma():
    return nbray.object_ref._core[0].plasma


def _pinned_objects():
    from nbray.protocol import method, raylet_pb2

    core = nbray.object_ref._core[0]
    stats = core.raylet.call_sync(method("RayletService.GetNodeStats"), raylet_pb2.GetNodeStatsRequest(), 10)
    return stats.store_used_bytes


@pytest.mark.parametrize("ray_start", [STORE], indirect=True)
def test_second_get_needs_no_round_trip_and_reused_space_shows_the_new_bytes(ray_start):
    plasma = _plasma()
    a_ref = nbray.put(np.full(2 * MB, 1, dtype=np.uint8))
    before = plasma.get_round_trips
    first = nbray.get(a_ref)
    assert plasma.get_round_trips == before + 1
    del first
    second = nbray.get(a_ref)
    assert plasma.get_round_trips == before + 1, "a repeated get went to the raylet"
    assert second[0] == 1 and second[-1] == 1
    del second
    a_id = a_ref.binary()
    del a_ref
    gc.collect()
    wait_for_condition(lambda: a_id not in plasma.mappings, timeout=10,
                       message="the view of a released object is dropped")
    wait_for_condition(lambda: _pinned_objects() == 0, timeout=10, message="A's space is freed")
    b_ref = nbray.put(np.full(2 * MB, 2, dtype=np.uint8))  # first fit: most likely A's old space
    b = nbray.get(b_ref)
    assert b[0] == 2 and b[-1] == 2 and int(b.min()) == 2
    # A stale reference to A (its id, rebuilt) does not read B's bytes.
    stale = nbray.ObjectRef(a_id)
    with pytest.raises(Exception) as info:
        nbray.get(stale, timeout=2)
    assert not isinstance(info.value, AssertionError)


@pytest.mark.parametrize("ray_start", [STORE], indirect=True)
def test_a_view_held_past_the_free_keeps_its_bytes(ray_start):
    a_ref = nbray.put(np.full(2 * MB, 7, dtype=np.uint8))
    a_view = nbray.get(a_ref)
    del a_ref
    gc.collect()
    # A's space is still pinned by the view, so B goes elsewhere.
    b_ref = nbray.put(np.full(2 * MB, 9, dtype=np.uint8))
    b = nbray.get(b_ref)
    assert int(a_view.min()) == 7 and int(a_view.max()) == 7
    assert int(b.min()) == 9 and int(b.max()) == 9
    assert not np.shares_memory(a_view, b)
    del a_view, b, b_ref
    gc.collect()
    wait_for_condition(lambda: _pinned_objects() == 0, timeout=10, message="everything freed")


@pytest.mark.parametrize("ray_start", [{"num_cpus": 1, "object_store_memory": 80 * MB}], indirect=True)
def test_kept_views_are_bounded_so_objects_still_spill(ray_start):
    refs = [nbray.put(np.full(2_500_000, i, dtype=np.float64)) for i in range(8)]  # 8 x 20 MB
    for i, ref in enumerate(refs):
        v = nbray.get(ref)
        assert v[0] == i and v[-1] == i
        del v
    assert _plasma().mappings.bytes <= 8 * MB
