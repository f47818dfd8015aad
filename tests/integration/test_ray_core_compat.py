"""Ray core names programs rely on: num_returns="dynamic", async actor
__init__, node affinity by NodeID, and the private import paths."""

import asyncio
import os
import signal

import numpy as np
import psutil
import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120)


def _exited(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _owned_by_driver(object_id):
    core = nbray.object_ref._core[0]
    with core.lock:
        return core.refs.get(object_id) is not None


# ---- num_returns="dynamic" ---------------------------------------------------------------------------------


def test_dynamic_task_returns_one_ref_to_a_generator_of_refs(shared_cluster):
    @nbray.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield i * 10

    ref = split.remote(4)
    assert isinstance(ref, nbray.ObjectRef)
    gen = nbray.get(ref)
    assert isinstance(gen, nbray.DynamicObjectRefGenerator)
    assert len(gen) == 4
    refs = list(gen)
    assert all(isinstance(r, nbray.ObjectRef) for r in refs)
    assert nbray.get(refs) == [0, 10, 20, 30]
    assert [nbray.get(r) for r in gen] == [0, 10, 20, 30]  # iterable again


def test_dynamic_set_with_options_and_on_actor_methods(shared_cluster):
    @nbray.remote
    def count(n):
        yield from range(n)

    assert nbray.get(list(nbray.get(count.options(num_returns="dynamic").remote(3)))) == [0, 1, 2]

    @nbray.remote
    class Splitter:
        @nbray.method(num_returns="dynamic")
        def split(self, text):
            yield from text.split()

        def chars(self, text):
            yield from text

    s = Splitter.remote()
    assert nbray.get(list(nbray.get(s.split.remote("a b c")))) == ["a", "b", "c"]
    gen = nbray.get(s.chars.options(num_returns="dynamic").remote("xy"))
    assert len(gen) == 2 and nbray.get(list(gen)) == ["x", "y"]


def test_dynamic_on_async_actor_methods(shared_cluster):
    @nbray.remote
    class AsyncSplitter:
        async def words(self, text):
            for word in text.split():
                await asyncio.sleep(0)
                yield word

        def letters(self, text):  # a plain generator on an async actor
            yield from text

    s = AsyncSplitter.remote()
    words = nbray.get(s.words.options(num_returns="dynamic").remote("p q"))
    assert isinstance(words, nbray.DynamicObjectRefGenerator) and nbray.get(list(words)) == ["p", "q"]
    assert nbray.get(list(nbray.get(s.letters.options(num_returns="dynamic").remote("ab")))) == ["a", "b"]
    assert [nbray.get(r) for r in s.letters.remote("cd")] == ["c", "d"]  # streaming too


def test_dynamic_items_are_owned_by_the_caller_and_outlive_the_worker(shared_cluster):
    @nbray.remote
    class Producer:
        def pid(self):
            return os.getpid()

        @nbray.method(num_returns="dynamic")
        def produce(self):
            yield "small"
            yield np.full(500_000, 7.0)  # big: the node's shared-memory store

    p = Producer.remote()
    pid = nbray.get(p.pid.remote())
    refs = list(nbray.get(p.produce.remote()))
    nbray.kill(p)
    wait_for_condition(lambda: _exited(pid), timeout=30, message="the actor's worker exits")
    small, big = nbray.get(refs)
    assert small == "small"
    assert big.shape == (500_000,) and float(big[0]) == 7.0


def test_dynamic_items_of_a_task_outlive_its_worker(shared_cluster):
    @nbray.remote(num_returns="dynamic")
    def produce():
        yield os.getpid()
        yield np.arange(300_000)

    pid_ref, array_ref = list(nbray.get(produce.remote()))
    pid = nbray.get(pid_ref)
    os.kill(pid, signal.SIGKILL)  # a worker of this test's own cluster
    wait_for_condition(lambda: _exited(pid), timeout=30, message="the worker exits")
    assert int(nbray.get(array_ref)[-1]) == 299_999


def test_dynamic_generator_error_is_its_last_ref(shared_cluster):
    @nbray.remote(num_returns="dynamic")
    def breaks():
        yield 1
        raise KeyError("gave up")

    refs = list(nbray.get(breaks.remote()))
    assert len(refs) == 2
    assert nbray.get(refs[0]) == 1
    with pytest.raises(KeyError):
        nbray.get(refs[1])


def test_dynamic_items_are_freed_with_their_refs(shared_cluster):
    @nbray.remote(num_returns="dynamic")
    def produce():
        yield from range(3)

    ref = produce.remote()
    item_ids = [r.binary() for r in nbray.get(ref)]
    assert all(_owned_by_driver(oid) for oid in item_ids)  # the generator's value holds them
    del ref
    wait_for_condition(lambda: not any(_owned_by_driver(oid) for oid in item_ids), timeout=10,
                       message="the items are released with the generator ref")


def test_dynamic_task_retried_after_its_worker_died_holds_each_item_once(shared_cluster, tmp_path):
    marker = tmp_path / "crashed-once"

    @nbray.remote(num_returns="dynamic", max_retries=1)
    def flaky(path):
        yield np.ones(300_000)
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)  # the first attempt dies after its first item
        yield 2

    ref = flaky.remote(str(marker))
    refs = list(nbray.get(ref))
    assert marker.exists()
    assert float(nbray.get(refs[0]).sum()) == 300_000 and nbray.get(refs[1]) == 2
    item_ids = [r.binary() for r in refs]
    del ref, refs
    wait_for_condition(lambda: not any(_owned_by_driver(oid) for oid in item_ids), timeout=10,
                       message="items yielded by both attempts are released once")


# ---- async __init__ ------------------------------------------------------------------------------------------


def test_async_init_runs_on_the_actors_event_loop(shared_cluster):
    @nbray.remote
    class Service:
        async def __init__(self, start):
            await asyncio.sleep(0)
            self.loop = asyncio.get_running_loop()
            self.ticks = 0
            self.value = start
            # started by __init__: keeps running between calls on the same loop
            self.ticker = asyncio.get_running_loop().create_task(self._tick())

        async def _tick(self):
            while True:
                self.ticks += 1
                await asyncio.sleep(0.001)

        async def state(self):
            return self.value, asyncio.get_running_loop() is self.loop

        async def ticks_seen(self):
            return self.ticks

        def sync_value(self):
            return self.value

    s = Service.remote(5)
    assert nbray.get(s.state.remote()) == (5, True)
    assert nbray.get(s.sync_value.remote()) == 5
    first = nbray.get(s.ticks_seen.remote())
    wait_for_condition(lambda: nbray.get(s.ticks_seen.remote()) > first, timeout=10,
                       message="the task started by __init__ keeps running")


def test_async_init_error_kills_the_actor(shared_cluster):
    @nbray.remote
    class Broken:
        async def __init__(self):
            await asyncio.sleep(0)
            raise ValueError("no config")

        async def ping(self):
            return 1

    with pytest.raises(nbray.exceptions.RayActorError, match="__init__"):
        nbray.get(Broken.remote().ping.remote())


# ---- node affinity by NodeID ----------------------------------------------------------------------------------


def test_node_affinity_accepts_the_runtime_contexts_node_id(shared_cluster):
    ctx = nbray.get_runtime_context()
    node_id = ctx.node_id
    assert isinstance(node_id, nbray.NodeID)
    assert ctx.get_node_id() == node_id.hex()

    @nbray.remote
    def where():
        return nbray.get_runtime_context().get_node_id()

    by_id = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    by_hex = NodeAffinitySchedulingStrategy(node_id=ctx.get_node_id(), soft=False)
    assert by_id == by_hex
    assert nbray.get(where.options(scheduling_strategy=by_id).remote()) == node_id.hex()


# ---- private import paths ------------------------------------------------------------------------------------


def test_private_module_paths_give_the_public_types(shared_cluster):
    from nbray import cloudpickle
    from nbray._raylet import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator

    assert ObjectRef is nbray.ObjectRef and ObjectRefGenerator is nbray.ObjectRefGenerator
    assert DynamicObjectRefGenerator is nbray.DynamicObjectRefGenerator

    @nbray.remote
    def stream():
        yield 1

    assert isinstance(stream.remote(), ObjectRefGenerator)

    # a function pickled with nbray.cloudpickle runs in a task
    scale = 3
    blob = cloudpickle.dumps(lambda x: x * scale)

    @nbray.remote
    def run(data, x):
        return cloudpickle.loads(data)(x)

    assert nbray.get(run.remote(blob, 5)) == 15
