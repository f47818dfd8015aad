"""/metrics against a real cluster: the token, a user counter from tasks, cluster metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import nbray
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import DashboardClient, dashboard_cluster

pytestmark = pytest.mark.timeout(180)

REPORT_PERIOD_MS = 200


@pytest.fixture(scope="module")
def client() -> Iterator[DashboardClient]:
    with dashboard_cluster({"num_cpus": 2, "object_store_memory": 96 * 1024 * 1024,
                            "_system_config": {"metrics_report_period_ms": REPORT_PERIOD_MS}}) as d:
        yield d.client


def scrape(client: DashboardClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(reply.body.decode()) for s in f.samples}


def test_metrics_need_the_token(client: DashboardClient) -> None:
    missing = client.get("/metrics", token=None)
    assert missing.status == 401 and b"nbray_" not in missing.body
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", token=b"\x01" * 32)
    assert wrong.status == 403 and b"nbray_" not in wrong.body
    assert client.get("/metrics", token="Basic abc").status == 401
    assert ("nbray_dashboard_gcs_connected", ()) in scrape(client)


def test_user_counter_and_tasks_finished(client: DashboardClient) -> None:
    before = scrape(client).get(("nbray_task_attempts_ended_total", (("state", "FINISHED"),)), 0.0)

    @nbray.remote
    def work(i: int) -> int:
        from nbray.util.metrics import Counter, Histogram

        done = Counter("test_items_done", description="items processed", tag_keys=("kind",))
        done.set_default_tags({"kind": "even" if i % 2 == 0 else "odd"})
        done.inc()
        Histogram("test_item_size", boundaries=[1, 10]).observe(i)
        return i

    n = 7
    assert nbray.get([work.remote(i) for i in range(n)]) == list(range(n))
    even = ("test_items_done_total", (("kind", "even"),))
    odd = ("test_items_done_total", (("kind", "odd"),))
    finished = ("nbray_task_attempts_ended_total", (("state", "FINISHED"),))

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape(client)
        if (samples.get(even) == 4 and samples.get(odd) == 3 and samples.get(finished, 0) - before >= n
                and samples.get(("nbray_tasks", (("state", "FINISHED"),)), 0) >= n):
            return samples
        return None

    samples = wait_for_condition(counted, timeout=30, retry_interval_ms=100,
                                 message="the counter from the tasks never reached /metrics")
    assert samples[finished] - before == n
    assert samples[("test_item_size_count", ())] == n
    assert samples[("test_item_size_bucket", (("le", "1.0"),))] == 2  # 0 and 1
    assert samples[("nbray_tasks", (("state", "FINISHED"),))] >= n
    cpu = [v for (name, labels), v in samples.items()
           if name == "nbray_node_resources_total" and ("resource", "CPU") in labels]
    assert cpu == [2.0]
    assert any(name == "nbray_rpc_handler_seconds_count" and ("method", "GetTaskEvents") in labels
               and ("component", "gcs") in labels
               for name, labels in samples)


def test_driver_metrics_and_failed_attempts(client: DashboardClient) -> None:
    from nbray.util.metrics import Gauge, flush

    failed = ("nbray_task_attempts_ended_total", (("state", "FAILED"),))
    before = scrape(client).get(failed, 0.0)

    @nbray.remote(max_retries=0)
    def boom() -> None:
        raise ValueError("expected failure")

    with pytest.raises(ValueError):
        nbray.get(boom.remote())
    Gauge("test_driver_queue").set(42)
    assert flush()

    def seen() -> bool:
        samples = scrape(client)
        return samples.get(("test_driver_queue", ())) == 42 and samples.get(failed, 0) - before == 1

    wait_for_condition(seen, timeout=30, retry_interval_ms=100, message="the gauge or the failure never showed")
    assert scrape(client).get(failed, 0) - before == 1

