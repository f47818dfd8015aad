"""GET /api/utilization against a real two-node cluster: sampling, the bound, filters, the token."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

import nbray
from nbray.common.config import get_config
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import DashboardCluster

pytestmark = pytest.mark.timeout(120)


def history(dash: DashboardCluster, query: str = "") -> dict[str, Any]:
    reply = dash.client.get(f"/api/utilization{query}")
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


def node_entry(body: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(e for e in body["nodes"] if e["node_id"] == node_id)


def test_utilization_is_sampled_every_second_per_node(dash: DashboardCluster) -> None:
    head = dash.cluster.head
    assert head is not None
    head_id, worker_id = head.node_id.hex(), dash.cluster.worker_nodes[0].node_id.hex()

    @nbray.remote(num_gpus=1)
    class GpuHolder:
        def ready(self) -> bool:
            return True

    holder = GpuHolder.remote()  # type: ignore[attr-defined]
    assert nbray.get(holder.ready.remote(), timeout=60)

    def gpu_seen_in_use() -> bool:
        entry = node_entry(history(dash), head_id)
        return len(entry["t_ms"]) >= 4 and entry["gpu_used"][-1] == 1.0

    wait_for_condition(gpu_seen_in_use, timeout=30, retry_interval_ms=200, message="the held GPU in the history")
    body = history(dash)
    assert body["period_ms"] == get_config().dashboard_utilization_period_ms == 1000
    assert body["history_ms"] == 600_000
    assert {e["node_id"] for e in body["nodes"]} == {head_id, worker_id}
    head_entry, worker_entry = node_entry(body, head_id), node_entry(body, worker_id)
    assert head_entry["state"] == "ALIVE"
    assert set(body["series"]) <= set(head_entry)
    assert all(len(head_entry[name]) == len(head_entry["t_ms"]) for name in body["series"])
    assert head_entry["cpu_total"][-1] == 2.0 and worker_entry["cpu_total"][-1] == 1.0
    assert head_entry["gpu_total"][-1] == 1.0 and worker_entry["gpu_total"][-1] == 0.0
    assert head_entry["store_capacity_bytes"][-1] == 128 * 1024 * 1024
    assert head_entry["memory_total"][-1] > 0
    times = head_entry["t_ms"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert times == sorted(times) and 500 <= statistics.median(gaps) <= 2000, gaps
    assert body["now_ms"] - times[-1] <= 3000

    # Only newer samples with since_ms; one node with node_id.
    since = times[-2]
    newer = node_entry(history(dash, f"?since_ms={since}&node_id={head_id}"), head_id)
    assert newer["t_ms"] and all(t > since for t in newer["t_ms"])
    assert [e["node_id"] for e in history(dash, f"?node_id={worker_id}")["nodes"]] == [worker_id]

    # The GPU is released when its actor goes.
    nbray.kill(holder)
    wait_for_condition(lambda: node_entry(history(dash), head_id)["gpu_used"][-1] == 0.0, timeout=30,
                       retry_interval_ms=200, message="the released GPU in the history")


def test_utilization_needs_the_token_and_valid_queries(dash: DashboardCluster) -> None:
    assert dash.client.get("/api/utilization", token=None).status == 401
    assert dash.client.get("/api/utilization", token=b"x" * 32).status in (401, 403)
    for query in ("?node_id=xyz", "?since_ms=-1", "?since_ms=soon", "?limit=3", "?since_ms=1&since_ms=2"):
        reply = dash.client.get(f"/api/utilization{query}")
        assert reply.status == 400, (query, reply.body)
        assert "error" in reply.json()
    assert dash.client.request("POST", "/api/utilization").status == 405
