"""Benchmark: the task listing at 10,000 tasks answers in at most 200 ms.

Prints the figures (run with -s to see them):

    pytest tests/dashboard/test_benchmark.py -s
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

import nbray
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import DashboardClient, dashboard_cluster

NUM_TASKS = 10_000
LISTING_BUDGET_MS = 200


@pytest.fixture(scope="module")
def busy_cluster() -> Iterator[DashboardClient]:
    with dashboard_cluster({"num_cpus": 2, "object_store_memory": 128 * 1024 * 1024}) as d:
        yield d.client


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_listing_10000_tasks_answers_within_200_ms(busy_cluster: DashboardClient) -> None:
    @nbray.remote
    def noop(i: int) -> int:
        return i

    started = time.monotonic()
    refs = [noop.remote(i) for i in range(NUM_TASKS)]
    assert nbray.get(refs[-1]) == NUM_TASKS - 1
    nbray.get(refs)
    run_s = time.monotonic() - started
    del refs
    client = busy_cluster

    def all_finished() -> bool:
        reply = client.get("/api/tasks?state=FINISHED&limit=1").json()
        return reply["total"] >= NUM_TASKS

    wait_for_condition(all_finished, timeout=120, retry_interval_ms=250, message="10,000 finished tasks listed")
    synced_s = time.monotonic() - started

    timings_ms = []
    for _ in range(15):
        t0 = time.perf_counter()
        reply = client.get(f"/api/tasks?limit={NUM_TASKS}")
        timings_ms.append((time.perf_counter() - t0) * 1000)
        assert reply.status == 200
    body = reply.json()
    assert body["total"] >= NUM_TASKS and len(body["tasks"]) == NUM_TASKS
    assert all(t["name"] == "noop" for t in body["tasks"])

    filtered_ms = []
    for _ in range(5):
        t0 = time.perf_counter()
        reply = client.get(f"/api/tasks?state=FINISHED&func=noop&limit={NUM_TASKS}")
        filtered_ms.append((time.perf_counter() - t0) * 1000)
    assert reply.json()["total"] >= NUM_TASKS

    median = statistics.median(timings_ms)
    print(f"\n10,000 tasks: ran in {run_s:.1f} s, all listed by the dashboard {synced_s:.1f} s after submission")
    print(f"GET /api/tasks?limit=10000 ({len(reply.body) / 1e6:.1f} MB): median {median:.0f} ms, "
          f"min {min(timings_ms):.0f} ms, max {max(timings_ms):.0f} ms")
    print(f"GET /api/tasks?state=FINISHED&func=noop&limit=10000: median {statistics.median(filtered_ms):.0f} ms")
    # The median, since other processes share this machine's two cores.
    assert median <= LISTING_BUDGET_MS, timings_ms
