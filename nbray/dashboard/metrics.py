"""The Prometheus exposition of ``/metrics`` (dashboard process).

Two sources, turned into ``prometheus_client`` metric families on each
scrape (nothing is kept between scrapes):

- what the dashboard already follows (``ClusterModel``): tasks and actors by
  state, nodes, and per node its resources, object store, pending leases and
  workers;
- what the GCS keeps (``GetMetrics``): the user metrics of every driver and
  worker (``nbray.util.metrics``), task attempts ended, the RPC
  handling-time histograms of the GCS, raylets, workers and drivers, and
  the raylets' lease counters (nbray/gcs/metrics.py).

No I/O here: ``exposition`` takes the reply and the model and returns the
text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from nbray.protocol import gcs_pb2

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def point_families(points: Iterable[gcs_pb2.MetricPoint]) -> list[Metric]:
    """Metric families of GetMetrics points: one family per name, one sample set per series."""
    families: dict[str, Metric] = {}
    for p in points:
        family = families.get(p.name)
        if family is None:
            family = families[p.name] = _family(p)
        elif tuple(getattr(family, "_labelnames", ())) != tuple(p.tag_keys):
            continue  # the GCS checks definitions; a disagreeing point cannot be shown in the same family
        values = list(p.tag_values)
        if p.kind == gcs_pb2.METRIC_HISTOGRAM:
            assert isinstance(family, HistogramMetricFamily)
            family.add_metric(values, buckets=histogram_buckets(p.boundaries, p.bucket_counts), sum_value=p.value)
        else:
            assert isinstance(family, (CounterMetricFamily, GaugeMetricFamily))
            family.add_metric(values, p.value)
    return list(families.values())


def _family(p: gcs_pb2.MetricPoint) -> Metric:
    labels = list(p.tag_keys)
    doc = p.description or p.name
    family: Metric
    if p.kind == gcs_pb2.METRIC_COUNTER:
        family = CounterMetricFamily(p.name, doc, labels=labels)
    elif p.kind == gcs_pb2.METRIC_GAUGE:
        family = GaugeMetricFamily(p.name, doc, labels=labels)
    else:
        family = HistogramMetricFamily(p.name, doc, labels=labels)
    family._labelnames = tuple(labels)  # type: ignore[attr-defined]  # kept for the check above
    return family


def histogram_buckets(boundaries: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last above every bound) as Prometheus's cumulative ``le`` buckets."""
    assert len(counts) == len(boundaries) + 1, (len(counts), len(boundaries))
    out = []
    running = 0
    for bound, n in zip(boundaries, counts):
        running += n
        out.append((_le(bound), float(running)))
    running += counts[-1]
    out.append(("+Inf", float(running)))
    return out


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def cluster_families(summary: dict[str, Any], nodes: list[dict[str, Any]], gcs_connected: bool) -> list[Metric]:
    """Families of what the dashboard follows (ClusterModel.summary() and node_rows())."""
    out: list[Metric] = []
    up = GaugeMetricFamily("nbray_dashboard_gcs_connected", "1 while the dashboard is connected to the GCS")
    up.add_metric([], 1.0 if gcs_connected else 0.0)
    out.append(up)
    tasks = GaugeMetricFamily("nbray_tasks", "Task attempts the dashboard follows, by state", labels=["state"])
    for state, n in sorted(summary["tasks"]["by_state"].items()):
        tasks.add_metric([state], float(n))
    actors = GaugeMetricFamily("nbray_actors", "Actors by state", labels=["state"])
    for state, n in sorted(summary["actors"]["by_state"].items()):
        actors.add_metric([state], float(n))
    node_states = GaugeMetricFamily("nbray_nodes", "Nodes by state", labels=["state"])
    node_states.add_metric(["ALIVE"], float(summary["nodes"]["alive"]))
    node_states.add_metric(["DEAD"], float(summary["nodes"]["dead"]))
    out += [tasks, actors, node_states]
    out += node_families(n for n in nodes if n["state"] == "ALIVE")
    return out


def node_families(nodes: Iterable[dict[str, Any]]) -> list[Metric]:
    node_labels = ["node_id", "node_ip"]
    total = GaugeMetricFamily("nbray_node_resources_total", "Resources of a node", labels=[*node_labels, "resource"])
    available = GaugeMetricFamily("nbray_node_resources_available", "Resources of a node not allocated",
                                  labels=[*node_labels, "resource"])
    capacity = GaugeMetricFamily("nbray_object_store_capacity_bytes", "Object store capacity", labels=node_labels)
    used = GaugeMetricFamily("nbray_object_store_used_bytes", "Bytes in the object store", labels=node_labels)
    spilled = GaugeMetricFamily("nbray_object_store_spilled_bytes", "Bytes spilled to disk", labels=node_labels)
    objects = GaugeMetricFamily("nbray_object_store_objects", "Objects in the object store", labels=node_labels)
    leases = GaugeMetricFamily("nbray_node_pending_leases", "Worker lease requests waiting on a node",
                               labels=node_labels)
    workers = GaugeMetricFamily("nbray_node_workers", "Worker processes of a node", labels=node_labels)
    for n in nodes:
        labels = [n["node_id"], n["node_ip"]]
        for resource, value in sorted(n["resources_total"].items()):
            total.add_metric([*labels, resource], float(value))
        for resource, value in sorted(n["resources_available"].items()):
            available.add_metric([*labels, resource], float(value))
        store = n["object_store"]
        capacity.add_metric(labels, float(store["capacity_bytes"]))
        used.add_metric(labels, float(store["used_bytes"]))
        spilled.add_metric(labels, float(store["spilled_bytes"]))
        if store.get("num_objects") is not None:
            objects.add_metric(labels, float(store["num_objects"]))
        leases.add_metric(labels, float(n.get("pending_leases") or 0))
        if n.get("num_workers") is not None:
            workers.add_metric(labels, float(n["num_workers"]))
    return [total, available, capacity, used, spilled, objects, leases, workers]


class _Families:
    """A collector that yields a fixed list (one scrape's families)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(cluster: list[Metric], reply: gcs_pb2.GetMetricsReply | None) -> bytes:
    """The /metrics body. Cluster families win a name clash with a user metric."""
    families = list(cluster)
    if reply is not None:
        dropped = CounterMetricFamily("nbray_metrics_dropped_points",
                                      "Reported metric points the GCS left out (series bound, definition clash)")
        dropped.add_metric([], float(reply.num_dropped_points))
        families.append(dropped)
        taken = {f.name for f in families}
        families += [f for f in point_families(reply.points) if f.name not in taken]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry)
