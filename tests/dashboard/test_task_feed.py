"""The dashboard's task table: a late start reads every row, then follows changes past one page."""

from __future__ import annotations

from typing import Any

import pytest

import nbray
from nbray.testing import Cluster, wait_for_condition
from tests.dashboard.conftest import DashboardClient
from tests.dashboard.test_lifecycle import spawn_dashboard, stop

pytestmark = pytest.mark.timeout(120)

PAGE_ROWS = 20  # the GCS's state_api_max_limit here: every read below takes several pages


@nbray.remote
def quick(i: int) -> int:
    return i


def complete_rows(client: DashboardClient, expected: set[str]) -> list[dict[str, Any]] | None:
    rows = client.get("/api/tasks?limit=100000").json()["tasks"]
    done = {r["task_id"]: r for r in rows if r["state"] == "FINISHED" and r["node_id"] and r["worker_pid"]}
    return rows if expected <= set(done) else None


def test_a_dashboard_started_late_reads_every_task_and_follows_large_bursts() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2},
                      system_config={"state_api_max_limit": PAGE_ROWS})
    proc = None
    try:
        cluster.connect()
        before = [quick.remote(i) for i in range(3 * PAGE_ROWS)]
        assert nbray.get(before) == list(range(3 * PAGE_ROWS))
        head = cluster.head
        assert head is not None
        proc, ready = spawn_dashboard(cluster.address, head.token)
        assert "url" in ready, ready
        client = DashboardClient(ready["url"], head.token)
        early = {r.task_id().hex() for r in before}
        rows = wait_for_condition(lambda: complete_rows(client, early), timeout=20,
                                  message="the late dashboard lists every earlier task")
        assert len(rows) == len(early)
        # A burst larger than a page: the dashboard follows the GCS's changes without missing any.
        burst = [quick.remote(i) for i in range(2 * PAGE_ROWS + 5)]
        nbray.get(burst)
        everything = early | {r.task_id().hex() for r in burst}
        wait_for_condition(lambda: complete_rows(client, everything), timeout=20,
                           message="the dashboard followed a burst of tasks")
    finally:
        if proc is not None:
            stop(proc)
        cluster.shutdown()
