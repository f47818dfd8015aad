"""Metrics the GCS keeps: those of every process, and its own (GCS process).

Drivers, workers and raylets send the increase of what they recorded since
their last report (``ReportMetrics``: counter increases, histogram bucket
increases, latest gauge values); ``MetricsTable`` adds them up per series
(metric name and tag values), so a counter keeps counting after the
process that incremented it exited. The table is bounded
(``metrics_max_series_in_gcs``): points of new series past the bound, or
points that disagree with the first definition of their metric (another
kind, other tag keys or buckets), are dropped and counted.

Surviving a GCS restart. Prometheus reads a counter that goes down as a
reset, so the totals must never go backwards across a restart. The design:

- reporters send increases, never totals, and keep nothing to resend; an
  increase sent while the GCS is away waits in the reporter's GCS client
  queue and is added by the next GCS;
- the GCS writes the series that changed to its storage (``Table.METRICS``,
  the same SQLite or Redis storage as its other tables) every
  ``metrics_report_period_ms`` and, before answering, on every
  ``GetMetrics``; a restarted GCS starts from the stored totals. Storage
  writes leave before the replies of the same loop turn, so a total the
  dashboard was shown is always stored: after a restart it can only be
  equal or higher. What a GCS that died added after its last write (at
  most one period of reports, never shown) is lost, a gap rather than a
  decrease;
- the GCS's own counters (task attempts ended, RPC handling time) go
  through the same table: ``GcsOwnMetrics`` folds their increase in before
  each write, so they are stored and restored like any reported series.

No I/O here beyond the storage object given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from nbray.gcs.storage import GcsStorage, Table
from nbray.gcs.task_events import TaskEventStore
from nbray.protocol import gcs_pb2
from nbray.rpc.handler_timing import CounterDeltas, HandlerTimer, counter_point

logger = logging.getLogger(__name__)

_Spec = tuple[int, tuple[str, ...], tuple[float, ...]]
_Key = tuple[str, tuple[str, ...]]


class _Total:
    __slots__ = ("value", "buckets")

    def __init__(self, num_buckets: int) -> None:
        self.value = 0.0
        self.buckets = [0] * num_buckets


def storage_key(name: str, tag_values: Iterable[str]) -> bytes:
    """The storage key of one series (unambiguous whatever the tag values hold)."""
    return json.dumps([name, *tag_values], separators=(",", ":")).encode()


class MetricsTable:
    """Totals of the metrics of every process, bounded by series, written through to `storage`."""

    def __init__(self, max_series: int, storage: GcsStorage | None = None) -> None:
        self.max_series = max_series
        self._storage = storage
        self._specs: dict[str, tuple[_Spec, str]] = {}
        self._totals: dict[_Key, _Total] = {}
        # Series changed since the last persist().
        self._changed: set[_Key] = set()
        self.num_dropped = 0
        if storage is not None:
            self._restore(storage)

    def __len__(self) -> int:
        return len(self._totals)

    def _accept(self, p: gcs_pb2.MetricPoint) -> _Total | None:
        """The total `p` adds to (created if new), or None when `p` is dropped (and counted)."""
        spec: _Spec = (p.kind, tuple(p.tag_keys), tuple(p.boundaries))
        known = self._specs.get(p.name)
        if known is None:
            if len(self._totals) >= self.max_series:
                self.num_dropped += 1
                return None
            self._specs[p.name] = (spec, p.description)
        elif known[0] != spec:
            self.num_dropped += 1
            return None
        if len(p.tag_values) != len(p.tag_keys) or (
                p.kind == gcs_pb2.METRIC_HISTOGRAM and len(p.bucket_counts) != len(p.boundaries) + 1):
            self.num_dropped += 1
            return None
        key = (p.name, tuple(p.tag_values))
        total = self._totals.get(key)
        if total is None:
            if len(self._totals) >= self.max_series:
                self.num_dropped += 1
                return None
            total = self._totals[key] = _Total(len(p.bucket_counts))
        self._changed.add(key)
        return total

    def report(self, points: Iterable[gcs_pb2.MetricPoint]) -> None:
        """Add reported increases (counters, histograms) and latest values (gauges)."""
        for p in points:
            total = self._accept(p)
            if total is None:
                continue
            if p.kind == gcs_pb2.METRIC_GAUGE:
                total.value = p.value
            else:
                total.value += p.value
                if p.kind == gcs_pb2.METRIC_HISTOGRAM:
                    buckets = total.buckets
                    for i, n in enumerate(p.bucket_counts):
                        buckets[i] += n

    def _restore(self, storage: GcsStorage) -> None:
        for stored, data in storage.scan(Table.METRICS).items():
            point = gcs_pb2.MetricPoint()
            try:
                point.ParseFromString(data)
            except DecodeError:
                # One unreadable series must not keep the GCS from starting; the
                # others are restored and this one starts again from its next report.
                logger.warning("a stored metric series (key %r) could not be read; it starts again from zero",
                               stored)
                self.num_dropped += 1
                continue
            total = self._accept(point)
            if total is not None:
                total.value = point.value
                total.buckets = list(point.bucket_counts)
        self._changed.clear()

    def persist(self) -> int:
        """Write the series changed since the last call to the storage (sent at the end of the
        loop turn, before its replies); returns how many."""
        if self._storage is None or not self._changed:
            self._changed.clear()
            return 0
        for key in self._changed:
            point = self._point(key, self._totals[key])
            self._storage.put(Table.METRICS, storage_key(*key), point.SerializeToString())
        n = len(self._changed)
        self._changed.clear()
        return n

    def _point(self, key: _Key, total: _Total) -> gcs_pb2.MetricPoint:
        name, tag_values = key
        (kind, tag_keys, boundaries), description = self._specs[name]
        return gcs_pb2.MetricPoint(
            name=name, kind=kind, description=description, tag_keys=tag_keys,  # type: ignore[arg-type]
            tag_values=tag_values, value=total.value, boundaries=boundaries, bucket_counts=total.buckets)

    def points(self) -> list[gcs_pb2.MetricPoint]:
        return [self._point(key, total) for key, total in self._totals.items()]


class GcsOwnMetrics:
    """The increase of the GCS's own counters since the last take: task attempts ended,
    task events evicted and dropped, and its RPC handling times (``component="gcs"``)."""

    def __init__(self, task_events: TaskEventStore, rpc_timer: HandlerTimer) -> None:
        self.task_events = task_events
        self.rpc_timer = rpc_timer
        self._deltas = CounterDeltas()

    def _counter(self, out: list[gcs_pb2.MetricPoint], name: str, description: str, total: float,
                 tag_keys: tuple[str, ...] = (), tag_values: tuple[str, ...] = ()) -> None:
        increase = self._deltas.take(name, tag_values, total)
        if increase:
            out.append(counter_point(name, description, increase, tag_keys, tag_values))

    def take_points(self) -> list[gcs_pb2.MetricPoint]:
        out: list[gcs_pb2.MetricPoint] = []
        events = self.task_events
        for state in (gcs_pb2.FINISHED, gcs_pb2.FAILED):
            self._counter(out, "nbray_task_attempts_ended", "Task attempts that reached a final state",
                          float(events.num_ended.get(state, 0)), ("state",), (gcs_pb2.TaskState.Name(state),))
        self._counter(out, "nbray_task_events_evicted", "Task attempts evicted from the GCS's event store",
                      float(events.num_evicted))
        self._counter(out, "nbray_task_events_dropped", "Task events dropped by reporters before the GCS",
                      float(events.num_dropped))
        out.extend(self.rpc_timer.take_points())
        return out
