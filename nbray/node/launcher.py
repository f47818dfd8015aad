"""Starting and stopping the processes of a node.

``start_head`` starts a GCS (under its supervisor, nbray/gcs/supervisor.py,
which restarts it if it dies) and a raylet (and, for the CLI, the client
server and dashboard); ``start_worker_node`` starts a raylet joining an
existing head. The GCS's listening socket is bound here and handed over,
so the raylet can connect before the GCS has finished importing: the two
start in parallel.

Embedded clusters (``nbray.init()``) pass ``parent_pid``: their processes
exit when the driver does, even if it is killed. CLI clusters run as
daemons in their own session. Every head, and every node with a session
directory of its own, is recorded in the user's registry until stopped.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nbray.common.config import Config, get_config
from nbray.node import cluster_processes, detect, registry, session
from nbray.node.cluster_processes import process_running as process_running  # re-exported
from nbray.rpc import auth, tls
from nbray.rpc.addresses import bind_listener

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


@dataclass
class NodeProcesses:
    """What was started for one node, and how to reach it."""

    session_dir: str
    gcs_address: str
    node_id: bytes
    node_ip: str
    raylet_socket: str
    raylet_port: int
    token: bytes
    resources: dict[str, float]
    object_store_bytes: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    is_head: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    registry_entry: str = ""  # this node's entry in the user's cluster registry, if it has one

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def stop(self, timeout_s: float | None = None, force: bool = False) -> None:
        """Stop this node's processes and everything they started; return once none runs.

        Services stop in order (head services, then the raylet, then the
        GCS), each with SIGTERM; whatever runs after `timeout_s` (default:
        the config's stop grace period), or everything with `force`, gets
        SIGKILL. Raises RuntimeError naming the pids that outlive even that.
        """
        config = get_config()
        grace_s = timeout_s if timeout_s is not None else config.stop_grace_period_ms / 1000
        order = ["client_server", "dashboard", "raylet", "gcs"]
        names = order + [n for n in self.processes if n not in order]
        stages = [[self.processes[n].pid for n in group if n in self.processes]
                  for group in (["client_server", "dashboard"], ["raylet"], ["gcs"], names[len(order):])]
        # Every service was started as the leader of its own session (_spawn):
        # its zygote, workers and their children are found by that session.
        # The pids cannot be reused before they are reaped below.
        leaders = [p.pid for p in self.processes.values()]
        me, uid = os.getpid(), os.getuid()
        # Membership by session and parent alone: no need to read command lines and environments.
        find = cluster_processes.MemberTracker(
            lambda table: cluster_processes.cluster_members(table, leader_pids=leaders, uid=uid, exclude=(me,)),
            scan=lambda: cluster_processes.scan_processes(markers=False))
        outcome = cluster_processes.stop_members(find, stages, force=force, grace_s=grace_s,
                                                 kill_wait_s=config.stop_kill_wait_ms / 1000)
        for proc in self.processes.values():
            try:
                proc.wait(config.stop_kill_wait_ms / 1000)
            except subprocess.TimeoutExpired:
                outcome.survivors.add(proc.pid)
        if self.registry_entry:
            registry.unregister(self.registry_entry)
            self.registry_entry = ""
        if not outcome.survivors:
            session.remove_sockets(self.session_dir)
        if outcome.survivors:
            raise RuntimeError(f"processes of the node in {self.session_dir} still run after SIGKILL: "
                               f"{sorted(outcome.survivors)}")


def resolve_resources(num_cpus: float | None, num_gpus: float | None, resources: dict[str, float] | None,
                      object_store_memory: int | None, memory: int | None,
                      config: Config, labels: dict[str, str] | None = None
                      ) -> tuple[dict[str, float], list[str], int]:
    """Totals for a new node: (resources, GPU ids, object store bytes)."""
    out: dict[str, float] = {}
    for name, value in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus, not resources={{'{name}': ...}}")
        out[name] = float(value)
    out["CPU"] = float(num_cpus if num_cpus is not None else detect.num_cpus())
    if num_gpus is None:
        gpu_ids = detect.gpu_ids()
    else:
        if num_gpus < 0 or num_gpus != int(num_gpus):
            raise ValueError(f"num_gpus of a node must be a whole number >= 0, got {num_gpus}")
        detected = detect.gpu_ids()
        gpu_ids = detected[: int(num_gpus)] if len(detected) >= num_gpus else [str(i) for i in range(int(num_gpus))]
    if gpu_ids:
        out["GPU"] = float(len(gpu_ids))
    gpu_type = detect.gpu_accelerator_type() if gpu_ids else ""
    for name, amount in detect.accelerator_resources(gpu_type, labels).items():
        out.setdefault(name, amount)
    store = int(object_store_memory) if object_store_memory else detect.default_object_store_bytes(
        config.object_store_memory_fraction)
    if store < config.min_object_store_bytes:
        raise ValueError(f"object_store_memory must be at least {config.min_object_store_bytes} bytes, "
                         f"got {store}")
    out["memory"] = float(memory if memory is not None else detect.default_memory_resource_bytes(store))
    out["object_store_memory"] = float(store)
    return out, gpu_ids, store


def _spawn(args: list[str], env: dict[str, str], log_base: str,
           pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    # Always a new session: a Ctrl-C in the driver's terminal must not reach
    # the cluster; embedded clusters follow their driver through --parent-pid.
    # The child keeps its own copies of the log files' descriptors.
    # Everything the service starts inherits the session directory in its
    # environment, so a stop finds it even once nothing else links it to the cluster.
    session_dir = cluster_processes.session_dir_argument(args)
    if session_dir:
        env = dict(env, **{cluster_processes.SESSION_DIR_ENV: session_dir})
    with open(log_base + ".out", "ab") as out, open(log_base + ".err", "ab") as err:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            pass_fds=pass_fds, start_new_session=True, close_fds=True,
        )


class _Pollable(Protocol):
    def poll(self) -> int | None: ...


def read_ready_line(fd: int, proc: _Pollable, timeout_s: float) -> dict[str, Any] | None:
    """The JSON line a starting service writes to its ready pipe (and closes
    `fd`); None when the process exits or stays silent for `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(fd)
    if b"\n" not in buf:
        return None
    try:
        info: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return {"error": f"malformed ready line {buf[:200]!r}"}
    return info


def _read_ready(fd: int, proc: subprocess.Popen[bytes], what: str, log_base: str,
                timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    info = read_ready_line(fd, proc, timeout_s)
    if info is None:
        if proc.poll() is None:
            raise RuntimeError(f"the {what} did not start within {timeout_s:.0f} s; see {log_base}.err")
        tail = _tail(log_base + ".err")
        raise RuntimeError(f"the {what} exited during start-up (status {proc.poll()}):\n{tail}")
    if "error" in info:
        raise RuntimeError(f"the {what} failed to start: {info['error']}")
    return info


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def start_head(
    *,
    config: Config,
    port: int = 0,
    node_ip: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    memory: int | None = None,
    temp_dir: str | None = None,
    parent_pid: int | None = None,
    token: bytes | None = None,
    labels: dict[str, str] | None = None,
    include_dashboard: bool = False,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int = 8265,
    client_server_port: int | None = None,
    client_server_host: str = "127.0.0.1",
    fresh: bool = False,
    while_starting: Callable[[], None] | None = None,
) -> NodeProcesses:
    """Start a head node; returns its processes.

    ``while_starting`` runs once the GCS and the raylet are starting, before
    waiting for them: a driver prepares its own side meanwhile. If it
    raises, the node is stopped and the error propagates.

    A CLI head (no ``parent_pid``) on a fixed ``port`` takes over the token
    and tables the previous head on that port and ``temp_dir`` left if it
    did not stop cleanly (head_state.py); ``fresh`` starts it empty anyway.
    Raises ValueError for bad arguments, GcsStorageError for a storage the
    GCS could not use, ConnectionError when the port is taken.
    """
    node_ip = node_ip or detect.node_ip_address()
    tls.check_cluster_settings()  # a bad TLS setting fails here, before any process starts
    totals, gpu_ids, store_bytes = resolve_resources(num_cpus, num_gpus, resources, object_store_memory,
                                                     memory, config, labels)
    token = token or auth.token_from_environment()
    resumed = False
    if port and not parent_pid:
        from nbray.node import head_state

        state = head_state.prepare(temp_root=temp_dir, port=port, storage_uri=config.gcs_storage, token=token,
                                   fresh=fresh)
        config = config.replace(gcs_storage=state.storage_uri)
        token, resumed = state.token, state.resumed
    elif fresh:
        raise ValueError("--fresh applies to a head started with a fixed --port")
    session_dir = session.new_session_dir(temp_dir)
    token = token or auth.generate_token()
    auth.write_token_file(os.path.join(session_dir, auth.TOKEN_FILE_NAME), token)
    if storage_needs_checking(config.gcs_storage):
        # A storage the GCS could not use fails here, naming it, before any process starts.
        from nbray.gcs.storage_open import verify_storage

        verify_storage(config.gcs_storage, session_dir, token)
    try:
        gcs_sock = bind_listener(f"{node_ip}:{port}")
    except OSError as exc:
        raise ConnectionError(f"cannot listen on {node_ip}:{port} for the GCS: {exc}") from exc
    gcs_address = f"{node_ip}:{gcs_sock.getsockname()[1]}"
    env = dict(os.environ)
    env["NBRAY_AUTH_TOKEN"] = token.hex()
    logs = os.path.join(session_dir, "logs")
    config_json = config.to_json()
    gcs_r, gcs_w = os.pipe()
    # The supervisor runs the GCS and starts it again if it dies (on the same socket).
    gcs_args = ["-m", "nbray.gcs.supervisor", "--listen-fd", str(gcs_sock.fileno()), "--session-dir",
                session_dir, "--config-json", config_json, "--ready-fd", str(gcs_w)]
    if parent_pid:
        gcs_args += ["--parent-pid", str(parent_pid)]
    try:
        gcs = _spawn(gcs_args, env, os.path.join(logs, "gcs"), (gcs_sock.fileno(), gcs_w))
    except BaseException:
        os.close(gcs_r)
        raise
    finally:
        os.close(gcs_w)
        gcs_sock.close()
    # From here on, a failure stops everything started so far before it propagates.
    node: NodeProcesses | None = None
    try:
        node = _start_raylet(
            config=config, gcs_address=gcs_address, node_ip=node_ip, session_dir=session_dir, token=token,
            totals=totals, gpu_ids=gpu_ids, store_bytes=store_bytes, is_head=True, parent_pid=parent_pid,
            env=env, labels=labels, raylet_port=0, while_starting=while_starting,
        )
        node.processes["gcs"] = gcs
        ready_fd, gcs_r = gcs_r, -1
        _read_ready(ready_fd, gcs, "GCS", os.path.join(logs, "gcs"))
        node.is_head = True
        node.extra["resumed"] = resumed
        if include_dashboard and _module_exists("nbray.dashboard.__main__"):
            info = _start_service("dashboard", ["-m", "nbray.dashboard", "--host", dashboard_host,
                                                "--port", str(dashboard_port)],
                                  node, env, parent_pid, config)
            node.extra["dashboard_url"] = info.get("url", "")
        if client_server_port is not None and _module_exists("nbray.client.server"):
            info = _start_service("client_server", ["-m", "nbray.client.server", "--host", client_server_host,
                                                    "--port", str(client_server_port)],
                                  node, env, parent_pid, config)
            node.extra["client_server_address"] = info.get("address", "")
        session.write_cluster_info(session_dir, {
            "gcs_address": gcs_address,
            "head_node_id": node.node_id.hex(),
            "node_ip": node_ip,
            "session_dir": session_dir,
            "pids": node.pids(),
            "raylet_socket": node.raylet_socket,
            "dashboard_url": node.extra.get("dashboard_url", ""),
            "client_server_address": node.extra.get("client_server_address", ""),
        })
        node.registry_entry = registry.register(
            gcs_address=gcs_address, session_dir=session_dir, pids=node.pids(),
            role=registry.ROLE_LOCAL if parent_pid else registry.ROLE_HEAD)
    except BaseException:
        if gcs_r >= 0:
            os.close(gcs_r)
        if node is not None:
            node.stop(force=True)
        else:
            _stop_process(gcs)
        raise
    return node


def storage_needs_checking(uri: str) -> bool:
    """Whether a head's storage may hold something to check before its GCS starts.

    The default (``""``: SQLite in the session directory) is created in the
    directory just made for this session, and ``memory://`` keeps nothing:
    neither can hold another cluster's tables or a newer schema.
    """
    text = uri.strip()
    return bool(text) and text != "memory://"


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def _start_service(name: str, args: list[str], node: NodeProcesses, env: dict[str, str],
                   parent_pid: int | None, config: Config) -> dict[str, Any]:
    """Start a head-node service process that reports readiness as JSON."""
    ready_r, ready_w = os.pipe()
    full = args + ["--gcs-address", node.gcs_address, "--session-dir", node.session_dir,
                   "--config-json", config.to_json(), "--ready-fd", str(ready_w)]
    if parent_pid:
        full += ["--parent-pid", str(parent_pid)]
    base = os.path.join(node.session_dir, "logs", name)
    proc = _spawn(full, env, base, (ready_w,))
    os.close(ready_w)
    node.processes[name] = proc
    return _read_ready(ready_r, proc, name, base)


def start_worker_node(
    *,
    config: Config,
    gcs_address: str,
    token: bytes,
    node_ip: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    memory: int | None = None,
    temp_dir: str | None = None,
    session_dir: str | None = None,
    parent_pid: int | None = None,
    labels: dict[str, str] | None = None,
    raylet_port: int = 0,
) -> NodeProcesses:
    node_ip = node_ip or detect.node_ip_address()
    tls.check_cluster_settings()
    tls.check_bind(node_ip)
    totals, gpu_ids, store_bytes = resolve_resources(num_cpus, num_gpus, resources, object_store_memory,
                                                     memory, config, labels)
    own_session = session_dir is None
    session_dir = session_dir or session.new_session_dir(temp_dir)
    token_path = os.path.join(session_dir, auth.TOKEN_FILE_NAME)
    if not os.path.exists(token_path):
        auth.write_token_file(token_path, token)
    env = dict(os.environ)
    env["NBRAY_AUTH_TOKEN"] = token.hex()
    node = _start_raylet(
        config=config, gcs_address=gcs_address, node_ip=node_ip, session_dir=session_dir, token=token,
        totals=totals, gpu_ids=gpu_ids, store_bytes=store_bytes, is_head=False, parent_pid=parent_pid,
        env=env, labels=labels, raylet_port=raylet_port,
    )
    if own_session:  # a node sharing its head's session is found through the head's entry
        try:
            node.registry_entry = registry.register(gcs_address=gcs_address, session_dir=session_dir,
                                                    pids=node.pids(), role=registry.ROLE_NODE)
        except BaseException:
            node.stop(force=True)
            raise
    return node


def _start_raylet(*, config: Config, gcs_address: str, node_ip: str, session_dir: str, token: bytes,
                  totals: dict[str, float], gpu_ids: list[str], store_bytes: int, is_head: bool,
                  parent_pid: int | None, env: dict[str, str], labels: dict[str, str] | None,
                  raylet_port: int, while_starting: Callable[[], None] | None = None) -> NodeProcesses:
    node_id = os.urandom(28)
    logs = os.path.join(session_dir, "logs")
    ready_r, ready_w = os.pipe()
    args = ["-m", "nbray.raylet", "--node-id", node_id.hex(), "--gcs-address", gcs_address,
            "--node-ip", node_ip, "--port", str(raylet_port), "--session-dir", session_dir,
            "--resources-json", json.dumps(totals), "--gpu-ids", ",".join(gpu_ids),
            "--object-store-bytes", str(store_bytes), "--config-json", config.to_json(),
            "--ready-fd", str(ready_w), "--labels-json", json.dumps(labels or {})]
    if is_head:
        args.append("--head")
    if parent_pid:
        args += ["--parent-pid", str(parent_pid)]
    base = os.path.join(logs, f"raylet-{node_id.hex()[:8]}")
    proc = _spawn(args, env, base, (ready_w,))
    os.close(ready_w)
    node = NodeProcesses(session_dir=session_dir, gcs_address=gcs_address, node_id=node_id, node_ip=node_ip,
                         raylet_socket="", raylet_port=0, token=token, resources=totals,
                         object_store_bytes=store_bytes, processes={"raylet": proc})
    try:
        if while_starting is not None:
            while_starting()
        info = _read_ready(ready_r, proc, "raylet", base)
    except BaseException:
        node.stop(force=True)
        raise
    node.raylet_socket = info["raylet_socket"]
    node.raylet_port = int(info["raylet_port"])
    _write_node_file(session_dir, node)
    return node


def _write_node_file(session_dir: str, node: NodeProcesses) -> None:
    path = os.path.join(session_dir, f"node-{node.node_id.hex()[:8]}.json")
    with open(path, "w") as f:
        json.dump({"node_id": node.node_id.hex(), "node_ip": node.node_ip, "pids": node.pids(),
                   "raylet_socket": node.raylet_socket, "raylet_port": node.raylet_port}, f)


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def local_raylet_for(nodes: list[Any], node_ip: str | None = None) -> Any | None:
    """The alive node of this machine a driver should attach to."""
    hostname = socket.gethostname()
    candidates = [n for n in nodes if n.state == 0 and n.raylet_socket and os.path.exists(n.raylet_socket)]
    if node_ip:
        matching = [n for n in candidates if n.node_ip == node_ip]
        candidates = matching or candidates
    for n in candidates:
        if n.hostname == hostname:
            return n
    return candidates[0] if candidates else None
