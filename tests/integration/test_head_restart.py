"""A head whose every process was killed at once comes back with `nbray start --head` on the same
--port and --temp-dir: same token and cluster, tables loaded, the other nodes reconnected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from nbray.node import head_state
from nbray.node.cluster_processes import SESSION_DIR_ENV
from nbray.protocol import gcs_pb2
from nbray.rpc import auth
from nbray.rpc.blocking import BlockingClient
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(240)

DRIVER_BEFORE = """
import nbray
nbray.init(address={address!r}, namespace="restart")

@nbray.remote(num_cpus=0)
class Keeper:
    def ping(self):
        return "pong"

    def node(self):
        return nbray.get_runtime_context().get_node_id()

keeper = Keeper.options(name="keeper", lifetime="detached", resources={{"node_b": 0.1}}).remote()
assert nbray.get(keeper.ping.remote(), timeout=60) == "pong"
print("NODE", nbray.get(keeper.node.remote(), timeout=60))
nbray.shutdown()
"""

DRIVER_AFTER = """
import time
import nbray
nbray.init(address={address!r}, namespace="restart")
keeper = nbray.get_actor("keeper")
assert nbray.get(keeper.ping.remote(), timeout=60) == "pong"
print("NODE", nbray.get(keeper.node.remote(), timeout=60))
deadline = time.monotonic() + 60
while {node_b!r} not in {{n["NodeID"] for n in nbray.nodes() if n["Alive"]}}:
    assert time.monotonic() < deadline, nbray.nodes()
    time.sleep(0.1)
print("ALIVE", {node_b!r})
nbray.shutdown()
"""


def run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "nbray.scripts.cli", *args])


def kv_put(address: str, token_path: str, value: bytes) -> None:
    with BlockingClient(address, auth.read_token_file(token_path)) as gcs:
        gcs.call("GcsService.KVPut", gcs_pb2.KVPutRequest(ns="app", key=b"model", value=value, overwrite=True))


def kv_get(address: str, token_path: str) -> bytes | None:
    with BlockingClient(address, auth.read_token_file(token_path)) as gcs:
        reply = gcs.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"model"))
    return bytes(reply.value) if reply.found else None


def members(session_dir: str) -> list[psutil.Process]:
    """Every process started for a session (they all carry it in their environment)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(SESSION_DIR_ENV) == session_dir:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


@pytest.fixture
def roots(tmp_path: os.PathLike) -> Iterator[tuple[str, str]]:
    head_root, node_root = os.path.join(tmp_path, "head"), os.path.join(tmp_path, "node")
    try:
        yield head_root, node_root
    finally:
        for root in (head_root, node_root):
            cli("stop", "--force", "--temp-dir", root)


def test_head_killed_with_its_machine_comes_back_with_the_cluster(roots: tuple[str, str]) -> None:
    head_root, node_root = roots
    port = free_port()
    head_args = ["start", "--head", "--port", str(port), "--temp-dir", head_root, "--node-ip-address",
                 "127.0.0.1", "--num-cpus", "1", "--dashboard-port", str(free_port()),
                 "--ray-client-server-port", str(free_port())]
    address = f"127.0.0.1:{port}"
    started = cli(*head_args)
    assert started.returncode == 0, started.stderr
    assert "resumed" not in started.stdout  # an unused port starts empty
    joined = cli("start", "--address", address, "--temp-dir", node_root, "--node-ip-address", "127.0.0.1",
                 "--num-cpus", "1", "--resources", json.dumps({"node_b": 1}))
    assert joined.returncode == 0, joined.stderr
    before = run(["-c", DRIVER_BEFORE.format(address=address)])
    assert before.returncode == 0, before.stderr[-3000:]
    node_b = before.stdout.split("NODE", 1)[1].split()[0]
    state = head_state.state_dir(head_root, port)
    token_path = os.path.join(state, "auth_token")
    kv_put(address, token_path, b"v1")
    with open(token_path) as f:
        token_before = f.read()

    # The head machine goes down: every process of the head at once, none of the other node's.
    with open(os.path.join(head_root, "nbray_current_cluster")) as f:
        head_session = f.read().split()[1]
    doomed = members(head_session)
    names = [" ".join(p.cmdline()[1:3]) for p in doomed]
    assert {"-m nbray.gcs.supervisor", "-m nbray.raylet", "-m nbray.dashboard", "-m nbray.client.server"} <= set(names)
    # the GCS is a fork of its supervisor (same command line, the supervisor as parent)
    supervisors = [p for p in doomed if " ".join(p.cmdline()[1:3]) == "-m nbray.gcs.supervisor"]
    assert any(p.ppid() in {s.pid for s in supervisors} for p in supervisors), names
    for proc in doomed:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(doomed, timeout=15)
    assert not members(head_session)
    node_session = next(os.path.join(node_root, n) for n in os.listdir(node_root) if n.startswith("session_2"))
    assert members(node_session)  # the other node lives on

    again = cli(*head_args)
    assert again.returncode == 0, again.stderr
    assert "resumed the cluster" in again.stdout
    with open(os.path.join(state, "auth_token")) as f:
        assert f.read() == token_before
    assert os.stat(os.path.join(state, "auth_token")).st_mode & 0o777 == 0o600

    after = run(["-c", DRIVER_AFTER.format(address=address, node_b=node_b)])
    assert after.returncode == 0, after.stderr[-3000:]
    assert f"NODE {node_b}" in after.stdout  # the actor still runs on the node that survived
    assert kv_get(address, token_path) == b"v1"
    assert f"ALIVE {node_b}" in after.stdout


def test_clean_stop_then_start_is_empty_and_fresh_discards(roots: tuple[str, str]) -> None:
    head_root, _ = roots
    port = free_port()
    head_args = ["start", "--head", "--port", str(port), "--temp-dir", head_root, "--node-ip-address",
                 "127.0.0.1", "--num-cpus", "1", "--no-include-dashboard", "--ray-client-server-port", "-1"]
    address = f"127.0.0.1:{port}"
    token_path = os.path.join(head_state.state_dir(head_root, port), "auth_token")

    assert cli(*head_args).returncode == 0
    assert kv_get(address, token_path) is None
    kv_put(address, token_path, b"v")
    with open(token_path) as f:
        first_token = f.read()
    stopped = cli("stop", "--temp-dir", head_root)
    assert stopped.returncode == 0, stopped.stderr

    again = cli(*head_args)  # the previous head stopped cleanly: a new, empty cluster
    assert again.returncode == 0, again.stderr
    assert "resumed" not in again.stdout
    assert kv_get(address, token_path) is None
    with open(token_path) as f:
        assert f.read() != first_token
    kv_put(address, token_path, b"v")

    # A head killed outright is resumed, unless started with --fresh.
    with open(os.path.join(head_root, "nbray_current_cluster")) as f:
        session_dir = f.read().split()[1]
    doomed = members(session_dir)
    assert doomed
    for proc in doomed:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(doomed, timeout=15)
    fresh = cli(*head_args, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert "resumed" not in fresh.stdout
    assert kv_get(address, token_path) is None
    stopped = cli("stop", "--temp-dir", head_root)
    assert stopped.returncode == 0, stopped.stderr
