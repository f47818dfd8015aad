"""Totals in /metrics do not go backwards when the GCS is killed and its supervisor starts it again."""

from __future__ import annotations

import os
import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

import nbray
from nbray.testing import wait_for_condition
from nbray.testing.chaos import gcs_child
from tests.dashboard.conftest import DashboardClient, dashboard_cluster

REPORT_PERIOD_MS = 200
SYSTEM_CONFIG = {"metrics_report_period_ms": REPORT_PERIOD_MS, "gcs_reregister_grace_ms": 4_000,
                 "gcs_restart_max_backoff_ms": 500, "dashboard_gcs_reconnect_period_ms": 200}
COUNTER = ("test_restart_items_total", ())

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: DashboardClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status == 200, reply.body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(reply.body.decode()) for s in f.samples}


@nbray.remote(num_cpus=1)
def count_item(i: int) -> int:
    from nbray.util.metrics import Counter

    Counter("test_restart_items", description="items counted across a GCS restart").inc()
    return i


def running_gcs(cluster: object) -> int | None:
    try:
        return gcs_child(cluster)  # type: ignore[arg-type]
    except RuntimeError:  # between the death and the restart
        return None


@pytest.mark.timeout(240)
def test_counters_and_histograms_survive_a_gcs_restart() -> None:
    with dashboard_cluster({"num_cpus": 2, "object_store_memory": 96 * 1024 * 1024,
                            "_system_config": SYSTEM_CONFIG}) as d:
        head = d.cluster.head
        assert head is not None
        head_id = head.node_id.hex()
        finished = ("nbray_task_attempts_ended_total", (("state", "FINISHED"),))
        granted = ("nbray_node_leases_granted_total", (("node_id", head_id),))
        push_task = ("nbray_rpc_handler_seconds_count",
                     (("component", "worker"), ("method", "PushTask"), ("node_id", head_id)))
        lease_rpc = ("nbray_rpc_handler_seconds_count",
                     (("component", "raylet"), ("method", "RequestWorkerLease"), ("node_id", head_id)))
        tracked = [COUNTER, finished, granted, push_task, lease_rpc]

        n = 6
        assert nbray.get([count_item.remote(i) for i in range(n)], timeout=60) == list(range(n))

        def reported() -> Samples | None:
            samples = scrape(d.client)
            ok = samples.get(COUNTER) == n and samples.get(finished, 0) >= n and all(
                samples.get(key, 0) > 0 for key in tracked)
            return samples if ok else None

        before = wait_for_condition(reported, timeout=30, retry_interval_ms=100,
                                    message="the counters never reached /metrics before the restart")

        old = gcs_child(d.cluster)
        os.kill(old, signal.SIGKILL)
        wait_for_condition(lambda: running_gcs(d.cluster) not in (None, old), timeout=60, retry_interval_ms=100,
                           message="the supervisor never started the GCS again")

        def from_new_gcs() -> Samples | None:
            # The old GCS is gone: a scrape with the GCS's points was answered by the new one.
            samples = scrape(d.client)
            return samples if ("nbray_metrics_dropped_points_total", ()) in samples else None

        after = wait_for_condition(from_new_gcs, timeout=60, retry_interval_ms=100,
                                   message="the dashboard never got metrics from the restarted GCS")
        lower = {key: (before[key], after.get(key)) for key in tracked if after.get(key, 0.0) < before[key]}
        assert not lower, f"totals went backwards after the GCS restart: {lower}"

        # Counting goes on from the restored totals.
        m = 4
        assert nbray.get([count_item.remote(i) for i in range(m)], timeout=60) == list(range(m))
        wait_for_condition(lambda: scrape(d.client).get(COUNTER) == n + m, timeout=30, retry_interval_ms=100,
                           message="increments after the restart were not added to the restored total")
        final = scrape(d.client)
        assert final[finished] >= before[finished] + m
        assert final[granted] >= before[granted]
