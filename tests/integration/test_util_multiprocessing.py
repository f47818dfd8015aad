"""nbray.util.multiprocessing.Pool: multiprocessing.Pool's API on worker actors."""

import itertools
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

from nbray.exceptions import RayActorError
from nbray.node.launcher import process_running
from nbray.testing import wait_for_condition
from nbray.util.multiprocessing import Pool, RemoteTraceback, TimeoutError
from nbray.util.queue import Queue

pytestmark = pytest.mark.timeout(90)


class CustomError(Exception):
    pass


def square(x):
    return x * x


def square_and_pid(x):
    return x * x, os.getpid()


def fail_on_three(x):
    if x == 3:
        raise CustomError(f"no {x}")
    return x


def wait_for_item(q):
    return q.get(timeout=60)


def first_waits_for_gate(args):
    """Item 0 waits until the test opens `gate`; the others report to `done`."""
    i, gate, done = args
    if i == 0:
        gate.get(timeout=60)
    else:
        done.put(i)
    return i


def exit_on_one(x):
    if x == 1:
        os._exit(1)  # the worker process dies mid-chunk
    return x


_initialized_with = None


def remember(value):
    global _initialized_with
    _initialized_with = value


def remembered(_):
    return _initialized_with


def refuse_to_start():
    raise RuntimeError("initializer failed")


@pytest.fixture(scope="module")
def pool(shared_cluster):
    """Two workers on half a CPU each: the cluster keeps one CPU for the
    tests that start pools of their own."""
    p = Pool(2, ray_remote_args={"num_cpus": 0.5})
    yield p
    p.terminate()
    p.join()


def test_map_runs_on_the_clusters_workers(pool):
    results = pool.map(square_and_pid, range(8), chunksize=1)
    assert [value for value, _ in results] == [x * x for x in range(8)]
    pids = {pid for _, pid in results}
    assert len(pids) == 2 and os.getpid() not in pids


def test_map_variants(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, (x for x in range(5)), chunksize=2) == [0, 1, 4, 9, 16]
    assert pool.map(square, []) == []
    assert pool.starmap(pow, [(2, 3), (3, 2), (5, 0)]) == [8, 9, 1]
    got = []
    result = pool.map_async(square, range(6), chunksize=4, callback=got.append)
    assert result.get(timeout=30) == [0, 1, 4, 9, 16, 25]
    assert got == [[0, 1, 4, 9, 16, 25]]  # the callback ran before the result was ready
    assert pool.starmap_async(divmod, [(7, 2), (9, 4)]).get(timeout=30) == [(3, 1), (2, 1)]


def test_imap_in_order_unordered_and_lazy(pool):
    assert list(pool.imap(square, range(10), chunksize=3)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=4)) == sorted(x * x for x in range(10))
    # An endless input works: imap reads only as far as results are taken.
    endless = pool.imap(square, itertools.count())
    assert [next(endless) for _ in range(5)] == [0, 1, 4, 9, 16]


def test_imap_keeps_order_when_later_items_finish_first(pool):
    gate, done = Queue(), Queue()
    items = [(i, gate, done) for i in range(4)]
    it = pool.imap(first_waits_for_gate, items)
    assert done.get(timeout=30) == 1  # item 1 ran on the other worker, while item 0 waits
    with pytest.raises(TimeoutError):
        it.next(timeout=0.2)  # 1 is done, but 0 must come first
    gate.put("go")
    assert list(it) == [0, 1, 2, 3]

    unordered = pool.imap_unordered(first_waits_for_gate, items)
    first = unordered.next(timeout=30)
    assert first != 0  # another item is yielded while 0 still waits
    gate.put("go")
    assert sorted([first, *unordered]) == [0, 1, 2, 3]
    gate.shutdown()
    done.shutdown()


def test_apply_and_async_result(pool):
    assert pool.apply(int, ("ff",), {"base": 16}) == 255
    result = pool.apply_async(square_and_pid, (12,))
    value, pid = result.get(timeout=30)
    assert value == 144 and pid != os.getpid()
    result.wait(timeout=30)
    assert result.ready() and result.successful()


def test_function_errors_keep_the_users_type(pool):
    with pytest.raises(CustomError, match="no 3") as info:
        pool.map(fail_on_three, range(6), chunksize=2)
    assert type(info.value) is CustomError
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on_three" in str(info.value.__cause__)  # the worker's traceback

    seen = []
    result = pool.apply_async(fail_on_three, (3,), error_callback=seen.append)
    with pytest.raises(CustomError):
        result.get(timeout=30)
    assert not result.successful()
    assert len(seen) == 1 and type(seen[0]) is CustomError

    # imap raises at the failed item's place and then goes on
    it = pool.imap(fail_on_three, range(5))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(CustomError):
        next(it)
    assert list(it) == [4]


def test_timeouts_of_get_and_next(pool):
    q = Queue()
    result = pool.apply_async(wait_for_item, (q,))
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.1)
    it = pool.imap(wait_for_item, [q])
    with pytest.raises(TimeoutError):
        it.next(timeout=0.1)
    q.put_nowait_batch(["one", "two"])
    assert {result.get(timeout=30), it.next(timeout=30)} == {"one", "two"}
    q.shutdown()


def test_callbacks_may_submit_more_work(pool):
    done = threading.Event()
    got = []

    def chain(value):
        if value < 64:
            pool.apply_async(square, (value,), callback=chain)
        else:
            got.append(value)
            done.set()

    pool.apply_async(square, (2,), callback=chain)
    assert done.wait(30)
    assert got == [256]


def test_bad_arguments(pool):
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.raises(ValueError, match="2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError, match="initializer"):
        Pool(1, initializer="not callable")
    with pytest.raises(ValueError, match="Chunksize"):
        pool.map(square, range(3), chunksize=0)
    with pytest.raises(ValueError, match="Chunksize"):
        pool.imap(square, range(3), chunksize=-1)
    with pytest.raises(NotImplementedError, match="pickled"):
        pickle.dumps(pool)


def test_initializer_runs_in_each_worker(shared_cluster):
    with Pool(1, initializer=remember, initargs=("set up",)) as p:
        assert p.map(remembered, range(3)) == ["set up"] * 3


def test_failing_initializer_fails_the_pool(shared_cluster):
    with pytest.raises(RayActorError, match="__init__"):
        Pool(1, initializer=refuse_to_start)


def test_maxtasksperchild_replaces_workers(shared_cluster):
    # half a CPU each: a new worker need not wait for the CPU of the one it replaces
    p = Pool(1, maxtasksperchild=1, ray_remote_args={"num_cpus": 0.5})
    results = p.map(square_and_pid, range(3), chunksize=1)
    assert [value for value, _ in results] == [0, 1, 4]
    assert len({pid for _, pid in results}) == 3  # a fresh worker for each chunk
    p.close()
    p.join()


def test_a_worker_that_dies_is_replaced(shared_cluster):
    with Pool(1, initializer=remember, initargs=("again",), ray_remote_args={"num_cpus": 0.5}) as p:
        first_pid = p.apply(os.getpid)
        with pytest.raises(RayActorError):
            p.map(exit_on_one, range(3), chunksize=1)
        # a new worker process took its place, set up by the initializer again
        assert p.map(remembered, range(2)) == ["again", "again"]
        assert p.apply(os.getpid) != first_pid


def test_close_then_join_finishes_work_and_ends_workers(shared_cluster):
    p = Pool(1)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    worker_pid = p.apply(os.getpid)
    pending = p.map_async(square, range(10), chunksize=1)
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(square, (1,))
    p.join()
    assert pending.ready() and pending.get() == [x * x for x in range(10)]
    wait_for_condition(lambda: not process_running(worker_pid), message="the worker exits after join")


def test_terminate_fails_pending_work_and_ends_workers(shared_cluster):
    q = Queue()
    p = Pool(1)
    worker_pid = p.apply(os.getpid)
    pending = p.apply_async(wait_for_item, (q,))
    p.terminate()
    with pytest.raises(RayActorError):
        pending.get(timeout=30)
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    p.join()
    wait_for_condition(lambda: not process_running(worker_pid), message="terminate kills the worker")
    q.shutdown()


def test_context_manager_terminates(shared_cluster):
    with Pool(1) as p:
        worker_pid = p.apply(os.getpid)
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(os.getpid)
    wait_for_condition(lambda: not process_running(worker_pid), message="leaving the with block ends the pool")


def test_pool_starts_nbray_when_needed(tmp_path):
    """Without nbray.init, Pool starts a local cluster sized to the pool."""
    script = textwrap.dedent("""
        import os
        import nbray
        from nbray.util.multiprocessing import Pool

        assert not nbray.is_initialized()
        with Pool(2) as pool:
            pids = set(pool.starmap(os.getpid, [()] * 4, chunksize=1))
            cpus = nbray.cluster_resources()["CPU"]
        print(len(pids), os.getpid() in pids, cpus)
        nbray.shutdown()
    """)
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path))
    env.pop("NBRAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "False", "2.0"]
