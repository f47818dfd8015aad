"""Actors: ordering, concurrency modes, handles, names, lifetimes, exits."""

import asyncio
import os
import random
import threading
import time

import pytest

import nbray
from nbray.node.launcher import process_running
from nbray.testing import wait_for_condition

pytestmark = pytest.mark.timeout(60)


@nbray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n

    def get(self):
        return self.n

    def pid(self):
        return os.getpid()


def test_calls_from_one_handle_run_in_order(shared_cluster):
    c = Counter.remote()
    refs = [c.inc.remote() for _ in range(200)]
    assert nbray.get(refs) == list(range(1, 201))


def test_constructor_arguments_including_refs(shared_cluster):
    c = Counter.remote(nbray.put(10))
    assert nbray.get(c.inc.remote(5)) == 15


def test_handles_can_be_passed_to_tasks_and_actors(shared_cluster):
    c = Counter.remote()

    @nbray.remote
    def bump(counter):
        return nbray.get(counter.inc.remote(10))

    @nbray.remote
    class Proxy:
        def __init__(self, counter):
            self.counter = counter

        def bump(self):
            return nbray.get(self.counter.inc.remote(100))

    assert nbray.get(bump.remote(c)) == 10
    p = Proxy.remote(c)
    assert nbray.get(p.bump.remote()) == 110
    assert nbray.get(c.get.remote()) == 110


def test_threaded_actor_runs_calls_concurrently(shared_cluster):
    @nbray.remote(max_concurrency=4)
    class Gate:
        def __init__(self):
            self.arrived = 0
            self.lock = threading.Lock()

        def meet(self):
            with self.lock:
                self.arrived += 1
            deadline = time.time() + 10
            while self.arrived < 4 and time.time() < deadline:
                time.sleep(0.001)
            return self.arrived

    g = Gate.remote()
    assert nbray.get([g.meet.remote() for _ in range(4)], timeout=30) == [4, 4, 4, 4]


def test_async_actor_interleaves_coroutines(shared_cluster):
    @nbray.remote
    class Async:
        def __init__(self):
            self.event = None

        async def wait_for_signal(self):
            if self.event is None:
                self.event = asyncio.Event()
            await self.event.wait()
            return "released"

        async def signal(self):
            if self.event is None:
                self.event = asyncio.Event()
            self.event.set()
            return "sent"

    a = Async.remote()
    waiting = a.wait_for_signal.remote()
    assert nbray.get(a.signal.remote(), timeout=20) == "sent"
    assert nbray.get(waiting, timeout=20) == "released"


def test_named_actor_lookup_and_namespace(shared_cluster):
    c = Counter.options(name="counter-a").remote(5)
    h = nbray.get_actor("counter-a")
    assert nbray.get(h.inc.remote()) == 6
    with pytest.raises(ValueError, match="Failed to look up actor"):
        nbray.get_actor("counter-a", namespace="elsewhere")
    with pytest.raises(nbray.exceptions.ActorAlreadyExistsError):
        Counter.options(name="counter-a").remote()
    same = Counter.options(name="counter-a", get_if_exists=True).remote()
    assert nbray.get(same.get.remote()) == 6
    del c, h, same


def test_list_named_actors(shared_cluster):
    keep = Counter.options(name="listed").remote()
    nbray.get(keep.get.remote())
    assert "listed" in nbray.util.list_named_actors()
    assert {"name": "listed", "namespace": nbray.get_runtime_context().namespace} in \
        nbray.util.list_named_actors(all_namespaces=True)


def test_actor_dies_when_its_handles_go_out_of_scope(shared_cluster):
    c = Counter.options(name="scoped").remote()
    pid = nbray.get(c.pid.remote())
    del c
    wait_for_condition(lambda: not process_running(pid), timeout=20, message="actor process exits")
    with pytest.raises(ValueError):
        nbray.get_actor("scoped")


def test_a_call_through_a_dropped_handle_still_completes(shared_cluster):
    @nbray.remote
    class Slow:
        def pid_after(self, delay):
            import time

            time.sleep(delay)
            return os.getpid()

    # the handle is gone as soon as the call is submitted; the call keeps the actor
    pid = nbray.get(Slow.remote().pid_after.remote(0.3))
    wait_for_condition(lambda: not process_running(pid), timeout=20, message="actor exits after the call")


def test_detached_actor_outlives_its_handles(shared_cluster):
    c = Counter.options(name="detached-one", lifetime="detached").remote()
    pid = nbray.get(c.pid.remote())
    del c
    time.sleep(0.3)
    assert process_running(pid)
    h = nbray.get_actor("detached-one")
    assert nbray.get(h.inc.remote()) == 1
    nbray.kill(h)
    wait_for_condition(lambda: not process_running(pid), timeout=20)


def test_kill_fails_every_later_call_at_once(shared_cluster):
    # The GCS kills the worker after it has answered the kill: a call made
    # right after nbray.kill() returns must still never reach the actor.
    rng = random.Random(20261208)
    for _ in range(12):
        c = Counter.remote()
        for _ in range(rng.randint(1, 20)):
            c.inc.remote()
        pid = nbray.get(c.pid.remote())
        nbray.kill(c)
        for _ in range(rng.randint(1, 5)):
            with pytest.raises(nbray.exceptions.RayActorError, match="killed"):
                nbray.get(c.inc.remote(), timeout=20)
        wait_for_condition(lambda pid=pid: not process_running(pid), timeout=20)


def test_ray_terminate_runs_queued_calls_first(shared_cluster):
    c = Counter.remote()
    refs = [c.inc.remote() for _ in range(5)]
    c.__ray_terminate__.remote()
    assert nbray.get(refs) == [1, 2, 3, 4, 5]
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(c.inc.remote(), timeout=20)


def test_exit_actor_from_inside(shared_cluster):
    @nbray.remote
    class Quitter:
        def quit(self):
            nbray.actor.exit_actor()

        def ping(self):
            return "pong"

    q = Quitter.remote()
    assert nbray.get(q.ping.remote()) == "pong"
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(q.quit.remote(), timeout=20)
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(q.ping.remote(), timeout=20)


def test_init_failure_fails_every_call_with_the_cause(shared_cluster):
    @nbray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("no way")

        def f(self):
            return 1

    b = Broken.remote()
    for _ in range(2):
        with pytest.raises(nbray.exceptions.ActorDiedError) as info:
            nbray.get(b.f.remote(), timeout=20)
        assert "no way" in str(info.value)
        assert info.value.actor_init_failed


def test_method_options_and_num_returns(shared_cluster):
    @nbray.remote
    class Multi:
        @nbray.method(num_returns=2)
        def pair(self):
            return "a", "b"

        def gen(self, n):
            yield from range(n)

    m = Multi.remote()
    assert nbray.get(m.pair.remote()) == ["a", "b"]
    assert [nbray.get(r) for r in m.gen.remote(3)] == [0, 1, 2]
    assert nbray.get(m.pair.options(num_returns=1).remote()) == ("a", "b")


def test_unknown_method_and_direct_calls(shared_cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no method 'nope'"):
        c.nope.remote()
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        c.inc()
    with pytest.raises(TypeError, match="cannot be instantiated directly"):
        Counter()


def test_runtime_context_inside_actor(shared_cluster):
    @nbray.remote
    class Who:
        def who(self):
            ctx = nbray.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_node_id(), ctx.get_job_id()

    w = Who.remote()
    actor_id, node_id, job_id = nbray.get(w.who.remote())
    assert actor_id == w._actor_id.hex()
    assert node_id == nbray.get_runtime_context().get_node_id()
    assert job_id == nbray.get_runtime_context().get_job_id()
