"""A cluster with a dashboard for the API tests, and a raw HTTP helper."""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import nbray
from nbray.testing import Cluster


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class DashboardClient:
    """Sends requests exactly as written (no path normalisation), like an attacker would."""

    def __init__(self, url: str, token: bytes) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.url = url
        self.token = token

    def request(self, method: str, path: str, *, token: bytes | str | None = "default",
                headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 30) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        hdrs = {"User-Agent": "nbray-tests"}
        if token == "default":
            hdrs["Authorization"] = f"Bearer {self.token.hex()}"
        elif isinstance(token, bytes):
            hdrs["Authorization"] = f"Bearer {token.hex()}"
        elif isinstance(token, str):
            hdrs["Authorization"] = token
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)


@dataclass
class DashboardCluster:
    cluster: Cluster
    client: DashboardClient


@contextlib.contextmanager
def dashboard_cluster(head: dict[str, Any], *others: dict[str, Any]) -> Iterator[DashboardCluster]:
    """A head with a dashboard (``head``: its add_node arguments) and the
    ``others`` nodes, with this process as the driver; torn down after."""
    cluster = Cluster()
    try:
        cluster.add_node(include_dashboard=True, dashboard_port=0, **head)
        for kwargs in others:
            cluster.add_node(**kwargs)
        nbray.init(address=cluster.address)
        node = cluster.head
        assert node is not None
        yield DashboardCluster(cluster, DashboardClient(node.extra["dashboard_url"], node.token))
    finally:
        if nbray.is_initialized():
            nbray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def dash() -> Iterator[DashboardCluster]:
    """Head (2 CPUs, 1 GPU, dashboard) + one worker node, with this process as the driver."""
    with dashboard_cluster({"num_cpus": 2, "num_gpus": 1, "object_store_memory": 128 * 1024 * 1024},
                           {"num_cpus": 1, "object_store_memory": 96 * 1024 * 1024}) as d:
        yield d
