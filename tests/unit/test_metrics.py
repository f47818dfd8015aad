"""Metrics without a cluster: definitions, recording, the GCS's totals and the exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nbray.dashboard.metrics import cluster_families, exposition, histogram_buckets
from nbray.gcs.metrics import GcsOwnMetrics, MetricsTable
from nbray.protocol import gcs_pb2
from nbray.rpc.handler_timing import HandlerTimer
from nbray.util import metrics
from nbray.util.metrics import Counter, Gauge, Histogram


def _take() -> list[gcs_pb2.MetricPoint]:
    report = metrics._RECORDER.take_report()
    return list(report.points) if report is not None else []


@pytest.fixture(autouse=True)
def _empty_report() -> None:
    _take()  # what earlier tests recorded


@pytest.mark.parametrize("name", ["", "1abc", "with-dash", "with space", "dot.ted", "é"])
def test_bad_metric_names_fail_at_definition(name: str) -> None:
    for cls in (Counter, Gauge):
        with pytest.raises(ValueError, match="invalid metric name"):
            cls(name)
    with pytest.raises(ValueError, match="invalid metric name"):
        Histogram(name, boundaries=[1.0])


@pytest.mark.parametrize("key", ["__reserved", "le", "quantile", "has-dash", "9lives"])
def test_bad_tag_keys_fail_at_definition(key: str) -> None:
    with pytest.raises(ValueError, match="invalid tag key"):
        Counter("unit_bad_tag_keys", tag_keys=(key,))


def test_bad_histogram_boundaries() -> None:
    for bounds in ([], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]):
        with pytest.raises(ValueError):
            Histogram("unit_bad_bounds", boundaries=bounds)


def test_tags_are_checked_when_recording() -> None:
    c = Counter("unit_tag_checks", tag_keys=("route", "code"))
    with pytest.raises(ValueError, match="missing value"):
        c.inc(tags={"route": "/a"})
    with pytest.raises(ValueError, match="unknown tag key"):
        c.inc(tags={"route": "/a", "code": "200", "extra": "x"})
    with pytest.raises(ValueError, match="unknown tag key"):
        c.set_default_tags({"nope": "x"})
    with pytest.raises(ValueError, match="> 0"):
        c.inc(0)
    c.set_default_tags({"code": "200"})
    c.inc(2, tags={"route": "/a"})
    c.inc(tags={"route": "/a", "code": "500"})
    points = {tuple(p.tag_values): p.value for p in _take() if p.name == "unit_tag_checks"}
    assert points == {("/a", "200"): 2.0, ("/a", "500"): 1.0}
    c.set_default_tags({"code": "300"})  # the same call's tags now resolve to another series
    c.inc(tags={"route": "/a"})
    points = {tuple(p.tag_values): p.value for p in _take() if p.name == "unit_tag_checks"}
    assert points == {("/a", "300"): 1.0}
    with pytest.raises(TypeError):
        c.inc(tags={"route": ["unhashable"]})  # type: ignore[dict-item]


def test_redefinition_must_agree() -> None:
    Counter("unit_redefined", tag_keys=("a",))
    Counter("unit_redefined", tag_keys=("a",))  # as a task that defines its metric each run
    with pytest.raises(ValueError, match="already defined"):
        Gauge("unit_redefined", tag_keys=("a",))
    with pytest.raises(ValueError, match="already defined"):
        Counter("unit_redefined", tag_keys=("b",))


def test_reports_carry_increases_and_latest_gauge() -> None:
    c = Counter("unit_requests", description="requests")
    g = Gauge("unit_queue", tag_keys=("q",))
    h = Histogram("unit_latency", boundaries=[0.1, 1.0])
    c.inc()
    c.inc(4)
    g.set(3, tags={"q": "x"})
    g.set(7, tags={"q": "x"})
    for v in (0.05, 0.1, 0.5, 5.0):
        h.observe(v)
    by_name = {p.name: p for p in _take()}
    assert by_name["unit_requests"].value == 5 and by_name["unit_requests"].description == "requests"
    assert by_name["unit_queue"].value == 7 and list(by_name["unit_queue"].tag_values) == ["x"]
    assert list(by_name["unit_latency"].bucket_counts) == [2, 1, 1]
    assert by_name["unit_latency"].value == pytest.approx(5.65)
    # a second report only has what changed since, counters from zero again
    c.inc()
    again = {p.name: p for p in _take()}
    assert set(again) == {"unit_requests"} and again["unit_requests"].value == 1


def _point(name: str, kind: int, value: float, tags: dict[str, str] | None = None,
           boundaries: tuple[float, ...] = (), buckets: tuple[int, ...] = ()) -> gcs_pb2.MetricPoint:
    tags = tags or {}
    return gcs_pb2.MetricPoint(name=name, kind=kind, tag_keys=list(tags), tag_values=list(tags.values()),  # type: ignore[arg-type]
                               value=value, boundaries=boundaries, bucket_counts=buckets)


def test_gcs_table_sums_reports_and_bounds_series() -> None:
    table = MetricsTable(max_series=3)
    table.report([_point("c", gcs_pb2.METRIC_COUNTER, 2, {"w": "1"}), _point("g", gcs_pb2.METRIC_GAUGE, 5)])
    table.report([_point("c", gcs_pb2.METRIC_COUNTER, 3, {"w": "1"}), _point("g", gcs_pb2.METRIC_GAUGE, 1)])
    table.report([_point("h", gcs_pb2.METRIC_HISTOGRAM, 1.5, boundaries=(1.0,), buckets=(1, 1))])
    table.report([_point("h", gcs_pb2.METRIC_HISTOGRAM, 0.5, boundaries=(1.0,), buckets=(1, 0))])
    totals = {(p.name, tuple(p.tag_values)): p for p in table.points()}
    assert totals[("c", ("1",))].value == 5
    assert totals[("g", ())].value == 1
    assert list(totals[("h", ())].bucket_counts) == [2, 1] and totals[("h", ())].value == 2.0
    # a fourth series, and a point disagreeing with its metric's definition, are dropped and counted
    table.report([_point("c", gcs_pb2.METRIC_COUNTER, 1, {"w": "2"}), _point("c", gcs_pb2.METRIC_GAUGE, 1, {"w": "1"}),
                  _point("h", gcs_pb2.METRIC_HISTOGRAM, 1, boundaries=(2.0,), buckets=(1, 0))])
    assert len(table) == 3 and table.num_dropped == 3


def test_rpc_timer_histogram() -> None:
    ticks = iter([0, 2_000_000, 10, 10 + 300_000_000])  # 2 ms, then 300 ms
    timer = HandlerTimer("gcs", boundaries=(0.001, 0.01, 1.0), clock=lambda: next(ticks))
    handler = timer.wrap("GetThing", lambda conn, req, rid: "reply")
    assert handler(None, None, 1) == "reply"
    assert handler(None, None, 2) == "reply"
    (point,) = timer.take_points()
    assert point.name == "nbray_rpc_handler_seconds" and point.kind == gcs_pb2.METRIC_HISTOGRAM
    assert list(point.tag_values) == ["gcs", "", "GetThing"] and list(point.bucket_counts) == [0, 1, 1, 0]
    assert point.value == pytest.approx(0.302)


def test_histogram_buckets_are_cumulative() -> None:
    assert histogram_buckets([1.0, 2.0], [3, 0, 2]) == [("1.0", 3.0), ("2.0", 3.0), ("+Inf", 5.0)]


def test_exposition_parses_with_prometheus_client() -> None:
    summary = {"tasks": {"by_state": {"FINISHED": 4, "FAILED": 1}}, "actors": {"by_state": {"ALIVE": 2}},
               "nodes": {"alive": 1, "dead": 0}}
    node = {"node_id": "ab" * 14, "node_ip": "127.0.0.1", "state": "ALIVE", "resources_total": {"CPU": 2.0},
            "resources_available": {"CPU": 1.0}, "pending_leases": 3, "num_workers": 2,
            "object_store": {"capacity_bytes": 100, "used_bytes": 40, "spilled_bytes": 7, "num_objects": 5}}
    reply = gcs_pb2.GetMetricsReply(num_dropped_points=2, points=[
        _point("user_rows", gcs_pb2.METRIC_COUNTER, 12, {"src": "s3"}),
        _point("user_lat", gcs_pb2.METRIC_HISTOGRAM, 3.0, boundaries=(1.0, 2.0), buckets=(1, 1, 1)),
        _point("nbray_tasks", gcs_pb2.METRIC_GAUGE, 99)])  # clashes with a cluster family: left out
    text = exposition(cluster_families(summary, [node], True), reply).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("user_rows_total", (("src", "s3"),))] == 12
    assert samples[("user_lat_bucket", (("le", "2.0"),))] == 2
    assert samples[("user_lat_count", ())] == 3
    assert samples[("nbray_tasks", (("state", "FINISHED"),))] == 4
    assert ("nbray_tasks", ()) not in samples
    labels = (("node_id", "ab" * 14), ("node_ip", "127.0.0.1"))
    assert samples[("nbray_object_store_spilled_bytes", labels)] == 7
    assert samples[("nbray_node_resources_available", (*labels, ("resource", "CPU")))] == 1
    assert samples[("nbray_node_pending_leases", labels)] == 3
    assert samples[("nbray_metrics_dropped_points_total", ())] == 2


def test_flush_without_a_cluster_keeps_the_points() -> None:
    c = Counter("unit_offline")
    c.inc(3)
    assert metrics.flush() is False
    assert {p.name: p.value for p in _take()}["unit_offline"] == 3


def test_task_attempts_ended_survive_eviction() -> None:
    from nbray.gcs.task_events import TaskEventStore
    from tests.unit.task_records import record

    store = TaskEventStore(max_tasks=2)
    store.add([record(b"a" * 24, 0, [(gcs_pb2.RUNNING, 1), (gcs_pb2.FINISHED, 2)])])
    store.add([record(b"a" * 24, 0, [(gcs_pb2.FINISHED, 3)])])  # the same end reported again
    store.add([record(b"b" * 24, 0, [(gcs_pb2.RUNNING, 1), (gcs_pb2.FAILED, 2)]),
               record(b"b" * 24, 1, [(gcs_pb2.RUNNING, 3), (gcs_pb2.FINISHED, 4)]),
               record(b"c" * 24, 0, [(gcs_pb2.RUNNING, 5)])])
    assert store.num_evicted == 2
    ended = {tuple(p.tag_values): p.value for p in GcsOwnMetrics(store, HandlerTimer("gcs")).take_points()
             if p.name == "nbray_task_attempts_ended"}
    assert ended == {("FINISHED",): 2, ("FAILED",): 1}
