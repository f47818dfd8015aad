"""Test helpers: clusters on one machine, leak checks, waiting on conditions.

    from nbray.testing import Cluster, wait_for_condition

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2, resources={"node1": 1})
    cluster.wait_for_nodes()
    nbray.init(address=cluster.address)
    ...
    nbray.shutdown()
    cluster.shutdown()          # asserts nothing is left behind

Every node is a real raylet process (its own ports, socket and store);
the head also runs the GCS.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.node import launcher
from nbray.node.launcher import NodeProcesses


class LeakError(AssertionError):
    """Processes or shared-memory files outlived the cluster."""


def wait_for_condition(condition: Callable[[], Any], timeout: float = 10.0, retry_interval_ms: int = 20,
                       message: str = "") -> Any:
    """Poll `condition` until it returns a truthy value; raise on timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # keep waiting; report the last error
            last_error = exc
        time.sleep(retry_interval_ms / 1000)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"condition not met within {timeout} s: {message or condition}{detail}")


def descendant_pids(root_pids: list[int]) -> set[int]:
    """Pids of processes whose ancestry includes one of `root_pids`, plus
    processes in the same session as them (workers are forked by the zygote)."""
    out: set[int] = set()
    sessions = set()
    for pid in root_pids:
        try:
            sessions.add(os.getsid(pid))
        except ProcessLookupError:
            pass
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, sid = fields[0], int(fields[3])
        if state == "Z":
            continue
        if sid in sessions or pid in root_pids:
            out.add(pid)
    return out


def processes_of_clusters_under(root: str) -> set[int]:
    """Live processes of every cluster whose session directory is under `root`:
    those with ``--session-dir`` there, their sessions and their children."""
    from nbray.node import cluster_processes

    prefix = os.path.abspath(root) + os.sep
    table = cluster_processes.scan_processes()
    dirs = {d for p in table.values() if (d := cluster_processes.session_dir_argument(p.argv)) and d.startswith(prefix)}
    return cluster_processes.cluster_members(table, session_dirs=dirs, uid=os.getuid(), exclude=(os.getpid(),))


def shm_files() -> list[str]:
    try:
        return sorted(f for f in os.listdir("/dev/shm") if "nbray" in f)
    except OSError:
        return []


def assert_no_leaks(pids: set[int], timeout: float = 10.0) -> None:
    """Wait for `pids` to exit; raise LeakError if any survive or shm files exist."""
    def gone() -> bool:
        return not any(launcher.process_running(p) for p in pids)

    try:
        wait_for_condition(gone, timeout=timeout)
    except TimeoutError:
        alive = [p for p in pids if launcher.process_running(p)]
        for p in alive:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise LeakError(f"processes still running after shutdown: {alive}") from None
    leftovers = shm_files()
    if leftovers:
        raise LeakError(f"files left in /dev/shm: {leftovers}")


class Cluster:
    """Several nodes on this machine (Ray's ``cluster_utils.Cluster``)."""

    def __init__(self, initialize_head: bool = False, head_node_args: dict[str, Any] | None = None,
                 connect: bool = False, system_config: dict[str, Any] | None = None) -> None:
        self.config = Config()
        self.config.apply_env()
        if system_config:
            self.config.apply(system_config)
        self.head: NodeProcesses | None = None
        self.worker_nodes: list[NodeProcesses] = []
        self._all_pids: set[int] = set()
        self._dead_nodes: list[NodeProcesses] = []
        self._connected = False
        if initialize_head:
            try:
                self.add_node(**(head_node_args or {}))
                if connect:
                    self.connect()
            except BaseException:
                # Nothing may outlive a cluster that failed to come up.
                self.shutdown(check_leaks=False)
                raise

    @property
    def address(self) -> str:
        assert self.head is not None, "the cluster has no head node"
        return self.head.gcs_address

    @property
    def gcs_address(self) -> str:
        return self.address

    @property
    def client_address(self) -> str:
        """The head's ``nbray://`` address (start it with ``ray_client_server_port``)."""
        assert self.head is not None, "the cluster has no head node"
        return "nbray://" + self.head.extra["client_server_address"]

    @property
    def session_dir(self) -> str:
        assert self.head is not None
        return self.head.session_dir

    def add_node(self, wait: bool = True, **node_args: Any) -> NodeProcesses:
        """Start a node: the head first (GCS + raylet), then worker nodes.

        Raises TypeError for an unknown argument (before starting anything),
        RuntimeError or ConnectionError when the node fails to start, and
        TimeoutError when it does not join in time; in every case what this
        call started is stopped first.
        """
        args = dict(node_args)
        system_config = args.pop("_system_config", None)
        config = self.config
        if system_config:
            config = Config()
            config.apply(self.config.overrides())
            config.apply(system_config)
        common = {k: args.pop(k) for k in ("num_cpus", "num_gpus", "resources", "object_store_memory",
                                            "memory", "labels") if k in args}
        node_ip = args.pop("node_ip_address", None)
        is_head = self.head is None
        if is_head:
            head_only = {"include_dashboard": bool(args.pop("include_dashboard", False)),
                         "dashboard_port": int(args.pop("dashboard_port", 0)),
                         "client_server_port": args.pop("ray_client_server_port", None)}
        if args:
            raise TypeError(f"unknown node arguments: {sorted(args)}")
        if is_head:
            node = launcher.start_head(config=config, node_ip=node_ip, parent_pid=os.getpid(), **head_only,
                                       **common)
            self.head = node
        else:
            assert self.head is not None
            node = launcher.start_worker_node(config=config, gcs_address=self.head.gcs_address,
                                              token=self.head.token, node_ip=node_ip,
                                              session_dir=self.head.session_dir, parent_pid=os.getpid(),
                                              **common)
            self.worker_nodes.append(node)
        self._all_pids |= set(node.pids().values())
        if wait:
            try:
                self.wait_for_nodes()
            except BaseException:
                self._all_pids |= descendant_pids(list(node.pids().values()))
                node.stop(force=True)
                if node is self.head:
                    self.head = None
                else:
                    self.worker_nodes.remove(node)
                raise
        return node

    def connect(self, namespace: str | None = None) -> Any:
        import nbray

        ctx = nbray.init(address=self.address, namespace=namespace)
        self._connected = True
        return ctx

    def list_all_nodes(self) -> list[NodeProcesses]:
        return ([self.head] if self.head is not None else []) + list(self.worker_nodes)

    def remove_node(self, node: NodeProcesses, allow_graceful: bool = True) -> None:
        """Stop a node: gracefully (it deregisters) or with SIGKILL."""
        self._all_pids |= descendant_pids(list(node.pids().values()))
        node.stop(force=not allow_graceful)
        if node is self.head:
            self.head = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def kill_raylet(self, node: NodeProcesses) -> None:
        """SIGKILL the node's raylet (its workers follow it)."""
        self._all_pids |= descendant_pids(list(node.pids().values()))
        proc = node.processes["raylet"]
        proc.kill()
        proc.wait(10)
        if node in self.worker_nodes:
            self.worker_nodes.remove(node)
            self._dead_nodes.append(node)

    def wait_for_nodes(self, timeout: float = 30.0) -> None:
        """Wait until the GCS lists every started node as alive."""
        from nbray.protocol import gcs_pb2
        from nbray.rpc.blocking import BlockingClient

        assert self.head is not None
        expected = {n.node_id for n in self.list_all_nodes()}

        def all_alive() -> bool:
            with BlockingClient(self.head.gcs_address, self.head.token) as client:  # type: ignore[union-attr]
                nodes = client.call("GcsService.GetAllNodeInfo").nodes
            alive = {n.node_id for n in nodes if n.state == gcs_pb2.NodeInfo.ALIVE}
            return expected <= alive

        wait_for_condition(all_alive, timeout=timeout, message="all nodes registered")

    def shutdown(self, check_leaks: bool = True) -> None:
        """Stop every node; assert no processes or /dev/shm files remain."""
        if self._connected:
            import nbray

            nbray.shutdown()
            self._connected = False
        nodes = self.list_all_nodes()
        for node in nodes:
            self._all_pids |= descendant_pids(list(node.pids().values()))
        for node in self.worker_nodes:
            node.stop()
        if self.head is not None:
            self.head.stop()
        self.worker_nodes = []
        self.head = None
        if check_leaks:
            assert_no_leaks(self._all_pids)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def shutdown_all(clusters: list[Cluster]) -> None:
    """Shut every cluster down, even if one of them fails to (the first error is raised)."""
    errors = []
    for cluster in clusters:
        try:
            cluster.shutdown()
        except Exception as exc:  # keep going; raised below
            errors.append(exc)
    if errors:
        raise errors[0]


__all__ = ["Cluster", "LeakError", "assert_no_leaks", "descendant_pids", "processes_of_clusters_under", "shm_files",
           "shutdown_all", "wait_for_condition"]
