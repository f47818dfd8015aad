"""Application metrics: Counter, Gauge and Histogram (Ray's ``ray.util.metrics``).

Runs in drivers and workers. Recording only updates a table in this
process (a dict lookup and an add under a lock); a background thread sends
what changed to the GCS every ``metrics_report_period_ms``, as one
``ReportMetrics`` message per period. The GCS sums the reports of every
process in a bounded table, and the dashboard exposes them at ``/metrics``
in the Prometheus text format::

    from nbray.util.metrics import Counter

    rows = Counter("rows_loaded", description="Rows read from the source", tag_keys=("source",))
    rows.set_default_tags({"source": "s3"})
    rows.inc(100)
    rows.inc(5, tags={"source": "local"})

Names follow the Prometheus rules (``[a-zA-Z_:][a-zA-Z0-9_:]*``); a name
or tag key that breaks them raises ``ValueError`` where the metric is
defined. Counters appear with a ``_total`` suffix, histograms as
``_bucket``/``_sum``/``_count`` series, as ``prometheus_client`` writes them.

A process may add its own points to each report with ``set_source`` (a
worker's RPC handling times, nbray/rpc/handler_timing.py): the source keeps
cumulative totals and returns their increase since its previous call.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nbray.common.config import get_config
from nbray.protocol import gcs_pb2

logger = logging.getLogger(__name__)

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_TAG_KEY_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Label names the exposition format reserves or that prometheus_client adds itself.
_RESERVED_TAG_KEYS = frozenset({"le", "quantile"})

# Distinct per-call tag sets a metric remembers the series of.
_MAX_CACHED_TAG_SETS = 1_024


def check_metric_name(name: str) -> None:
    """Raise ValueError unless `name` is a valid Prometheus metric name."""
    if not isinstance(name, str):
        raise TypeError(f"a metric name is a str, got {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: Prometheus names match [a-zA-Z_:][a-zA-Z0-9_:]* "
                         "(letters, digits, '_' and ':', not starting with a digit)")


def check_tag_keys(tag_keys: Iterable[str]) -> tuple[str, ...]:
    """The tag keys as a tuple; ValueError for a key Prometheus does not accept as a label name."""
    if isinstance(tag_keys, str):
        raise TypeError("tag_keys is a tuple of str, not a str")
    keys = tuple(tag_keys)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"tag keys are str, got {type(key).__name__}")
        if not _TAG_KEY_RE.fullmatch(key) or key.startswith("__") or key in _RESERVED_TAG_KEYS:
            raise ValueError(f"invalid tag key {key!r}: label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start "
                             "with '__' and are not 'le' or 'quantile'")
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate tag keys in {keys!r}")
    return keys


def check_boundaries(boundaries: Sequence[float]) -> tuple[float, ...]:
    """Histogram bucket bounds: a non-empty, strictly ascending sequence of positive numbers."""
    bounds = tuple(float(b) for b in boundaries)
    if not bounds:
        raise ValueError("a histogram needs at least one bucket boundary")
    if any(b <= 0 for b in bounds):
        raise ValueError(f"histogram boundaries must be positive, got {list(bounds)}")
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"histogram boundaries must be strictly ascending, got {list(bounds)}")
    return bounds


class Metric:
    """Base of the metric types: a name, a description and tag keys."""

    _kind = gcs_pb2.METRIC_COUNTER

    def __init__(self, name: str, description: str = "", tag_keys: Sequence[str] | None = None) -> None:
        check_metric_name(name)
        self._name = name
        self._description = str(description or "")
        self._tag_keys = check_tag_keys(tag_keys or ())
        self._default_tags: dict[str, str] = {}
        # The series without per-call tags, computed once defaults are known.
        self._default_series: _Series | None = None
        # per-call tags as given -> their series (checked once)
        self._by_tags: dict[tuple[tuple[str, str], ...], _Series] = {}
        _RECORDER.define(self)
        if not self._tag_keys:
            self._default_series = _RECORDER.series(self, ())

    @property
    def info(self) -> dict[str, Any]:
        """Name, description, tag keys and default tags (as Ray's Metric.info)."""
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: Mapping[str, str]) -> Metric:
        """Tag values used when a call leaves them out. ValueError for a key not in tag_keys."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"unknown tag key {key!r} for metric {self._name!r}; tag_keys are {self._tag_keys}")
            if not isinstance(value, str):
                raise TypeError(f"tag values are str, got {type(value).__name__} for {key!r}")
        self._default_tags = dict(default_tags)
        self._by_tags.clear()
        if all(k in self._default_tags for k in self._tag_keys):
            self._default_series = _RECORDER.series(self, tuple(self._default_tags[k] for k in self._tag_keys))
        else:
            self._default_series = None
        return self

    def _series(self, tags: Mapping[str, str] | None) -> _Series:
        if not tags:
            series = self._default_series
            if series is not None:
                return series
            merged: Mapping[str, str] = self._default_tags
        else:
            try:
                found = self._by_tags.get(tuple(tags.items()))
            except TypeError:  # an unhashable tag value: reported below
                found = None
            if found is not None:
                return found
            merged = {**self._default_tags, **tags}
        values = []
        for key in merged:
            if key not in self._tag_keys:
                raise ValueError(f"unknown tag key {key!r} for metric {self._name!r}; tag_keys are {self._tag_keys}")
        for key in self._tag_keys:
            value = merged.get(key)
            if value is None:
                raise ValueError(f"missing value for tag key {key!r} of metric {self._name!r} (pass it in tags= or "
                                 "set_default_tags)")
            if not isinstance(value, str):
                raise TypeError(f"tag values are str, got {type(value).__name__} for {key!r}")
            values.append(value)
        series = _RECORDER.series(self, tuple(values))
        if tags and len(self._by_tags) < _MAX_CACHED_TAG_SETS:
            self._by_tags[tuple(tags.items())] = series
        return series


class Counter(Metric):
    """A value that only goes up (requests served, rows read)."""

    _kind = gcs_pb2.METRIC_COUNTER

    def inc(self, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        """Add `value` (> 0). ValueError for a non-positive value or unknown/missing tags."""
        if not value > 0:
            raise ValueError(f"a counter only goes up: inc() takes a value > 0, got {value!r}")
        series = self._default_series if tags is None else None
        if series is None:
            series = self._series(tags)
        with _RECORDER.lock:
            series.value += value
            series.dirty = True


class Gauge(Metric):
    """A value that goes up and down (queue length, memory in use); the latest set wins."""

    _kind = gcs_pb2.METRIC_GAUGE

    def set(self, value: float, tags: Mapping[str, str] | None = None) -> None:
        series = self._series(tags)
        with _RECORDER.lock:
            series.value = float(value)
            series.dirty = True


class Histogram(Metric):
    """Observations counted into buckets (latencies, sizes)."""

    _kind = gcs_pb2.METRIC_HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries: Sequence[float] | None = None,
                 tag_keys: Sequence[str] | None = None) -> None:
        self._boundaries = check_boundaries(boundaries or ())
        super().__init__(name, description, tag_keys)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": list(self._boundaries)}

    def observe(self, value: float, tags: Mapping[str, str] | None = None) -> None:
        series = self._series(tags)
        index = bisect.bisect_left(self._boundaries, value)
        with _RECORDER.lock:
            assert series.buckets is not None
            series.buckets[index] += 1
            series.value += value
            series.dirty = True


class _Series:
    """What one process recorded for one set of tag values since its last report."""

    __slots__ = ("metric", "tag_values", "value", "buckets", "dirty")

    def __init__(self, metric: Metric, tag_values: tuple[str, ...]) -> None:
        self.metric = metric
        self.tag_values = tag_values
        self.value = 0.0
        self.buckets: list[int] | None = ([0] * (len(metric._boundaries) + 1)
                                          if isinstance(metric, Histogram) else None)
        self.dirty = False

    def take_point(self) -> gcs_pb2.MetricPoint:
        """The report of this series; counters and histograms start again from zero (caller holds the lock)."""
        m = self.metric
        point = gcs_pb2.MetricPoint(name=m._name, kind=m._kind, description=m._description,  # type: ignore[arg-type]
                                    tag_keys=m._tag_keys, tag_values=self.tag_values, value=self.value)
        if self.buckets is not None:
            assert isinstance(m, Histogram)
            point.boundaries.extend(m._boundaries)
            point.bucket_counts.extend(self.buckets)
            self.buckets = [0] * len(self.buckets)
        if m._kind != gcs_pb2.METRIC_GAUGE:
            self.value = 0.0
        self.dirty = False
        return point


class _Recorder:
    """This process's series and the thread that reports them to the GCS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._series: dict[tuple[str, tuple[str, ...]], _Series] = {}
        # name -> (kind, tag keys, boundaries) of the first definition
        self._specs: dict[str, tuple[int, tuple[str, ...], tuple[float, ...]]] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._take_lock = threading.Lock()
        self.num_dropped_series = 0
        # name -> a callable giving the process's own points (RPC handling
        # time) as increases since its last call; it must not block.
        self._sources: dict[str, Callable[[], list[gcs_pb2.MetricPoint]]] = {}

    def define(self, metric: Metric) -> None:
        """Check a definition against earlier ones of the same name (a task may define its
        metrics each time it runs; the definitions must agree)."""
        spec = (metric._kind, metric._tag_keys, getattr(metric, "_boundaries", ()))
        with self.lock:
            known = self._specs.setdefault(metric._name, spec)
        if known != spec:
            raise ValueError(f"metric {metric._name!r} is already defined in this process with another type, "
                             "tag keys or boundaries")

    def series(self, metric: Metric, tag_values: tuple[str, ...]) -> _Series:
        key = (metric._name, tag_values)
        found = self._series.get(key)
        if found is not None:
            return found
        with self.lock:
            found = self._series.get(key)
            if found is None:
                limit = get_config().metrics_max_series_per_process
                if len(self._series) >= limit:
                    self.num_dropped_series += 1
                    raise ValueError(f"this process already records {limit} metric series "
                                     "(metrics_max_series_per_process); use fewer distinct tag values")
                found = self._series[key] = _Series(metric, tag_values)
            if self._thread is None:
                self._start_thread()
        return found

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nbray-metrics", daemon=True)
        self._thread.start()

    def set_source(self, name: str, source: Callable[[], list[gcs_pb2.MetricPoint]] | None) -> None:
        """Send what `source` returns with every report (None removes it); starts the reporting thread."""
        with self.lock:
            if source is None:
                self._sources.pop(name, None)
                return
            self._sources[name] = source
            if self._thread is None:
                self._start_thread()

    def take_report(self) -> gcs_pb2.ReportMetricsRequest | None:
        """The points recorded since the last report, or None when nothing changed."""
        with self._take_lock:  # two takers at once would report a source's increase twice
            with self.lock:
                points = [s.take_point() for s in self._series.values() if s.dirty]
                sources = list(self._sources.values())
            for source in sources:  # outside the recording lock: sources keep their own totals
                points.extend(source())
        return gcs_pb2.ReportMetricsRequest(points=points) if points else None

    def flush(self) -> bool:
        """Send what changed to the GCS; False when no cluster is connected (kept for later)."""
        from nbray.object_ref import _core

        core = _core[0]
        if core is None:
            return False
        report = self.take_report()
        if report is None:
            return True
        gcs = core.gcs
        try:
            if hasattr(gcs, "send"):
                gcs.send("ReportMetrics", report)
            else:  # a remote client (nbray://): its session calls the GCS for it
                gcs.call_async("ReportMetrics", report, callback=_report_failed)
        except (ConnectionError, OSError) as exc:
            _report_failed(None, exc)
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(get_config().metrics_report_period_ms / 1000)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a report must never end the thread
                logger.exception("reporting metrics failed")


    def after_fork(self) -> None:
        # A forked child starts with no reporter thread and a fresh lock (the
        # parent's may have been held by its thread at the fork); what the
        # parent recorded is the parent's to report.
        self.lock = threading.Lock()
        self._take_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._sources = {}
        for series in self._series.values():
            series.take_point()
        if self._series:
            self._start_thread()


def _report_failed(reply: Any, error: BaseException | None) -> None:
    if error is not None:
        logger.debug("a metrics report was not delivered: %s", error)


_RECORDER = _Recorder()
os.register_at_fork(after_in_child=_RECORDER.after_fork)


def set_source(name: str, source: Callable[[], list[gcs_pb2.MetricPoint]] | None) -> None:
    """Report the points `source()` returns (increases since its last call) with this
    process's metrics; a later call with the same name replaces it, None removes it."""
    _RECORDER.set_source(name, source)


def flush() -> bool:
    """Send this process's recorded metrics to the GCS now (otherwise sent every
    ``metrics_report_period_ms``); False when not connected to a cluster."""
    return _RECORDER.flush()
