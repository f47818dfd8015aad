"""Metrics the GCS keeps: user metrics of every process, and its own (GCS process).

Drivers and workers send what their ``nbray.util.metrics`` recorded since
their last report (``ReportMetrics``: counter increases, histogram bucket
increases, latest gauge values); ``MetricsTable`` adds them up per series
(metric name and tag values), so a counter keeps counting after the worker
that incremented it exited. The table is in memory only and bounded
(``metrics_max_series_in_gcs``): points of new series past the bound, or
points that disagree with the first definition of their metric (another
kind, other tag keys or buckets), are dropped and counted.

``RpcTimer`` measures how long each GcsService handler runs, in a histogram
per method. Handlers that answer later (long polls) are timed up to their
return. No I/O here.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import Any

from nbray.gcs.task_events import TaskEventStore
from nbray.protocol import gcs_pb2, service_methods
from nbray.rpc.connection import Dispatcher

# Bucket bounds of the RPC handling-time histograms, in seconds.
RPC_SECONDS_BOUNDARIES = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

_Spec = tuple[int, tuple[str, ...], tuple[float, ...]]


class _Total:
    __slots__ = ("value", "buckets")

    def __init__(self, num_buckets: int) -> None:
        self.value = 0.0
        self.buckets = [0] * num_buckets


class MetricsTable:
    """Totals of the user metrics of every process, bounded by series."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self._specs: dict[str, tuple[_Spec, str]] = {}
        self._totals: dict[tuple[str, tuple[str, ...]], _Total] = {}
        self.num_dropped = 0

    def __len__(self) -> int:
        return len(self._totals)

    def report(self, points: Iterable[gcs_pb2.MetricPoint]) -> None:
        for p in points:
            spec: _Spec = (p.kind, tuple(p.tag_keys), tuple(p.boundaries))
            known = self._specs.get(p.name)
            if known is None:
                if len(self._totals) >= self.max_series:
                    self.num_dropped += 1
                    continue
                self._specs[p.name] = (spec, p.description)
            elif known[0] != spec:
                self.num_dropped += 1
                continue
            if len(p.tag_values) != len(p.tag_keys) or (
                    p.kind == gcs_pb2.METRIC_HISTOGRAM and len(p.bucket_counts) != len(p.boundaries) + 1):
                self.num_dropped += 1
                continue
            key = (p.name, tuple(p.tag_values))
            total = self._totals.get(key)
            if total is None:
                if len(self._totals) >= self.max_series:
                    self.num_dropped += 1
                    continue
                total = self._totals[key] = _Total(len(p.bucket_counts))
            if p.kind == gcs_pb2.METRIC_GAUGE:
                total.value = p.value
            else:
                total.value += p.value
                if p.kind == gcs_pb2.METRIC_HISTOGRAM:
                    buckets = total.buckets
                    for i, n in enumerate(p.bucket_counts):
                        buckets[i] += n

    def points(self) -> list[gcs_pb2.MetricPoint]:
        out = []
        for (name, tag_values), total in self._totals.items():
            (kind, tag_keys, boundaries), description = self._specs[name]
            out.append(gcs_pb2.MetricPoint(
                name=name, kind=kind, description=description, tag_keys=tag_keys,  # type: ignore[arg-type]
                tag_values=tag_values, value=total.value, boundaries=boundaries, bucket_counts=total.buckets))
        return out


class RpcTimer:
    """Handling time of each method of a service (histograms)."""

    def __init__(self, boundaries: tuple[float, ...] = RPC_SECONDS_BOUNDARIES,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.boundaries = boundaries
        self._clock = clock
        # method name -> [bucket counts..., ] and the sum in seconds
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def record(self, method: str, seconds: float) -> None:
        buckets = self._buckets.get(method)
        if buckets is None:
            buckets = self._buckets[method] = [0] * (len(self.boundaries) + 1)
            self._sums[method] = 0.0
        buckets[bisect.bisect_left(self.boundaries, seconds)] += 1
        self._sums[method] += seconds

    def wrap(self, method: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        clock = self._clock
        record = self.record

        def timed(conn: Any, request: Any, rid: int) -> Any:
            start = clock()
            try:
                return handler(conn, request, rid)
            finally:
                record(method, (clock() - start) / 1e9)

        return timed

    def register_service(self, dispatcher: Dispatcher, service: str, obj: Any) -> None:
        """Register ``obj.handle_<Method>`` for every method of `service`, timed."""
        for m in service_methods(service):
            fn = getattr(obj, "handle_" + m.name, None)
            if fn is not None:
                dispatcher.register(m, self.wrap(m.name, fn))

    def points(self, name: str, description: str) -> list[gcs_pb2.MetricPoint]:
        return [gcs_pb2.MetricPoint(name=name, kind=gcs_pb2.METRIC_HISTOGRAM, description=description,
                                    tag_keys=("method",), tag_values=(method,), value=self._sums[method],
                                    boundaries=self.boundaries, bucket_counts=buckets)
                for method, buckets in sorted(self._buckets.items())]


def counter_point(name: str, description: str, value: float, **tags: str) -> gcs_pb2.MetricPoint:
    return gcs_pb2.MetricPoint(name=name, kind=gcs_pb2.METRIC_COUNTER, description=description,
                               tag_keys=tuple(tags), tag_values=tuple(tags.values()), value=value)


def gcs_points(task_events: TaskEventStore, rpc_timer: RpcTimer) -> list[gcs_pb2.MetricPoint]:
    """The GCS's own metrics: task attempts ended, task events lost, RPC handling time."""
    points = [counter_point("nbray_task_attempts_ended", "Task attempts that reached a final state",
                            float(task_events.num_ended.get(state, 0)), state=gcs_pb2.TaskState.Name(state))
              for state in (gcs_pb2.FINISHED, gcs_pb2.FAILED)]
    points.append(counter_point("nbray_task_events_evicted", "Task attempts evicted from the GCS's event store",
                                float(task_events.num_evicted)))
    points.append(counter_point("nbray_task_events_dropped", "Task events dropped by reporters before the GCS",
                                float(task_events.num_dropped)))
    points.extend(rpc_timer.points("nbray_gcs_rpc_handler_seconds", "Time the GCS spends handling a request"))
    return points
