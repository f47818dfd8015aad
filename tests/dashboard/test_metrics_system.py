"""/metrics on a two-node cluster: RPC handling time of raylets and workers, lease counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import nbray
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import DashboardClient, DashboardCluster, dashboard_cluster

pytestmark = pytest.mark.timeout(180)

REPORT_PERIOD_MS = 200

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[DashboardCluster]:
    config = {"metrics_report_period_ms": REPORT_PERIOD_MS}
    with dashboard_cluster({"num_cpus": 1, "object_store_memory": 96 * 1024 * 1024, "_system_config": config},
                           {"num_cpus": 1, "resources": {"node_b": 1}, "object_store_memory": 96 * 1024 * 1024}
                           ) as d:
        yield d


def scrape(client: DashboardClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status == 200, reply.body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(reply.body.decode()) for s in f.samples}


def node_ids(d: DashboardCluster) -> tuple[str, str]:
    head = d.cluster.head
    assert head is not None
    (other,) = [n for n in d.cluster.list_all_nodes() if n is not head]
    return head.node_id.hex(), other.node_id.hex()


def rpc_count(samples: Samples, component: str, node_id: str, method: str) -> float:
    labels = (("component", component), ("method", method), ("node_id", node_id))
    return samples.get(("nbray_rpc_handler_seconds_count", labels), 0.0)


def per_node(samples: Samples, name: str, node_id: str) -> float:
    return samples.get((name, (("node_id", node_id),)), 0.0)


@nbray.remote(num_cpus=1)
def where(i: int) -> str:
    return nbray.get_runtime_context().get_node_id()


@nbray.remote(num_cpus=0)
class Holder:
    def node(self) -> str:
        return nbray.get_runtime_context().get_node_id()


def test_rpc_histograms_of_every_component_on_every_node(two_nodes: DashboardCluster) -> None:
    head_id, other_id = node_ids(two_nodes)
    on_head = [where.options(resources={f"node:{two_nodes.cluster.head.node_ip}": 0.01}).remote(i)  # type: ignore[union-attr]
               for i in range(3)]
    on_other = [where.options(resources={"node_b": 0.1}).remote(i) for i in range(3)]
    assert set(nbray.get(on_head, timeout=60)) == {head_id}
    assert set(nbray.get(on_other, timeout=60)) == {other_id}

    def seen() -> Samples | None:
        samples = scrape(two_nodes.client)
        wanted = [rpc_count(samples, "raylet", node, "RequestWorkerLease") for node in (head_id, other_id)]
        wanted += [rpc_count(samples, "worker", node, "PushTask") for node in (head_id, other_id)]
        return samples if all(n > 0 for n in wanted) else None

    samples = wait_for_condition(seen, timeout=30, retry_interval_ms=100,
                                 message="raylet and worker RPC histograms of both nodes never reached /metrics")
    # Each node's workers ran the three tasks placed there: at least three PushTask calls timed.
    assert rpc_count(samples, "worker", other_id, "PushTask") >= 3
    assert rpc_count(samples, "worker", head_id, "PushTask") >= 3
    # The histograms are well formed: the +Inf bucket equals the count, the sum is positive.
    labels = (("component", "raylet"), ("method", "RequestWorkerLease"), ("node_id", other_id))
    inf = samples[("nbray_rpc_handler_seconds_bucket", (*labels[:1], ("le", "+Inf"), *labels[1:]))]
    assert inf == samples[("nbray_rpc_handler_seconds_count", labels)]
    assert samples[("nbray_rpc_handler_seconds_sum", labels)] > 0
    # The GCS's own handlers are in the same family.
    assert any(name == "nbray_rpc_handler_seconds_count" and ("component", "gcs") in labels
               for name, labels in samples)


def test_lease_counters_count_each_grant(two_nodes: DashboardCluster) -> None:
    _, other_id = node_ids(two_nodes)
    # Leases of earlier tasks are returned once their owners are done with them.
    wait_for_condition(lambda: per_node(scrape(two_nodes.client), "nbray_node_leases_active", other_id) == 0,
                       timeout=30, retry_interval_ms=100, message="earlier leases were never returned")
    before = scrape(two_nodes.client)
    granted_before = per_node(before, "nbray_node_leases_granted_total", other_id)

    n = 3  # an actor holds its own lease for its lifetime: one grant each
    holders = [Holder.options(resources={"node_b": 0.01}).remote() for _ in range(n)]
    assert set(nbray.get([h.node.remote() for h in holders], timeout=60)) == {other_id}

    def leased() -> Samples | None:
        samples = scrape(two_nodes.client)
        granted = per_node(samples, "nbray_node_leases_granted_total", other_id) - granted_before
        return samples if granted >= n and per_node(samples, "nbray_node_leases_active", other_id) == n else None

    samples = wait_for_condition(leased, timeout=30, retry_interval_ms=100,
                                 message="the actors' leases never showed in /metrics")
    assert per_node(samples, "nbray_node_leases_granted_total", other_id) - granted_before == n

    for h in holders:
        nbray.kill(h)
    wait_for_condition(lambda: per_node(scrape(two_nodes.client), "nbray_node_leases_active", other_id) == 0,
                       timeout=30, retry_interval_ms=100, message="the killed actors' leases stayed active")
    after = scrape(two_nodes.client)
    assert per_node(after, "nbray_node_leases_granted_total", other_id) - granted_before == n


def test_spillbacks_are_counted(two_nodes: DashboardCluster) -> None:
    head_id, other_id = node_ids(two_nodes)
    before = per_node(scrape(two_nodes.client), "nbray_node_lease_spillbacks_total", head_id)
    # The driver asks its own (head) raylet first; only the other node has node_b.
    assert nbray.get(where.options(resources={"node_b": 0.5}).remote(0), timeout=60) == other_id
    wait_for_condition(
        lambda: per_node(scrape(two_nodes.client), "nbray_node_lease_spillbacks_total", head_id) > before,
        timeout=30, retry_interval_ms=100, message="the head raylet's spillback was never counted")
