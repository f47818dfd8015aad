"""nbray.util.queue.Queue: an actor-backed FIFO shared by the driver, tasks and actors."""

import asyncio
import os
import pickle
import queue as stdlib_queue
import time

import pytest

import nbray
from nbray.exceptions import RayActorError
from nbray.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(60)


@nbray.remote
def produce(q, items):
    for item in items:
        q.put(item)
    return os.getpid()


@nbray.remote
def consume(q, n):
    return [q.get(timeout=30) for _ in range(n)], os.getpid()


@nbray.remote
class Holder:
    def __init__(self, q):
        self.q = q

    def size(self):
        return self.q.qsize()

    async def get_async(self, timeout):
        return await self.q.get_async(timeout=timeout)


def test_fifo_order_and_sizes(shared_cluster):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    for i in range(3):
        q.put(i)
    assert q.full() and not q.empty() and q.size() == 3
    assert [q.get(), q.get_nowait(), q.get(block=False)] == [0, 1, 2]
    assert q.empty()
    q.shutdown()


def test_full_and_empty_are_the_stdlib_exceptions(shared_cluster):
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(stdlib_queue.Empty):
        q.get(block=False)
    q.put_nowait("a")
    with pytest.raises(Full, match="full"):
        q.put_nowait("b")
    with pytest.raises(stdlib_queue.Full):
        q.put("b", block=False)
    assert q.get() == "a"
    q.shutdown()


def test_timeouts_raise_after_waiting(shared_cluster):
    q = Queue(maxsize=1)
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - start >= 0.3
    q.put(1)
    start = time.monotonic()
    with pytest.raises(Full):
        q.put(2, timeout=0.3)
    assert time.monotonic() - start >= 0.3
    assert q.qsize() == 1  # the timed-out put added nothing
    q.shutdown()


def test_zero_timeout_takes_what_is_there_without_waiting(shared_cluster):
    q = Queue(maxsize=1)
    q.put("now", timeout=0)  # room: added, as stdlib's queue does
    with pytest.raises(Full):
        q.put("later", timeout=0)
    assert q.get(timeout=0) == "now"
    with pytest.raises(Empty):
        q.get(timeout=0)

    async def async_roundtrip():
        await q.put_async("a", timeout=0)
        return await q.get_async(timeout=0)

    assert asyncio.run(async_roundtrip()) == "a"
    q.shutdown()


def test_negative_timeout_and_bad_arguments(shared_cluster):
    q = Queue()
    with pytest.raises(ValueError, match="timeout"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-0.5)
    with pytest.raises(TypeError, match="iterable"):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError, match="int"):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError, match=">= 0"):
        q.get_nowait_batch(-1)
    with pytest.raises(TypeError, match="maxsize"):
        Queue(maxsize="10")
    assert q.empty()  # none of the rejected calls reached the queue
    q.shutdown()


def test_batches_are_all_or_nothing(shared_cluster):
    q = Queue(maxsize=4)
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Full, match="Cannot add 2 items"):
        q.put_nowait_batch([4, 5])
    assert q.qsize() == 3
    with pytest.raises(Empty, match="Cannot get 4 items"):
        q.get_nowait_batch(4)
    assert q.qsize() == 3
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    assert q.get_nowait_batch(1) == [3]
    q.shutdown()


def test_blocked_get_does_not_block_puts(shared_cluster):
    q = Queue()
    waiting = consume.remote(q, 2)
    ready, _ = nbray.wait([waiting], timeout=0.2)
    assert not ready  # the consumer is blocked in get
    q.put("first")
    q.put("second")
    items, pid = nbray.get(waiting, timeout=30)
    assert items == ["first", "second"]
    assert pid != os.getpid()
    q.shutdown()


def test_shared_by_tasks_and_actors(shared_cluster):
    q = Queue()
    producers = [produce.remote(q, range(i * 10, i * 10 + 10)) for i in range(3)]
    holder = Holder.remote(q)
    pids = nbray.get(producers, timeout=30)
    assert all(pid != os.getpid() for pid in pids)
    assert nbray.get(holder.size.remote()) == 30
    items, _ = nbray.get(consume.remote(q, 30), timeout=30)
    assert sorted(items) == list(range(30))
    for i in range(3):  # each producer's items stay in its order
        mine = [x for x in items if i * 10 <= x < i * 10 + 10]
        assert mine == sorted(mine)
    q.shutdown()


def test_pickled_copy_reaches_the_same_items(shared_cluster):
    q = Queue()
    copy = pickle.loads(pickle.dumps(q))
    copy.put("via copy")
    assert q.get(timeout=10) == "via copy"
    q.shutdown()


def test_async_put_and_get(shared_cluster):
    q = Queue(maxsize=1)

    async def roundtrip():
        await q.put_async("x")
        with pytest.raises(Full):
            await q.put_async("y", block=False)
        with pytest.raises(Full):
            await q.put_async("y", timeout=0.1)
        value = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        with pytest.raises(ValueError):
            await q.get_async(timeout=-1)
        return value

    assert asyncio.run(roundtrip()) == "x"
    holder = Holder.remote(q)
    pending = holder.get_async.remote(30)
    q.put("for the actor")
    assert nbray.get(pending, timeout=30) == "for the actor"
    with pytest.raises(Empty):
        nbray.get(holder.get_async.remote(0.1), timeout=30)
    q.shutdown()


def test_shutdown_stops_every_copy(shared_cluster):
    q = Queue()
    holder = Holder.remote(q)
    assert nbray.get(holder.size.remote()) == 0
    q.shutdown()
    with pytest.raises(RayActorError, match="shut down"):
        q.put(1)
    with pytest.raises(RayActorError, match="shut down"):
        q.qsize()
    with pytest.raises(RayActorError, match="shut down"):  # the actor's copy finds the queue's actor gone
        nbray.get(holder.size.remote(), timeout=30)
    q.shutdown()  # a second shutdown does nothing


def test_graceful_shutdown_fails_waiting_gets_with_a_clear_error(shared_cluster):
    q = Queue()
    waiting = consume.remote(q, 1)
    ready, _ = nbray.wait([waiting], timeout=0.2)
    assert not ready
    start = time.monotonic()
    q.shutdown(grace_period_s=20)
    assert time.monotonic() - start < 15  # the actor exits at once, despite the blocked get
    with pytest.raises(RayActorError, match=r"Queue's actor is gone.*shut down"):
        nbray.get(waiting, timeout=30)


def test_forced_shutdown_fails_waiting_gets(shared_cluster):
    q = Queue()
    waiting = consume.remote(q, 1)
    ready, _ = nbray.wait([waiting], timeout=0.2)
    assert not ready
    q.shutdown(force=True)
    with pytest.raises(RayActorError, match="shut down"):
        nbray.get(waiting, timeout=30)


def test_actor_options_are_applied(shared_cluster):
    q = Queue(actor_options={"name": "util-queue-test", "num_cpus": 0})
    q.put("named")
    found = nbray.get_actor("util-queue-test")
    assert nbray.get(found.get.remote(None)) == (True, "named")
    q.shutdown()
