"""The Pool's pure decisions: sizing, chunking, starting nbray, choosing workers."""

import itertools

import pytest

from nbray.util.multiprocessing import plan


def test_pool_size_defaults_to_what_the_cluster_holds():
    assert plan.pool_size(None, 4.0, 1.0) == 4
    assert plan.pool_size(None, 4.0, 0.5) == 8
    assert plan.pool_size(None, 0.9, 0.3) == 3  # not 2 from 2.9999
    assert plan.pool_size(None, 3.0, 0.0) == 3  # workers holding no CPU: one per CPU
    assert plan.pool_size(2, 4.0, 1.0) == 2
    assert plan.pool_size(100, 4.0, 0.0) == 100


def test_pool_size_rejects_what_cannot_run():
    with pytest.raises(ValueError, match="at least 1"):
        plan.pool_size(0, 4.0, 1.0)
    with pytest.raises(ValueError, match="at most 4 processes"):
        plan.pool_size(5, 4.0, 1.0)
    with pytest.raises(ValueError, match="too few"):
        plan.pool_size(None, 0.0, 1.0)
    with pytest.raises(TypeError, match="int"):
        plan.pool_size(2.5, 4.0, 1.0)  # type: ignore[arg-type]


def test_workers_for_n_jobs_counts_the_cluster():
    assert plan.workers_for_n_jobs(-1, 8.0, 1.0) == 8
    assert plan.workers_for_n_jobs(-3, 8.0, 1.0) == 6
    assert plan.workers_for_n_jobs(-20, 8.0, 1.0) == 1
    assert plan.workers_for_n_jobs(3, 8.0, 1.0) == 3
    assert plan.workers_for_n_jobs(30, 8.0, 1.0) == 8
    assert plan.workers_for_n_jobs(-1, 8.0, 2.0) == 4
    assert plan.workers_for_n_jobs(-1, 0.0, 1.0) == 1


def test_init_arguments():
    assert plan.init_arguments("10.0.0.1:6379", 4, False, True) == {"address": "10.0.0.1:6379"}
    assert plan.init_arguments("local", 4, True, True) == {"address": "local", "num_cpus": 4}
    assert plan.init_arguments(None, 4, True, False) == {}  # NBRAY_ADDRESS: init reads it
    assert plan.init_arguments(None, 4, False, True) == {}  # join the cluster running here
    assert plan.init_arguments(None, 4, False, False) == {"address": "local", "num_cpus": 4}
    assert plan.init_arguments(None, None, False, False) == {"address": "local", "num_cpus": None}


def test_chunks_and_chunksize():
    assert list(plan.chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(plan.chunks([], 3)) == []
    lazy = plan.chunks(itertools.count(), 2)  # reads only what each chunk needs
    assert [next(lazy), next(lazy)] == [[0, 1], [2, 3]]
    assert plan.default_chunksize(100, 4) == 7  # 100 / 16, rounded up
    assert plan.default_chunksize(16, 4) == 1
    assert plan.default_chunksize(3, 4) == 1
    assert plan.default_chunksize(0, 4) == 1
    assert plan.check_chunksize(5) == 5
    with pytest.raises(ValueError, match="Chunksize must be 1"):
        plan.check_chunksize(0)
    with pytest.raises(TypeError):
        plan.check_chunksize(1.5)  # type: ignore[arg-type]


def test_slots_prefer_the_least_loaded_worker_in_turn():
    slots = plan.WorkerSlots(3)
    assert [slots.assign()[0] for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    slots.finished(1)
    slots.finished(1)
    assert slots.assign() == (1, False)  # the idle one, not the next in turn
    assert slots.total_outstanding == 5


def test_slots_retire_workers_after_their_quota():
    slots = plan.WorkerSlots(2, max_chunks_per_worker=2)
    given = [slots.assign() for _ in range(6)]
    assert given == [(0, False), (1, False), (0, True), (1, True), (0, False), (1, False)]
    for slot, _ in given:
        slots.finished(slot)
    assert slots.total_outstanding == 0
