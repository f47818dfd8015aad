"""A small object store: spilling, restoring, and objects larger than the store
(fallback files)."""

import os

import numpy as np
import pytest

import nbray
from nbray.testing import shm_files, wait_for_condition

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


def _node_stats(core):
    from nbray.protocol import method, raylet_pb2

    return core.raylet.call_sync(method("RayletService.GetNodeStats"),
                                 raylet_pb2.GetNodeStatsRequest(include_objects=True), 10)


def _fallback_files(session_dir):
    found = []
    for root, _dirs, files in os.walk(os.path.join(session_dir, "spill")):
        if os.path.basename(root) == "fallback":
            found += [os.path.join(root, f) for f in files]
    return found


@pytest.mark.parametrize("ray_start", [{"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}], indirect=True)
def test_an_object_larger_than_the_store_lives_in_a_fallback_file_until_freed(ray_start):
    core = nbray.object_ref._core[0]
    shm_before = shm_files()
    array = np.arange(15_000_000, dtype=np.int64)  # 120 MB > 80 MB
    ref = nbray.put(array)
    [path] = _fallback_files(core.session_dir)
    assert os.path.getsize(path) >= array.nbytes
    stats = _node_stats(core)
    assert stats.store_fallback_bytes >= array.nbytes and stats.fallback_objects == 1
    assert stats.store_used_bytes < 80 * 1024 * 1024  # not counted in the arena
    assert [o.where for o in stats.objects if o.object_id == ref.binary()] == ["FALLBACK"]

    value = nbray.get(ref)  # zero copy: a read-only view of the file's pages
    assert np.array_equal(value, array) and not value.flags.writeable

    @nbray.remote
    def checksum(a):
        return int(a[-1]), int(a.sum()), os.getpid()

    last, total, pid = nbray.get(checksum.remote(ref))  # read in a worker process
    assert (last, total) == (int(array[-1]), int(array.sum())) and pid != os.getpid()

    @nbray.remote
    def make():
        return np.full(12_000_000, 3, dtype=np.int64)  # 96 MB, returned by a worker

    made = nbray.get(make.remote())
    assert made.shape == (12_000_000,) and int(made[0]) == 3 == int(made[-1])
    del made
    del value, ref
    wait_for_condition(lambda: _fallback_files(core.session_dir) == [], timeout=20,
                       message="fallback files removed once the objects are freed")
    stats = _node_stats(core)
    assert stats.store_fallback_bytes == 0 and stats.fallback_objects == 0
    assert stats.fallback_objects_total == 2
    assert shm_files() == shm_before
    assert nbray.get(nbray.put(1)) == 1  # still healthy


@pytest.mark.parametrize("ray_start", [{"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024,
                                        "_system_config": {"object_store_fallback_enabled": False}}],
                         indirect=True)
def test_without_fallback_an_object_larger_than_the_store_is_refused_with_sizes(ray_start):
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


@pytest.mark.timeout(120)
def test_a_fallback_object_is_pulled_to_another_node_with_a_small_store(cluster):
    cluster.add_node(num_cpus=0, object_store_memory=256 * 1024 * 1024)
    cluster.add_node(num_cpus=1, resources={"small": 1}, object_store_memory=64 * 1024 * 1024)
    cluster.connect()
    array = np.arange(10_000_000, dtype=np.int64)  # 80 MB: fits the head, not the small node
    ref = nbray.put(array)

    @nbray.remote(resources={"small": 1})
    def read(a, session_dir):
        return int(a[0]), int(a[-1]), int(a.sum()), [os.path.basename(f) for f in _fallback_files(session_dir)]

    first, last, total, files = nbray.get(read.remote(ref, cluster.session_dir))
    assert (first, last, total) == (0, int(array[-1]), int(array.sum()))
    assert files == [ref.hex()]  # the pulled copy, held in a file on the small node
    del ref
    wait_for_condition(lambda: _fallback_files(cluster.session_dir) == [], timeout=20,
                       message="the pulled copy's fallback file removed once freed")
