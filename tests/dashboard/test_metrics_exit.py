"""User metrics of a worker that exits between two reports still arrive."""

from __future__ import annotations

import pytest

import nbray
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import dashboard_cluster
from tests.dashboard.test_metrics_endpoint import scrape

pytestmark = pytest.mark.timeout(120)


def test_an_exiting_actor_sends_what_it_recorded() -> None:
    """Reports are periodic; a worker that leaves between two reports sends
    its last points as it exits (here the period is far longer than the test,
    so the exit is the only way the value can arrive)."""
    with dashboard_cluster({"num_cpus": 1, "object_store_memory": 64 * 1024 * 1024,
                            "_system_config": {"metrics_report_period_ms": 600_000}}) as d:
        @nbray.remote
        class Recorder:
            def record(self) -> int:
                from nbray.util.metrics import Counter

                Counter("test_recorded_before_exit").inc(3)
                return 3

            def leave(self) -> None:
                nbray.actor.exit_actor()

        actor = Recorder.remote()
        assert nbray.get(actor.record.remote()) == 3
        assert ("test_recorded_before_exit_total", ()) not in scrape(d.client)
        actor.leave.remote()
        wait_for_condition(lambda: scrape(d.client).get(("test_recorded_before_exit_total", ())) == 3,
                           timeout=30, retry_interval_ms=100,
                           message="the actor's last points never reached /metrics")
