"""nbray.util.joblib: joblib's Parallel on the cluster's workers."""

import importlib
import os
import sys

import pytest

import nbray
from nbray.util.state import list_workers

joblib = pytest.importorskip("joblib")

from nbray.util.joblib import NbrayBackend, register_nbray, register_ray  # noqa: E402

pytestmark = pytest.mark.timeout(90)


class JobError(Exception):
    pass


def square_and_pid(x):
    return x * x, os.getpid()


def square_and_worker(x):
    return x * x, os.getpid(), nbray.get_runtime_context().get_worker_id()


def fail_on_three(x):
    if x == 3:
        raise JobError("three")
    return x


@pytest.fixture(autouse=True)
def registered():
    register_nbray()


def test_both_names_select_the_backend():
    from joblib.parallel import BACKENDS

    assert BACKENDS["ray"] is NbrayBackend and BACKENDS["nbray"] is NbrayBackend


def test_parallel_runs_on_the_clusters_workers(shared_cluster):
    with joblib.parallel_backend("ray"), joblib.Parallel(n_jobs=-1) as parallel:
        assert parallel.n_jobs == -1
        results = parallel(joblib.delayed(square_and_worker)(i) for i in range(40))
        assert [value for value, _, _ in results] == [i * i for i in range(40)]
        ran_on = {(pid, worker_id) for _, pid, worker_id in results}
        assert os.getpid() not in {pid for pid, _ in ran_on}
        # each (pid, worker id) is a pool actor's worker process the raylet knows
        workers = {w["worker_id"]: w for w in list_workers()}
        assert nbray.get_runtime_context().get_worker_id() not in {worker_id for _, worker_id in ran_on}
        for pid, worker_id in ran_on:
            assert workers[worker_id]["worker_type"] == "WORKER" and workers[worker_id]["pid"] == pid
            assert workers[worker_id]["actor_id"]
        # the same workers serve the next call of a `with Parallel` block
        again = parallel(joblib.delayed(square_and_worker)(i) for i in range(4))
        assert {(pid, worker_id) for _, pid, worker_id in again} <= ran_on


def test_ray_remote_args_size_the_workers(shared_cluster):
    with joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 0.5}), \
            joblib.Parallel(n_jobs=-1) as parallel:
        results = parallel(joblib.delayed(square_and_worker)(i) for i in range(8))
        assert [value for value, _, _ in results] == [i * i for i in range(8)]
        pool_workers = [w for w in list_workers() if w["actor_id"] and w["resources"].get("CPU") == 0.5]
        assert len(pool_workers) == 4  # 2 CPUs hold four half-CPU workers
        assert {worker_id for _, _, worker_id in results} <= {w["worker_id"] for w in pool_workers}


def test_errors_keep_the_users_type(shared_cluster):
    with joblib.parallel_backend("ray"), pytest.raises(JobError, match="three"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_three)(i) for i in range(8))


def test_parallel_goes_on_after_an_error(shared_cluster):
    with joblib.parallel_backend("ray"), joblib.Parallel(n_jobs=2) as parallel:
        with pytest.raises(JobError):
            parallel(joblib.delayed(fail_on_three)(i) for i in range(8))
        # joblib replaced the aborted pool with a new one
        results = parallel(joblib.delayed(square_and_worker)(i) for i in range(6))
        assert [value for value, _, _ in results] == [i * i for i in range(6)]
        assert os.getpid() not in {pid for _, pid, _ in results}


def test_n_jobs_is_sized_by_the_cluster(shared_cluster):
    backend = NbrayBackend()
    assert backend.effective_n_jobs(-1) == 2  # the cluster's CPUs, not this machine's
    assert backend.effective_n_jobs(-2) == 1
    assert backend.effective_n_jobs(64) == 2  # more workers than CPUs could never be placed
    assert NbrayBackend(ray_remote_args={"num_cpus": 0.5}).effective_n_jobs(-1) == 4
    with pytest.raises(ValueError, match="n_jobs == 0"):
        backend.effective_n_jobs(0)


def test_one_job_runs_here(shared_cluster):
    with joblib.parallel_backend("nbray"):
        results = joblib.Parallel(n_jobs=1)(joblib.delayed(square_and_pid)(i) for i in range(3))
    assert results == [(0, os.getpid()), (1, os.getpid()), (4, os.getpid())]


def test_register_ray_is_the_same_function():
    assert register_ray is register_nbray


def test_missing_joblib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "joblib", None)  # as if not installed
    for name in [m for m in sys.modules if m.startswith("nbray.util.joblib")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'pip install "nbray\[joblib\]"'):
        importlib.import_module("nbray.util.joblib")
