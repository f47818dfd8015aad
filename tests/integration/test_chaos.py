"""Chaos and soak: work keeps its results while workers die at random around
it, and a long run leaves nothing growing behind. Slow (separate CI step):
``pytest -m slow``. The seeded scenarios (actor restarts, lineage after node
loss, GCS kills, RPC loss, ...) are in test_chaos_suite.py."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nbray
from nbray.testing import Cluster, wait_for_condition
from nbray.testing.chaos import FAST_DETECTION, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

class Killer:
    """Kills a random worker every `every_s` seconds until stopped."""

    def __init__(self, cluster: Cluster, every_s: float, pick: Any = None) -> None:
        self.cluster = cluster
        self.every_s = every_s
        self.pick = pick or (lambda: worker_pids(cluster))
        self.stop = threading.Event()
        self.kills = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self.stop.wait(self.every_s):
            pids = self.pick()
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def two_nodes() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2}, system_config=FAST_DETECTION)
    cluster.add_node(num_cpus=2)
    nbray.init(address=cluster.address)
    try:
        yield cluster
    finally:
        nbray.shutdown()
        cluster.shutdown()


def resources_settle() -> None:
    def settled() -> bool:
        total, free = nbray.cluster_resources(), nbray.available_resources()
        return free.get("CPU") == total.get("CPU")

    wait_for_condition(settled, timeout=60, message="every CPU is free again")


def test_tasks_keep_their_results_while_workers_are_killed(two_nodes: Cluster) -> None:
    @nbray.remote(max_retries=-1)
    def square(i: int) -> int:
        time.sleep(0.02)
        return i * i

    @nbray.remote(max_retries=-1)
    def total(*parts: int) -> int:
        return sum(parts)

    with Killer(two_nodes, every_s=0.15) as killer:
        squares = [square.remote(i) for i in range(400)]
        sums = [total.remote(*squares[k:k + 20]) for k in range(0, 400, 20)]
        assert sum(nbray.get(sums, timeout=400)) == sum(i * i for i in range(400))
    assert killer.kills >= 5
    resources_settle()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss(pid: int) -> int:
    """Private resident memory (shared-memory store pages not counted)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def test_a_long_run_leaves_nothing_growing() -> None:
    # Task history is kept up to a cap by design; a small cap, reached in
    # the warm-up, leaves any growth after it to a leak.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 200 << 20},
                      system_config={"task_events_max_tasks_in_gcs": 1000, "dashboard_max_tasks": 1000})
    try:
        nbray.init(address=cluster.address)
        assert cluster.head is not None
        daemons = {name: proc.pid for name, proc in cluster.head.processes.items()}

        @nbray.remote
        def work(x: Any) -> Any:
            return x

        @nbray.remote
        class Keeper:
            def keep(self, x: Any) -> int:
                return len(x)

        def round_() -> None:
            keeper = Keeper.remote()
            refs = [work.remote(i) for i in range(2000)]
            assert nbray.get(refs)[-1] == 1999
            big = [nbray.put(bytes(200_000)) for _ in range(50)]
            assert sum(nbray.get([keeper.keep.remote(b) for b in big])) == 50 * 200_000
            del refs, big, keeper

        round_()  # warm up: pools, caches, worker processes
        from nbray.api import _state

        core = _state.core
        wait_for_condition(lambda: len(core.refs.refs) < 50, timeout=30)
        fds_before = {n: _fds(p) for n, p in daemons.items()}
        rss_before = {n: _rss(p) for n, p in daemons.items()}
        for _ in range(30):
            round_()
        # everything freed: the driver forgets its objects, the store empties
        wait_for_condition(lambda: len(core.refs.refs) < 50, timeout=60, message="driver refs freed")
        wait_for_condition(lambda: all(n.object_store_used_bytes == 0
                                       for n in core.gcs.call("GetClusterStatus").nodes),
                           timeout=60, message="the object store is empty")
        for name, pid in daemons.items():
            assert _fds(pid) <= fds_before[name] + 8, f"{name} leaks file descriptors"
            assert _rss(pid) <= rss_before[name] + (16 << 20), f"{name} memory grew by {(_rss(pid) - rss_before[name]) >> 20} MiB"
        nbray.shutdown()
    finally:
        nbray.shutdown()
        cluster.shutdown()
