"""A small object store: spilling, restoring, and objects that never fit."""

import numpy as np
import pytest

import nbray

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("ray_start", [{"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}], indirect=True)
def test_working_set_three_times_the_store_spills_and_restores(ray_start):
    arrays = [nbray.put(np.full(2_500_000, i, dtype=np.float64)) for i in range(12)]  # 12 x 20 MB
    for i, ref in enumerate(arrays):
        v = nbray.get(ref)
        assert v[0] == i and v[-1] == i
        del v
    core = nbray.object_ref._core[0]
    from nbray.protocol import method, raylet_pb2

    stats = core.raylet.call_sync(method("RayletService.GetNodeStats"), raylet_pb2.GetNodeStatsRequest(), 10)
    assert stats.spilled_objects_total > 0 and stats.restored_objects_total > 0


@pytest.mark.parametrize("ray_start", [{"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}], indirect=True)
def test_object_larger_than_the_store_is_refused_with_sizes(ray_start):
    with pytest.raises(nbray.exceptions.ObjectStoreFullError) as info:
        nbray.put(np.ones(15_000_000))  # 120 MB > 80 MB
    assert "120000" in str(info.value).replace(",", "") or "bytes" in str(info.value)

    @nbray.remote
    def make():
        return np.ones(15_000_000)

    with pytest.raises(nbray.exceptions.RayTaskError) as info2:
        nbray.get(make.remote())
    assert "object store" in str(info2.value)
    assert nbray.get(nbray.put(1)) == 1  # still healthy


