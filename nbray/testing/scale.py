"""Many real raylets on one machine, in one cluster (test and benchmark
harness; runs in the measuring process, which is also the driver).

    with ManyNodes(raylets=64) as nodes:
        join_s = nodes.start()
        ...

Every node is a real raylet process with its own ports, Unix socket, store
(small: the arena is a memfd, so an unused store costs no memory) and worker
factory; the first one is the head and also runs the GCS. Nodes start in
parallel, as machines of a real cluster boot. The harness measures what a
large cluster asks of the control plane: how long the nodes take to join,
a task pinned to each node, how soon the GCS declares a killed or hung
raylet dead, how fast ``nbray status`` answers, and each node's memory.

``python -m nbray.scripts.scale_nodes --raylets 64`` runs it from the
command line.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbray.node import launcher
from nbray.node.launcher import NodeProcesses
from nbray.testing import Cluster, assert_no_leaks, descendant_pids, wait_for_condition
from nbray.testing.process_memory import ZERO, ProcessMemory, children_by_parent, cpu_seconds, memory_of

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """How the GCS probes raylets (the config fields of the same names)."""

    period_ms: int = 500
    timeout_ms: int = 1_000
    failure_threshold: int = 3

    def system_config(self) -> dict[str, int]:
        return {"health_check_period_ms": self.period_ms, "health_check_timeout_ms": self.timeout_ms,
                "health_check_failure_threshold": self.failure_threshold,
                # Probing starts once the nodes are up, not seconds later.
                "health_check_initial_delay_ms": self.period_ms}


def death_detection_bound_s(check: HealthCheck) -> float:
    """Latest a hung raylet is declared dead after it stops answering.

    A probe is sent every period unless one is in flight, so each failure
    takes at most a period (to the next round) plus the timeout; the last
    of ``failure_threshold`` failures declares the node dead. One more
    period covers timers that fire late. A killed raylet's connection
    closes, which the GCS notices at once, well inside this bound.
    """
    if check.period_ms <= 0 or check.timeout_ms <= 0 or check.failure_threshold <= 0:
        raise ValueError(f"health-check settings must be positive: {check}")
    return (check.failure_threshold * (check.period_ms + check.timeout_ms) + check.period_ms) / 1000


@dataclasses.dataclass
class NodeMemory:
    """Mean memory per node, by process kind (bytes)."""

    raylet: ProcessMemory
    worker_factory: ProcessMemory
    workers: ProcessMemory
    workers_per_node: float


class ManyNodes:
    """`raylets` nodes (the head's included) of one cluster on this machine."""

    def __init__(self, raylets: int, *, cpus_per_raylet: float = 1, store_bytes: int = 64 * MIB,
                 health_check: HealthCheck | None = None, parallel_starts: int = 16) -> None:
        if raylets < 2:
            raise ValueError(f"at least 2 raylets (a head and a node to lose), not {raylets}")
        if not 0 <= cpus_per_raylet <= 1:
            raise ValueError(f"cpus_per_raylet must be between 0 and 1, not {cpus_per_raylet}")
        self.raylets = raylets
        self.cpus_per_raylet = cpus_per_raylet
        self.store_bytes = store_bytes
        self.health_check = health_check or HealthCheck()
        self.parallel_starts = max(1, parallel_starts)
        self.cluster: Cluster | None = None
        self._pids: set[int] = set()
        self._connected = False

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> float:
        """Start every node; returns seconds until the GCS lists all alive.

        Raises TimeoutError when they have not joined within `timeout_s`.
        """
        began = time.perf_counter()
        node_args: dict[str, Any] = {"num_cpus": self.cpus_per_raylet, "object_store_memory": self.store_bytes}
        self.cluster = Cluster(initialize_head=True, head_node_args=node_args,
                               system_config=self.health_check.system_config())
        head = self.cluster.head
        assert head is not None
        self._pids |= set(head.pids().values())

        def start_one(_: int) -> NodeProcesses:
            node = launcher.start_worker_node(
                config=self.cluster.config, gcs_address=head.gcs_address,  # type: ignore[union-attr]
                token=head.token, session_dir=head.session_dir, parent_pid=os.getpid(), **node_args)
            self._pids.update(node.pids().values())
            self.cluster.worker_nodes.append(node)  # type: ignore[union-attr]
            return node

        with ThreadPoolExecutor(self.parallel_starts) as pool:
            list(pool.map(start_one, range(self.raylets - 1)))
        remaining = timeout_s - (time.perf_counter() - began)
        self.cluster.wait_for_nodes(timeout=max(remaining, 0.1))
        return time.perf_counter() - began

    def connect(self) -> None:
        import nbray

        assert self.cluster is not None
        nbray.init(address=self.cluster.address)
        self._connected = True

    def shutdown(self) -> None:
        """Stop every node and check that nothing is left behind."""
        if self._connected:
            import nbray

            nbray.shutdown()
            self._connected = False
        if self.cluster is None:
            return
        for node in self.cluster.list_all_nodes():
            self._pids |= descendant_pids(list(node.pids().values()))
        cluster, self.cluster = self.cluster, None
        workers, cluster.worker_nodes = cluster.worker_nodes, []
        try:
            with ThreadPoolExecutor(self.parallel_starts) as pool:
                # SIGKILL: a graceful stop takes about a second per node and is not what is measured here
                list(pool.map(lambda node: node.stop(force=True), workers))
        finally:
            cluster.shutdown()
        assert_no_leaks(self._pids)

    def __enter__(self) -> ManyNodes:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ---- measurements -----------------------------------------------------------------------------

    def alive_node_ids(self) -> set[bytes]:
        from nbray.protocol import gcs_pb2

        nodes = self._gcs_call("GcsService.GetAllNodeInfo").nodes
        return {n.node_id for n in nodes if n.state == gcs_pb2.NodeInfo.ALIVE}

    def run_task_on_every_node(self) -> tuple[float, dict[bytes, bytes]]:
        """One trivial task pinned to each live node; returns the seconds it
        took and, by node asked for, the node each task ran on."""
        import nbray
        from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @nbray.remote(num_cpus=min(self.cpus_per_raylet, 1))
        def where() -> str:
            return nbray.get_runtime_context().get_node_id()

        targets = sorted(self.alive_node_ids())
        began = time.perf_counter()
        refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(t.hex(), soft=False)).remote()
                for t in targets]
        ran = nbray.get(refs, timeout=120)
        elapsed = time.perf_counter() - began
        return elapsed, {t: bytes.fromhex(r) for t, r in zip(targets, ran)}

    def status_latency_s(self, rounds: int = 5) -> float:
        """Median seconds of the request behind ``nbray status``."""
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            self._gcs_call("GcsService.GetClusterStatus")
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    def status_command_s(self, rounds: int = 3) -> tuple[float, float]:
        """Median seconds the ``nbray status`` command takes, interpreter
        start included, and of a bare interpreter start, alternated."""
        assert self.cluster is not None and self.cluster.head is not None
        env = dict(os.environ, NBRAY_AUTH_TOKEN=self.cluster.head.token.hex())
        status = [sys.executable, "-m", "nbray.scripts.cli", "status", "--address", self.cluster.address]
        commands: list[float] = []
        bare: list[float] = []
        for _ in range(rounds):
            for argv, times in ((status, commands), ([sys.executable, "-c", "pass"], bare)):
                began = time.perf_counter()
                out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
                times.append(time.perf_counter() - began)
                if out.returncode != 0:
                    raise RuntimeError(f"{argv[-3:]} failed: {out.stderr[-2000:]}")
        return statistics.median(commands), statistics.median(bare)

    def idle_cpu_share(self, window_s: float = 5.0) -> dict[str, float]:
        """CPU the idle cluster uses over `window_s`, as shares of one core:
        the GCS, the raylets, their worker factories and their workers."""
        assert self.cluster is not None
        tree = children_by_parent()
        kinds: dict[str, list[int]] = {"gcs": [], "raylets": [], "worker factories": [], "workers": []}
        for node in self.cluster.list_all_nodes():
            for name, pid in node.pids().items():
                if name == "raylet":
                    kinds["raylets"].append(pid)
                    for factory in tree.get(pid, []):
                        kinds["worker factories"].append(factory)
                        kinds["workers"] += tree.get(factory, [])
                elif name == "gcs":
                    kinds["gcs"] += [pid, *tree.get(pid, [])]

        def used(pids: list[int]) -> float:
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except ProcessLookupError:
                    pass
            return total

        before, t0 = {k: used(v) for k, v in kinds.items()}, time.monotonic()
        time.sleep(window_s)  # the window is the measurement
        elapsed = time.monotonic() - t0
        return {k: (used(v) - before[k]) / elapsed for k, v in kinds.items()}

    def kill_one(self) -> float:
        """SIGKILL one node's raylet; seconds until the GCS lists it dead."""
        node = self._take_victim()
        began = time.monotonic()
        node.processes["raylet"].kill()
        return self._wait_dead(node, began)

    def hang_one(self) -> float:
        """SIGSTOP one node's raylet (it stays connected but stops
        answering); seconds until health checks declare it dead."""
        node = self._take_victim()
        proc = node.processes["raylet"]
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            return self._wait_dead(node, began)  # which stops the node with SIGKILL
        except BaseException:
            node.stop(force=True)
            raise

    def memory_per_node(self) -> NodeMemory:
        """Mean memory of one node's raylet, its worker factory and its workers."""
        assert self.cluster is not None
        tree = children_by_parent()
        raylet = factory = workers = ZERO
        num_workers = 0
        nodes = [n for n in self.cluster.list_all_nodes() if n.processes["raylet"].poll() is None]
        for node in nodes:
            pid = node.processes["raylet"].pid
            raylet += memory_of(pid)
            for child in tree.get(pid, []):
                factory += memory_of(child)
                for worker in tree.get(child, []):
                    workers += memory_of(worker)
                    num_workers += 1
        n = len(nodes)

        def mean(m: ProcessMemory) -> ProcessMemory:
            return ProcessMemory(m.rss // n, m.pss // n, m.uss // n)

        return NodeMemory(mean(raylet), mean(factory), mean(workers), num_workers / n)

    # ---- internals --------------------------------------------------------------------------------

    def _gcs_call(self, name: str) -> Any:
        from nbray.rpc.blocking import BlockingClient

        assert self.cluster is not None and self.cluster.head is not None
        with BlockingClient(self.cluster.address, self.cluster.head.token) as client:
            return client.call(name)

    def _take_victim(self) -> NodeProcesses:
        assert self.cluster is not None
        if not self.cluster.worker_nodes:
            raise RuntimeError("no worker node left to stop")
        node = self.cluster.worker_nodes.pop()
        self._pids |= descendant_pids(list(node.pids().values()))
        return node

    def _wait_dead(self, node: NodeProcesses, began: float) -> float:
        bound = death_detection_bound_s(self.health_check)
        wait_for_condition(lambda: node.node_id not in self.alive_node_ids(), timeout=bound * 3,
                           retry_interval_ms=10, message=f"node {node.node_id.hex()[:8]} declared dead")
        elapsed = time.monotonic() - began
        node.stop(force=True)
        return elapsed
