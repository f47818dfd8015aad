"""System metrics without a cluster: RPC handler timing, lease counters, and GCS totals kept in storage."""

from __future__ import annotations

import threading

import pytest

from nbray.gcs.metrics import GcsOwnMetrics, MetricsTable, storage_key
from nbray.gcs.storage import MemoryStorage, Table
from nbray.gcs.task_events import TaskEventStore
from nbray.protocol import METHODS, gcs_pb2
from nbray.raylet.metrics import LEASE_SPILLBACKS, LEASES_ACTIVE, LEASES_GRANTED, RayletMetrics
from nbray.rpc.connection import Dispatcher
from nbray.rpc.handler_timing import RPC_HANDLER_SECONDS, CounterDeltas, HandlerTimer
from nbray.util import metrics
from nbray.util.metrics import Counter


def _counter(name: str, value: float, **tags: str) -> gcs_pb2.MetricPoint:
    return gcs_pb2.MetricPoint(name=name, kind=gcs_pb2.METRIC_COUNTER, tag_keys=list(tags),
                               tag_values=list(tags.values()), value=value)


def test_timer_reports_only_increases() -> None:
    timer = HandlerTimer("raylet", "ab12", boundaries=(0.001, 1.0))
    timer.record("PushTask", 0.0005)
    timer.record("PushTask", 0.5)
    timer.record("Other", 2.0)
    first = {p.tag_values[2]: p for p in timer.take_points()}
    assert list(first["PushTask"].tag_keys) == ["component", "node_id", "method"]
    assert list(first["PushTask"].tag_values) == ["raylet", "ab12", "PushTask"]
    assert list(first["PushTask"].bucket_counts) == [1, 1, 0] and first["PushTask"].value == pytest.approx(0.5005)
    assert list(first["Other"].bucket_counts) == [0, 0, 1]
    assert timer.take_points() == []  # nothing new: nothing sent
    timer.record("PushTask", 0.0001)
    (again,) = timer.take_points()
    assert list(again.bucket_counts) == [1, 0, 0] and again.value == pytest.approx(0.0001)
    assert timer.totals("PushTask")[0] == [2, 1, 0]


def test_timer_bad_arguments() -> None:
    with pytest.raises(ValueError, match="component"):
        HandlerTimer("")
    with pytest.raises(ValueError, match="ascending"):
        HandlerTimer("gcs", boundaries=(1.0, 0.5))


def test_timer_counts_a_handler_that_raises() -> None:
    timer = HandlerTimer("worker", "n")

    def broken(conn: object, req: object, rid: int) -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        timer.wrap("PushTask", broken)(None, None, 1)
    assert sum(timer.totals("PushTask")[0]) == 1


def test_timer_loses_no_call_when_taken_from_another_thread() -> None:
    timer = HandlerTimer("worker", "n")
    handler = timer.wrap("PushTask", lambda conn, req, rid: None)
    calls = 20_000
    taken: list[int] = []
    done = threading.Event()

    def reporter() -> None:
        while not done.is_set():
            taken.extend(sum(p.bucket_counts) for p in timer.take_points())

    thread = threading.Thread(target=reporter)
    thread.start()
    for i in range(calls):
        handler(None, None, i)
    done.set()
    thread.join(10)
    taken.extend(sum(p.bucket_counts) for p in timer.take_points())
    assert sum(taken) == calls


def test_dispatcher_wraps_every_handler_of_a_service() -> None:
    timer = HandlerTimer("raylet", "n")

    class Service:
        def handle_ReturnWorker(self, conn: object, req: object, rid: int) -> str:
            return "returned"

    dispatcher = Dispatcher()
    dispatcher.register_service("RayletService", Service(), wrap=timer.wrap)
    (m,) = [m for m in METHODS if m.full_name == "RayletService.ReturnWorker"]
    handler = dispatcher.get(m.id)
    assert handler is not None and handler(None, None, 1) == "returned"  # type: ignore[arg-type]
    (point,) = timer.take_points()
    assert point.name == RPC_HANDLER_SECONDS and point.tag_values[2] == "ReturnWorker"


class _Leases:
    def __init__(self) -> None:
        self.num_granted = 0
        self.num_spillbacks = 0
        self.active = 0

    def num_active(self) -> int:
        return self.active


def test_raylet_reports_lease_increases_and_the_active_gauge() -> None:
    leases = _Leases()
    raylet = RayletMetrics("cd34", HandlerTimer("raylet", "cd34"))
    leases.num_granted, leases.num_spillbacks, leases.active = 3, 1, 2
    first = {p.name: p for p in raylet.take_points(leases)}
    assert first[LEASES_GRANTED].value == 3 and first[LEASE_SPILLBACKS].value == 1
    assert first[LEASES_ACTIVE].value == 2 and first[LEASES_ACTIVE].kind == gcs_pb2.METRIC_GAUGE
    assert list(first[LEASES_GRANTED].tag_values) == ["cd34"]
    leases.num_granted, leases.active = 5, 0
    second = {p.name: p for p in raylet.take_points(leases)}
    assert second[LEASES_GRANTED].value == 2 and LEASE_SPILLBACKS not in second
    assert second[LEASES_ACTIVE].value == 0  # the gauge goes every time
    assert raylet.take_points(None) == []


def test_counter_deltas() -> None:
    deltas = CounterDeltas()
    assert deltas.take("c", (), 4) == 4
    assert deltas.take("c", (), 4) == 0
    assert deltas.take("c", ("x",), 1) == 1
    assert deltas.take("c", (), 6) == 2


def test_table_totals_survive_a_restart_from_storage() -> None:
    storage = MemoryStorage()
    table = MetricsTable(100, storage)
    table.report([_counter("rows", 5, src="s3"), _counter("rows", 2, src="s3")])
    timer = HandlerTimer("gcs", boundaries=(1.0,))
    timer.record("GetMetrics", 0.5)
    own = GcsOwnMetrics(TaskEventStore(10), timer)
    table.report(own.take_points())
    assert table.persist() == 2
    assert table.persist() == 0  # nothing changed since
    storage.flush()
    shown = {(p.name, tuple(p.tag_values)): p for p in table.points()}

    # A new GCS on the same storage starts from the stored totals and keeps adding.
    restarted = MetricsTable(100, storage)
    again = {(p.name, tuple(p.tag_values)): p for p in restarted.points()}
    assert again == shown
    restarted.report([_counter("rows", 1, src="s3")])
    timer2 = HandlerTimer("gcs", boundaries=(1.0,))
    timer2.record("GetMetrics", 2.0)
    restarted.report(GcsOwnMetrics(TaskEventStore(10), timer2).take_points())
    after = {(p.name, tuple(p.tag_values)): p for p in restarted.points()}
    assert after[("rows", ("s3",))].value == 8
    rpc = after[(RPC_HANDLER_SECONDS, ("gcs", "", "GetMetrics"))]
    assert list(rpc.bucket_counts) == [1, 1] and rpc.value == pytest.approx(2.5)


def test_unreadable_stored_series_is_skipped() -> None:
    storage = MemoryStorage()
    storage.put(Table.METRICS, storage_key("broken", ()), b"\xff\xff\xff")
    storage.put(Table.METRICS, storage_key("rows", ()), _counter("rows", 3).SerializeToString())
    table = MetricsTable(100, storage)
    assert [(p.name, p.value) for p in table.points()] == [("rows", 3.0)]
    assert table.num_dropped == 1


def test_storage_keys_are_unambiguous() -> None:
    assert storage_key("a", ("b,c",)) != storage_key("a", ("b", "c"))


def test_reports_carry_the_sources_of_the_process() -> None:
    timer = HandlerTimer("worker", "ef56")
    metrics.set_source("unit-rpc", timer.take_points)
    try:
        metrics._RECORDER.take_report()
        Counter("unit_with_source").inc()
        timer.record("PushTask", 0.001)
        report = metrics._RECORDER.take_report()
        assert report is not None
        names = sorted(p.name for p in report.points)
        assert names == [RPC_HANDLER_SECONDS, "unit_with_source"]
        assert metrics._RECORDER.take_report() is None
    finally:
        metrics.set_source("unit-rpc", None)
