"""The GCS on Redis storage: killed with SIGKILL, its supervisor starts it again from Redis and
the cluster carries on; an unreachable Redis fails `nbray start --head` at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
import redis

import nbray
from nbray.gcs import storage as st
from nbray.gcs.storage_redis import table_key
from nbray.node.cluster_processes import SESSION_DIR_ENV
from nbray.testing import Cluster
from nbray.testing.chaos import gcs_child
from tests.integration.test_gcs_restart import Keeper, check_recovered, prepare, start_cluster
from tests.redis_server import free_port, redis_server

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def redis_uri(tmp_path: os.PathLike) -> Iterator[str]:
    work = os.path.join(tmp_path, "redis")
    os.mkdir(work)
    with redis_server(work) as uri:
        yield uri
    assert os.listdir(work) == []  # no snapshot or append-only file left behind


@pytest.fixture
def redis_cluster(redis_uri: str, tmp_path: os.PathLike) -> Iterator[tuple[Cluster, object, str]]:
    uri = f"{redis_uri}?namespace=restart-test"
    cluster, worker = start_cluster(tmp_path, gcs_storage=uri)
    try:
        yield cluster, worker, uri
    finally:
        cluster.shutdown()


def test_supervisor_restarts_a_killed_gcs_from_redis(redis_cluster: tuple[Cluster, object, str],
                                                    tmp_path: os.PathLike) -> None:
    cluster, worker, uri = redis_cluster
    assert cluster.head is not None
    keeper, running, release = prepare(cluster, tmp_path)
    address = st.parse_redis_uri(uri)
    client = redis.Redis(host=address.host, port=address.port, db=address.db)
    try:
        stored_actors = client.hgetall(table_key("restart-test", st.Table.ACTOR))
        assert len(stored_actors) >= 1 and client.hlen(table_key("restart-test", st.Table.KV)) >= 1
        assert client.hlen(table_key("restart-test", st.Table.PLACEMENT_GROUP)) == 1
        cluster_id = client.hget(table_key("restart-test", st.Table.META), st.META_CLUSTER_ID)
    finally:
        client.close()
    # Nothing was written to a SQLite file: the tables are in Redis only.
    assert not os.path.exists(os.path.join(cluster.head.session_dir, st.DEFAULT_SQLITE_NAME))

    first = gcs_child(cluster)
    os.kill(first, signal.SIGKILL)
    created = Keeper.remote()  # waits for the supervisor's new GCS
    assert nbray.get(created.ping.remote(), timeout=60) == 1
    assert gcs_child(cluster) != first
    check_recovered(cluster, worker, keeper, running, release)
    client = redis.Redis(host=address.host, port=address.port, db=address.db)
    try:
        assert client.hget(table_key("restart-test", st.Table.META), st.META_CLUSTER_ID) == cluster_id
    finally:
        client.close()


def test_unreachable_redis_fails_start_at_once_naming_it(tmp_path: os.PathLike) -> None:
    root = os.path.join(tmp_path, "root")
    redis_port = free_port()  # nothing listens there
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "nbray.scripts.cli", "start", "--head", "--port", str(free_port()), "--temp-dir",
         root, "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--no-include-dashboard",
         "--ray-client-server-port", "-1", "--storage", f"redis://127.0.0.1:{redis_port}/0"],
        capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stdout
    assert f"redis://127.0.0.1:{redis_port}/0 cannot be reached" in out.stderr
    assert elapsed < 15  # the interpreter's start-up, not a wait for the storage
    sessions = [os.path.join(root, n) for n in os.listdir(root) if n.startswith("session_")]
    started_any = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(SESSION_DIR_ENV) in sessions:
                started_any.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    assert started_any == []
