"""Time spent in RPC handlers, one histogram per method (GCS, raylets, workers, drivers).

Every process that serves RPCs wraps its handlers with ``HandlerTimer.wrap``.
All of a process's series share one metric, ``nbray_rpc_handler_seconds``,
labelled ``component`` (gcs, raylet, worker, driver), ``node_id`` (hex; empty
for the GCS) and ``method``; the GCS adds up the reports of the workers of a
node, so the number of series is bounded by nodes x methods.

Recording is cheap and lock-free: each method owns a fixed list of bucket
counts and a running sum in nanoseconds, and a call only adds to them (two
clock reads, a bisect and two additions; no allocation beyond Python's ints).
The values only grow. ``take_points`` reports the change since its last call
by comparing with a copy it keeps, and never writes what handlers write, so
it may run on another thread than the handlers without losing an update (a
report may see a call's bucket before its sum; the next one carries the rest).
Handlers that answer later (long polls) are timed up to their return.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

from nbray.protocol import gcs_pb2, service_methods

# The metric all components report their handling times under.
RPC_HANDLER_SECONDS = "nbray_rpc_handler_seconds"
RPC_HANDLER_DESCRIPTION = "Time a process spends in each RPC handler, by component, node and method"
RPC_HANDLER_TAG_KEYS = ("component", "node_id", "method")
# Bucket bounds of the histograms, in seconds.
RPC_SECONDS_BOUNDARIES = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

Handler = Callable[[Any, Any, int], Any]


class _MethodTimes:
    """Cumulative times of one method, and what was last reported of them."""

    __slots__ = ("buckets", "total_ns", "sent_buckets", "sent_ns")

    def __init__(self, num_buckets: int) -> None:
        self.buckets = [0] * num_buckets
        self.total_ns = [0]  # a one-item list: the wrapper adds to it without an attribute lookup
        self.sent_buckets = [0] * num_buckets
        self.sent_ns = 0


class HandlerTimer:
    """Handling-time histograms of the methods one process serves."""

    def __init__(self, component: str, node_id: str = "", *,
                 boundaries: tuple[float, ...] = RPC_SECONDS_BOUNDARIES,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        if not component:
            raise ValueError("a HandlerTimer needs a component name (gcs, raylet, worker, driver)")
        if list(boundaries) != sorted(set(boundaries)) or not boundaries:
            raise ValueError(f"boundaries must be non-empty and strictly ascending, got {boundaries!r}")
        self.component = component
        self.node_id = node_id
        self.boundaries = tuple(float(b) for b in boundaries)
        self._bounds_ns = tuple(round(b * 1e9) for b in self.boundaries)
        self._clock = clock
        self._methods: dict[str, _MethodTimes] = {}

    def _times(self, method: str) -> _MethodTimes:
        times = self._methods.get(method)
        if times is None:
            times = self._methods[method] = _MethodTimes(len(self.boundaries) + 1)
        return times

    def record(self, method: str, seconds: float) -> None:
        """Count one handling of `method` that took `seconds` (the wrapper's work, for callers that time themselves)."""
        elapsed_ns = round(seconds * 1e9)
        times = self._times(method)
        times.buckets[bisect.bisect_left(self._bounds_ns, elapsed_ns)] += 1
        times.total_ns[0] += elapsed_ns

    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler`, timed into the histogram of `method`."""
        times = self._times(method)
        buckets = times.buckets
        total_ns = times.total_ns
        bounds_ns = self._bounds_ns
        clock = self._clock
        find = bisect.bisect_left

        def timed(conn: Any, request: Any, rid: int) -> Any:
            start = clock()
            try:
                return handler(conn, request, rid)
            finally:
                elapsed = clock() - start
                buckets[find(bounds_ns, elapsed)] += 1
                total_ns[0] += elapsed

        timed.__wrapped__ = handler  # type: ignore[attr-defined]
        return timed

    def register_service(self, dispatcher: Any, service: str, obj: Any) -> None:
        """Register ``obj.handle_<Method>`` for every method of `service` on `dispatcher`, timed."""
        for m in service_methods(service):
            fn = getattr(obj, "handle_" + m.name, None)
            if fn is not None:
                dispatcher.register(m, self.wrap(m.name, fn))

    def take_points(self) -> list[gcs_pb2.MetricPoint]:
        """One histogram point per method called since the last take: the increase of its buckets and sum."""
        out = []
        for method, times in sorted(self._methods.items()):
            now = list(times.buckets)
            now_ns = times.total_ns[0]
            increase = [a - b for a, b in zip(now, times.sent_buckets)]
            if not any(increase):
                continue
            out.append(gcs_pb2.MetricPoint(
                name=RPC_HANDLER_SECONDS, kind=gcs_pb2.METRIC_HISTOGRAM, description=RPC_HANDLER_DESCRIPTION,
                tag_keys=RPC_HANDLER_TAG_KEYS, tag_values=(self.component, self.node_id, method),
                value=(now_ns - times.sent_ns) / 1e9, boundaries=self.boundaries, bucket_counts=increase))
            times.sent_buckets = now
            times.sent_ns = now_ns
        return out

    def totals(self, method: str) -> tuple[list[int], float]:
        """Per-bucket counts and the sum in seconds of `method` since this timer started."""
        times = self._methods.get(method)
        if times is None:
            return [0] * (len(self.boundaries) + 1), 0.0
        return list(times.buckets), times.total_ns[0] / 1e9


class CounterDeltas:
    """The increase of cumulative counters since they were last reported (for reporters that keep totals)."""

    def __init__(self) -> None:
        self._sent: dict[tuple[str, tuple[str, ...]], float] = {}

    def take(self, name: str, tag_values: tuple[str, ...], total: float) -> float:
        """How much `total` grew since the last take of this series (0.0 when it did not)."""
        key = (name, tag_values)
        increase = total - self._sent.get(key, 0.0)
        if increase > 0:
            self._sent[key] = total
            return increase
        return 0.0


def counter_point(name: str, description: str, value: float, tag_keys: tuple[str, ...] = (),
                  tag_values: tuple[str, ...] = ()) -> gcs_pb2.MetricPoint:
    return gcs_pb2.MetricPoint(name=name, kind=gcs_pb2.METRIC_COUNTER, description=description,
                               tag_keys=tag_keys, tag_values=tag_values, value=value)


def gauge_point(name: str, description: str, value: float, tag_keys: tuple[str, ...] = (),
                tag_values: tuple[str, ...] = ()) -> gcs_pb2.MetricPoint:
    return gcs_pb2.MetricPoint(name=name, kind=gcs_pb2.METRIC_GAUGE, description=description,
                               tag_keys=tag_keys, tag_values=tag_values, value=value)
