"""The cluster the panel shows, and the dashboard that serves it (Jupyter server process).

The selection is "auto" (the configured cluster, else ``NBRAY_ADDRESS``,
else the newest local cluster) or one cluster by GCS address. Resolving
it yields an ``Upstream``: the cluster's own dashboard when it has one
that answers with this token; otherwise a dashboard process started here
for it (a kernel's ``nbray.init()`` starts none by default). A dashboard
started here follows the cluster's GCS process when it is local, or this
server otherwise, and is stopped with the server.

A failed call invalidates the upstream; the next call resolves again,
which is how the panel follows a cluster that restarts.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import subprocess
import sys
from typing import Any

from nbray.exceptions import AuthenticationError, RpcError
from nbray.jupyter.server_extension.discovery import Candidate, all_candidates
from nbray.jupyter.server_extension.relay import Upstream, UpstreamUnavailable, fetch
from nbray.node.launcher import read_ready_line
from nbray.protocol import gcs_pb2
from nbray.rpc.blocking import BlockingClient

logger = logging.getLogger(__name__)

DASHBOARD_START_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 3.0
KV_NAMESPACE = "dashboard"   # written by nbray.dashboard.server
KV_URL_KEY = b"url"


class _Spawned:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, token: bytes) -> None:
        self.proc = proc
        self.url = url
        self.token = token


class ClusterManager:
    def __init__(self, configured_address: str = "", configured_token_path: str = "",
                 temp_root: str | None = None) -> None:
        self.configured_address = configured_address
        self.configured_token_path = configured_token_path
        self.temp_root = temp_root
        self.selection = "auto"
        self.error: str | None = None
        self._current: Upstream | None = None
        self._current_cluster: Candidate | None = None
        self._spawned: dict[str, _Spawned] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.generation = 0
        atexit.register(self.shutdown)

    # ---- what can be seen and chosen -------------------------------------------------------------------------

    def candidates(self) -> list[Candidate]:
        return all_candidates(self.configured_address, self.configured_token_path, self.temp_root)

    def select(self, cluster_id: str) -> None:
        """Choose "auto" or a cluster by id (its GCS address)."""
        if cluster_id != "auto" and cluster_id not in {c.id for c in self.candidates()}:
            raise KeyError(cluster_id)
        self.selection = cluster_id
        self._drop_current()

    def status(self) -> dict[str, Any]:
        current = self._current_cluster
        return {
            "selection": self.selection,
            "connected": current.public() if (current is not None and self._current is not None) else None,
            "dashboard": ("started by the Jupyter server" if self._current is not None and self._current.spawned
                          else "the cluster's" if self._current is not None else None),
            "error": self.error,
            "clusters": [c.public() for c in self.candidates()],
        }

    async def wait_changed(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def _drop_current(self) -> None:
        self._current = None
        self._current_cluster = None
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def invalidate(self, up: Upstream) -> None:
        """A call to `up` failed: resolve again next time."""
        if self._current is up:
            self._drop_current()

    # ---- resolving ----------------------------------------------------------------------------------------------

    async def resolve(self) -> Upstream | None:
        if self._current is not None:
            return self._current
        async with self._lock:
            if self._current is not None:
                return self._current
            candidates = self.candidates()
            if self.selection == "auto":
                chosen = candidates[0] if candidates else None
                if chosen is None:
                    self.error = "no nbray cluster found; start one (nbray.init() in a kernel, or nbray start --head)"
            else:
                chosen = next((c for c in candidates if c.id == self.selection), None)
                if chosen is None:
                    self.error = f"the cluster at {self.selection} is not running"
            if chosen is None:
                return None
            if chosen.token is None:
                self.error = (f"no cluster token for {chosen.gcs_address}: set NBRAY_AUTH_TOKEN for the Jupyter "
                              "server or c.NbrayExtension.auth_token_path")
                return None
            try:
                up = await self._dashboard_for(chosen)
            except (UpstreamUnavailable, OSError, RuntimeError, RpcError, AuthenticationError) as exc:
                self.error = str(exc)
                return None
            self.error = None
            self._current, self._current_cluster = up, chosen
            self.generation += 1
            self._changed.set()
            self._changed = asyncio.Event()
            return up

    async def _dashboard_for(self, cluster: Candidate) -> Upstream:
        assert cluster.token is not None
        url = cluster.dashboard_url
        loop = asyncio.get_running_loop()
        if not url and cluster.origin != "local":
            url = await loop.run_in_executor(None, _dashboard_url_from_gcs, cluster.gcs_address, cluster.token)
        if url:
            up = Upstream(url=url, token=cluster.token, cluster_id=cluster.id)
            if await _answers(up):
                return up
        spawned = self._spawned.get(cluster.id)
        if spawned is not None and spawned.proc.poll() is None and spawned.token == cluster.token:
            up = Upstream(url=spawned.url, token=cluster.token, cluster_id=cluster.id, spawned=True)
            if await _answers(up):
                return up
        if spawned is not None:
            _stop(spawned.proc)
            del self._spawned[cluster.id]
        spawned = await loop.run_in_executor(None, _spawn_dashboard, cluster)
        self._spawned[cluster.id] = spawned
        return Upstream(url=spawned.url, token=cluster.token, cluster_id=cluster.id, spawned=True)

    def shutdown(self) -> None:
        for spawned in self._spawned.values():
            _stop(spawned.proc)
        self._spawned.clear()


async def _answers(up: Upstream) -> bool:
    try:
        status, _ = await fetch(up, "GET", "/api/cluster", timeout_s=PROBE_TIMEOUT_S)
    except UpstreamUnavailable:
        return False
    return status == 200


def _dashboard_url_from_gcs(gcs_address: str, token: bytes) -> str:
    try:
        with BlockingClient(gcs_address, token, role="dashboard-client", timeout_s=PROBE_TIMEOUT_S) as client:
            reply = client.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns=KV_NAMESPACE, key=KV_URL_KEY))
    except (OSError, ConnectionError, TimeoutError, RpcError, AuthenticationError):
        return ""
    return reply.value.decode() if reply.found else ""


def _spawn_dashboard(cluster: Candidate) -> _Spawned:
    """Start ``python -m nbray.dashboard`` for a cluster that has none (blocking)."""
    assert cluster.token is not None
    ready_r, ready_w = os.pipe()
    env = dict(os.environ)
    env["NBRAY_AUTH_TOKEN"] = cluster.token.hex()
    parent = cluster.head_pid if cluster.head_pid else os.getpid()
    args = [sys.executable, "-m", "nbray.dashboard", "--host", "127.0.0.1", "--port", "0",
            "--gcs-address", cluster.gcs_address, "--session-dir", cluster.session_dir or "",
            "--ready-fd", str(ready_w), "--parent-pid", str(parent)]
    logs = os.path.join(cluster.session_dir, "logs") if cluster.session_dir else ""
    log_path = os.path.join(logs, "dashboard-jupyter.log") if logs and os.path.isdir(logs) else os.devnull
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(ready_w,), start_new_session=True, close_fds=True)
    finally:
        os.close(ready_w)
    info = read_ready_line(ready_r, proc, DASHBOARD_START_TIMEOUT_S) or {}
    if "url" not in info:
        _stop(proc)
        raise RuntimeError(f"could not start a dashboard for {cluster.gcs_address}: {info.get('error', 'no reply')}")
    logger.info("started a dashboard for %s at %s (pid %d)", cluster.gcs_address, info["url"], proc.pid)
    return _Spawned(proc, str(info["url"]), cluster.token)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
