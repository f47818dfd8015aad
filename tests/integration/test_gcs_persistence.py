"""A GCS killed with SIGKILL comes back from its storage with every table it kept."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from nbray.common.config import Config
from nbray.gcs.storage import META_CLUSTER_ID, Table
from nbray.node.launcher import read_ready_line
from nbray.protocol import gcs_pb2
from nbray.rpc import auth
from nbray.rpc.blocking import BlockingClient
from nbray.testing import Cluster

pytestmark = pytest.mark.timeout(120)

DRIVER = """
import nbray
from nbray.util import placement_group
nbray.init(address={address!r}, namespace="persist")

@nbray.remote(num_cpus=0)
class Keeper:
    def ping(self):
        return "pong"

keeper = Keeper.options(name="keeper", lifetime="detached").remote()
assert nbray.get(keeper.ping.remote(), timeout=60) == "pong"
pg = placement_group([{{"CPU": 1}}], name="pg1", lifetime="detached")
assert pg.wait(60)
print("JOB", nbray.get_runtime_context().get_job_id())
nbray.shutdown()
"""


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def stored_cluster_id(path: str) -> bytes:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM records WHERE tbl = ? AND key = ?",
                           (Table.META.value, META_CLUSTER_ID)).fetchone()
    finally:
        conn.close()
    return bytes(row[0])


def relaunch_gcs(address: str, session_dir: str, config: Config, token: bytes) -> subprocess.Popen[bytes]:
    """Start the GCS module again on the same port, session directory and storage."""
    host, port = address.rsplit(":", 1)
    r, w = os.pipe()
    env = dict(os.environ, NBRAY_AUTH_TOKEN=token.hex())
    log = open(os.path.join(session_dir, "logs", "gcs-restarted.err"), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbray.gcs", "--host", host, "--port", port, "--session-dir", session_dir,
             "--config-json", config.to_json(), "--ready-fd", str(w)],
            env=env, pass_fds=(w,), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    finally:
        os.close(w)
        log.close()
    info = read_ready_line(r, proc, timeout_s=30)
    if info is None or "error" in info:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the GCS did not start again: {info}")
    return proc


@pytest.fixture
def persistent_cluster(tmp_path: os.PathLike) -> Iterator[tuple[Cluster, str]]:
    path = os.path.join(tmp_path, "gcs.sqlite")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2},
                      system_config={"gcs_storage": f"sqlite://{path}"})
    try:
        yield cluster, path
    finally:
        cluster.shutdown()


def test_tables_survive_gcs_sigkill_and_direct_restart(persistent_cluster: tuple[Cluster, str]) -> None:
    cluster, path = persistent_cluster
    head = cluster.head
    assert head is not None
    address, token = head.gcs_address, head.token
    with BlockingClient(address, token) as gcs:
        gcs.call("GcsService.KVPut", gcs_pb2.KVPutRequest(ns="app", key=b"model", value=b"v1", overwrite=True))
        gcs.call("GcsService.KVPut", gcs_pb2.KVPutRequest(ns="app", key=b"gone", value=b"x", overwrite=True))
        gcs.call("GcsService.KVDel", gcs_pb2.KVDelRequest(ns="app", key=b"gone"))
    out = subprocess.run([sys.executable, "-c", DRIVER.format(address=address)], capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    job_hex = out.stdout.split("JOB", 1)[1].strip()
    cluster_id = stored_cluster_id(path)

    gcs_proc = head.processes["gcs"]
    gcs_proc.send_signal(signal.SIGKILL)
    gcs_proc.wait(timeout=10)

    restarted = relaunch_gcs(address, head.session_dir, cluster.config, token)
    try:
        with BlockingClient(address, token) as gcs:
            kv = gcs.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"model"))
            assert kv.found and kv.value == b"v1"
            assert not gcs.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"gone")).found

            actor = gcs.call("GcsService.GetNamedActor", gcs_pb2.GetNamedActorRequest(name="keeper", namespace="persist")).actor
            assert actor.is_detached and actor.class_name.endswith("Keeper")
            assert actor.state == gcs_pb2.ActorInfo.ALIVE and actor.address.worker_id  # the record as stored
            names = gcs.call("GcsService.ListNamedActors", gcs_pb2.ListNamedActorsRequest(all_namespaces=True))
            assert ("persist", "keeper") in set(zip(names.namespaces, names.names, strict=True))

            pgs = gcs.call("GcsService.GetAllPlacementGroup").placement_groups
            pg = next(p for p in pgs if p.name == "pg1")
            assert pg.state == gcs_pb2.PlacementGroupInfo.CREATED and pg.is_detached
            named = gcs.call("GcsService.GetNamedPlacementGroup",
                             gcs_pb2.GetNamedPlacementGroupRequest(name="pg1", namespace="persist"))
            assert named.found

            jobs = gcs.call("GcsService.GetAllJobInfo").jobs
            assert job_hex in {j.job_id.hex() for j in jobs}
            assert len(jobs) >= 1

            nodes = gcs.call("GcsService.GetAllNodeInfo").nodes
            assert head.node_id in {n.node_id for n in nodes}

            fake = gcs_pb2.NodeInfo(node_id=os.urandom(28), node_ip="127.0.0.1", raylet_port=1)
            reply = gcs.call("GcsService.RegisterNode", gcs_pb2.RegisterNodeRequest(node=fake))
            assert reply.cluster_id == cluster_id
            gcs.call("GcsService.UnregisterNode", gcs_pb2.UnregisterNodeRequest(node_id=fake.node_id, reason="test"))

            # New jobs continue the numbering rather than reuse an id.
            added = gcs.call("GcsService.AddJob", gcs_pb2.AddJobRequest(job=gcs_pb2.JobInfo()))
            assert int.from_bytes(added.job_id, "big") > max(int.from_bytes(j.job_id, "big") for j in jobs)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=15)


def test_cli_head_restarts_on_the_same_storage(tmp_path: os.PathLike) -> None:
    root = os.path.join(tmp_path, "root")
    storage = os.path.join(tmp_path, "state", "gcs.sqlite")
    os.makedirs(os.path.dirname(storage))
    token = auth.generate_token()
    env = dict(os.environ, NBRAY_TMPDIR=root, NBRAY_AUTH_TOKEN=auth.encode_token(token))
    start = ("start", "--head", "--port", "0", "--num-cpus", "1", "--temp-dir", root, "--storage", storage,
             "--no-include-dashboard", "--ray-client-server-port", "-1")
    try:
        first = run_cli(*start, env=env)
        assert first.returncode == 0, first.stderr
        info = _cluster_info(root)
        with BlockingClient(info["gcs_address"], token) as gcs:
            gcs.call("GcsService.KVPut", gcs_pb2.KVPutRequest(ns="app", key=b"k", value=b"kept", overwrite=True))
        os.kill(info["pids"]["gcs"], signal.SIGKILL)
        stopped = run_cli("stop", "--temp-dir", root, env=env)
        assert stopped.returncode == 0, stopped.stderr

        second = run_cli(*start, env=env)
        assert second.returncode == 0, second.stderr
        info = _cluster_info(root)
        with BlockingClient(info["gcs_address"], token) as gcs:
            assert gcs.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="app", key=b"k")).value == b"kept"

        other = dict(env, NBRAY_AUTH_TOKEN=auth.encode_token(auth.generate_token()))
        refused = run_cli(*start, env=other)
        assert refused.returncode != 0
        assert "in use by another GCS" in refused.stderr and storage.lstrip("/") in refused.stderr
    finally:
        run_cli("stop", "--force", "--temp-dir", root, env=env)


def test_cli_refuses_unusable_storage_at_once(tmp_path: os.PathLike) -> None:
    root = os.path.join(tmp_path, "root")
    env = dict(os.environ, NBRAY_TMPDIR=root)
    blocker = os.path.join(tmp_path, "a-file")
    open(blocker, "w").close()
    bad = os.path.join(blocker, "gcs.sqlite")
    started = time.monotonic()
    out = run_cli("start", "--head", "--port", "0", "--temp-dir", root, "--storage", bad,
                  "--no-include-dashboard", "--ray-client-server-port", "-1", env=env, timeout=30)
    try:
        assert out.returncode != 0
        assert blocker in out.stderr, out.stderr
        assert time.monotonic() - started < 15  # no process was started and waited on
        sessions = [os.path.join(root, d) for d in os.listdir(root)] if os.path.isdir(root) else []
        assert not any(os.path.exists(os.path.join(s, "cluster.json")) for s in sessions)
    finally:
        run_cli("stop", "--force", "--temp-dir", root, env=env)


def _cluster_info(root: str) -> dict:
    sessions = [os.path.join(root, d) for d in os.listdir(root) if d.startswith("session")]
    newest = max(sessions, key=os.path.getmtime)
    with open(os.path.join(newest, "cluster.json")) as f:
        return json.load(f)
