"""The dashboard process: started by `nbray start --head`, gone with its parent or its GCS."""

from __future__ import annotations

import glob
import json
import os
import re
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from nbray.node import launcher
from nbray.testing import Cluster, wait_for_condition
from tests.dashboard.conftest import DashboardClient

pytestmark = pytest.mark.timeout(120)


def spawn_dashboard(gcs_address: str, token: bytes | None, *extra: str,
                    env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `python -m nbray.dashboard` the way the launcher does; returns it and its ready line."""
    ready_r, ready_w = os.pipe()
    child_env = {k: v for k, v in os.environ.items() if k != "NBRAY_AUTH_TOKEN"}
    if token is not None:
        child_env["NBRAY_AUTH_TOKEN"] = token.hex()
    child_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbray.dashboard", "--host", "127.0.0.1", "--port", "0", "--gcs-address", gcs_address,
         "--ready-fd", str(ready_w), *extra],
        env=child_env, pass_fds=(ready_w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(ready_w)
    buf = b""
    deadline = time.monotonic() + 30
    while b"\n" not in buf and time.monotonic() < deadline:
        if select.select([ready_r], [], [], 0.5)[0]:
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            buf += chunk
    os.close(ready_r)
    return proc, (json.loads(buf.split(b"\n")[0]) if b"\n" in buf else {})


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


def test_nbray_start_head_serves_the_dashboard(tmp_path: Any) -> None:
    # Its own NBRAY_TMPDIR keeps `nbray stop` to this cluster.
    temp = str(tmp_path / "t")
    env = {**os.environ, "NBRAY_TMPDIR": temp}
    cli = [sys.executable, "-m", "nbray.scripts.cli"]
    started = subprocess.run([*cli, "start", "--head", "--port", "0", "--dashboard-port", "0",
                              "--ray-client-server-port", "-1", "--num-cpus", "1",
                              "--object-store-memory", str(80 * 1024 * 1024)],
                             capture_output=True, text=True, timeout=60, env=env)
    try:
        assert started.returncode == 0, started.stderr
        url = re.search(r"Dashboard: (http://\S+)", started.stdout)
        assert url is not None, started.stdout
        (session_dir,) = [p for p in glob.glob(os.path.join(temp, "nbray", "session_*")) if not os.path.islink(p)]
        with open(os.path.join(session_dir, "auth_token")) as f:
            token = bytes.fromhex(f.read().strip())
        with open(os.path.join(session_dir, "cluster.json")) as f:
            info = json.load(f)
        assert info["dashboard_url"] == url.group(1) and url.group(1).startswith("http://127.0.0.1:")
        client = DashboardClient(url.group(1), token)
        summary = client.get("/api/cluster").json()
        assert summary["gcs_address"] == info["gcs_address"] and summary["nodes"]["alive"] == 1
        assert client.get("/api/cluster", token=None).status == 401
        dashboard_pid = info["pids"]["dashboard"]
    finally:
        subprocess.run([*cli, "stop"], capture_output=True, timeout=60, env=env)
    wait_for_condition(lambda: not launcher.process_running(dashboard_pid), timeout=15,
                       message="the dashboard stopped")


def test_without_a_token_it_reports_an_error_and_exits() -> None:
    proc, ready = spawn_dashboard("127.0.0.1:1", None)
    try:
        assert "NBRAY_AUTH_TOKEN" in ready["error"]
        assert proc.wait(15) != 0
    finally:
        stop(proc)


def test_it_exits_with_its_parent_and_when_the_gcs_stays_away() -> None:
    cluster = Cluster()
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    follower = orphan = None
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)
        head = cluster.head
        assert head is not None
        follower, ready = spawn_dashboard(cluster.address, head.token, "--parent-pid", str(parent.pid))
        assert ready["url"].startswith("http://127.0.0.1:")
        orphan, ready2 = spawn_dashboard(cluster.address, head.token,
                                         env={"NBRAY_DASHBOARD_GCS_RECONNECT_TIMEOUT_MS": "1500"})
        client = DashboardClient(ready2["url"], head.token)
        assert client.get("/api/cluster").json()["gcs_connected"] is True
        # The URL is recorded in the GCS for tools that know only the GCS address.
        from nbray.protocol import gcs_pb2
        from nbray.rpc.blocking import BlockingClient

        with BlockingClient(cluster.address, head.token) as gcs:
            url = gcs.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="dashboard", key=b"url")).value.decode()
        assert url in (ready["url"], ready2["url"])

        parent.kill()
        parent.wait(10)
        assert follower.wait(15) == 0
        cluster.shutdown()
        assert orphan.wait(30) == 0
    finally:
        for proc in (parent, follower, orphan):
            if proc is not None:
                stop(proc)
        if cluster.head is not None:
            cluster.shutdown()
