"""Worker deaths, retries, restarts, cancellation and bad input."""

import os
import signal
import threading
import time

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util.state import list_tasks

pytestmark = pytest.mark.timeout(90)


def test_worker_death_is_retried_then_raises(shared_cluster, tmp_path):
    attempts = tmp_path / "attempts"

    @nbray.remote(max_retries=2)
    def always_dies(path):
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)

    with pytest.raises(nbray.exceptions.WorkerCrashedError, match="max_retries=2"):
        nbray.get(always_dies.remote(str(attempts)))
    assert attempts.read_text() == "xxx"  # first try + 2 retries


@pytest.mark.parametrize("how", ["sigkill", "exit", "segfault"])
def test_task_succeeds_after_its_worker_dies(shared_cluster, tmp_path, how):
    counter = tmp_path / "n"

    @nbray.remote(max_retries=3)
    def flaky(path, how):
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif how == "exit":
                os._exit(3)
            else:
                import ctypes

                ctypes.string_at(0)
        return n

    assert nbray.get(flaky.remote(str(counter), how)) == 2


def test_state_api_shows_each_failed_attempt(shared_cluster, tmp_path):
    counter = tmp_path / "n"

    @nbray.remote(max_retries=3)
    def killed_three_times(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return "done"

    ref = killed_three_times.remote(str(counter))
    assert nbray.get(ref) == "done"
    task_id = ref.task_id().hex()

    def attempts():
        rows = list_tasks(filters=[("task_id", "=", task_id)])
        return sorted(r["state"] for r in rows) if len(rows) == 4 and all(
            r["state"] in ("FAILED", "FINISHED") for r in rows) else None

    assert wait_for_condition(attempts, timeout=20) == ["FAILED", "FAILED", "FAILED", "FINISHED"]


def test_application_errors_are_not_retried_by_default(shared_cluster, tmp_path):
    counter = tmp_path / "n"

    @nbray.remote(max_retries=3)
    def raises(path):
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("user bug")

    with pytest.raises(ValueError, match="user bug"):
        nbray.get(raises.remote(str(counter)))
    assert counter.read_text() == "x"


def test_retry_exceptions_retries_listed_exceptions(shared_cluster, tmp_path):
    counter = tmp_path / "n"

    @nbray.remote(max_retries=3, retry_exceptions=[ConnectionError])
    def transient(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise ConnectionError("flaky network")
        return n

    assert nbray.get(transient.remote(str(counter))) == 2

    @nbray.remote(max_retries=3, retry_exceptions=[ConnectionError])
    def other(path):
        with open(path, "a") as f:
            f.write("y")
        raise KeyError("not listed")

    other_counter = tmp_path / "o"
    with pytest.raises(KeyError):
        nbray.get(other.remote(str(other_counter)))
    assert other_counter.read_text() == "y"


def test_remote_error_message_names_task_pid_and_node(shared_cluster):
    @nbray.remote
    def fails():
        raise IndexError("out of range here")

    with pytest.raises(IndexError) as info:
        nbray.get(fails.remote())
    err = info.value
    assert isinstance(err, nbray.exceptions.RayTaskError)
    text = str(err)
    assert "fails()" in text and "pid=" in text and "ip=" in text
    assert "out of range here" in text and 'raise IndexError("out of range here")' in text
    assert isinstance(err.cause, IndexError)


def test_dependent_task_inherits_upstream_error(shared_cluster):
    @nbray.remote
    def bad():
        raise RuntimeError("upstream")

    @nbray.remote
    def downstream(x):
        return x

    with pytest.raises(RuntimeError, match="upstream"):
        nbray.get(downstream.remote(bad.remote()))


def test_get_raises_the_first_error_without_waiting_for_slow_tasks(shared_cluster, tmp_path):
    flag = str(tmp_path / "go")

    @nbray.remote
    def slow(path):
        while not os.path.exists(path):
            time.sleep(0.01)

    @nbray.remote
    def bad():
        raise OSError("fast failure")

    slow_ref = slow.remote(flag)
    with pytest.raises(OSError, match="fast failure"):
        nbray.get([slow_ref, bad.remote()], timeout=30)
    open(flag, "w").close()
    nbray.get(slow_ref)


def test_actor_restarts_and_reruns_init(shared_cluster):
    @nbray.remote(max_restarts=2)
    class Phoenix:
        def __init__(self):
            self.born = time.time()

        def pid(self):
            return os.getpid()

        def die(self):
            os._exit(1)

    p = Phoenix.remote()
    first = nbray.get(p.pid.remote())
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(p.die.remote())
    second = wait_for_condition(lambda: nbray.get(p.pid.remote(), timeout=10), timeout=30)
    assert second != first
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(p.die.remote())
    third = wait_for_condition(lambda: nbray.get(p.pid.remote(), timeout=10), timeout=30)
    assert third not in (first, second)
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(p.die.remote())
    with pytest.raises(nbray.exceptions.ActorDiedError, match="restarts"):
        nbray.get(p.pid.remote(), timeout=20)


def test_actor_task_retries_on_restart(shared_cluster, tmp_path):
    marker = tmp_path / "died"

    @nbray.remote(max_restarts=1, max_task_retries=1)
    class Once:
        def work(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "retried"

    o = Once.remote()
    assert nbray.get(o.work.remote(str(marker)), timeout=30) == "retried"


def test_actor_without_restarts_dies_for_good(shared_cluster):
    @nbray.remote
    class Mortal:
        def die(self):
            os._exit(1)

        def ping(self):
            return 1

    m = Mortal.remote()
    assert nbray.get(m.ping.remote()) == 1
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(m.die.remote())
    with pytest.raises(nbray.exceptions.ActorDiedError):
        nbray.get(m.ping.remote(), timeout=20)


def test_cancel_running_task(shared_cluster):
    @nbray.remote
    def forever():
        time.sleep(60)

    ref = forever.remote()
    wait_for_condition(lambda: any(r["state"] == "RUNNING" for r in list_tasks(
        filters=[("task_id", "=", ref.task_id().hex())])), timeout=20)
    nbray.cancel(ref)
    start = time.time()
    with pytest.raises(nbray.exceptions.TaskCancelledError):
        nbray.get(ref, timeout=20)
    assert time.time() - start < 10


def test_force_cancel_kills_the_worker(shared_cluster):
    @nbray.remote
    def stubborn():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(60)

    ref = stubborn.remote()
    wait_for_condition(lambda: any(r["state"] == "RUNNING" for r in list_tasks(
        filters=[("task_id", "=", ref.task_id().hex())])), timeout=20)
    nbray.cancel(ref, force=True)
    with pytest.raises(nbray.exceptions.TaskCancelledError):
        nbray.get(ref, timeout=20)


def test_cancel_pending_task_and_actor_task_force_is_refused(shared_cluster):
    @nbray.remote(resources={"custom": 100})  # never schedulable here
    def never():
        return 1

    ref = never.remote()
    nbray.cancel(ref)
    with pytest.raises(nbray.exceptions.TaskCancelledError):
        nbray.get(ref, timeout=20)

    @nbray.remote
    class A:
        def f(self):
            return 1

    a = A.remote()
    with pytest.raises(ValueError, match="force=True"):
        nbray.cancel(a.f.remote(), force=True)


def test_unpicklable_argument_is_rejected_at_submit(shared_cluster):
    @nbray.remote
    def f(x, y=None):
        return 1

    with pytest.raises(TypeError, match="argument 0 of f"):
        f.remote(threading.Lock())
    with pytest.raises(TypeError, match="keyword argument 'y'"):
        f.remote(1, y=threading.Lock())


def test_unpicklable_return_fails_only_that_task(shared_cluster):
    @nbray.remote
    def bad_return():
        return threading.Lock()

    @nbray.remote
    def pid():
        return os.getpid()

    with pytest.raises(nbray.exceptions.RayTaskError, match="serialize"):
        nbray.get(bad_return.remote())
    assert nbray.get(pid.remote()) > 0


def test_raylet_replaces_dead_workers(shared_cluster):
    @nbray.remote
    def pid():
        return os.getpid()

    @nbray.remote(max_retries=0)
    def die():
        os._exit(1)

    for _ in range(3):
        with pytest.raises(nbray.exceptions.WorkerCrashedError):
            nbray.get(die.remote())
    pids = set(nbray.get([pid.remote() for _ in range(10)]))
    assert pids
    wait_for_condition(lambda: nbray.available_resources().get("CPU") == 2.0, timeout=20,
                       message="no leaked CPU after worker deaths")
