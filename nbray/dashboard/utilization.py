"""Per-node utilization over time: a bounded history and its route (dashboard process).

Every ``dashboard_utilization_period_ms`` the sampler copies each alive
node's CPU, GPU and memory allocation and object-store use from the
dashboard's node table into a ring buffer per node holding the last
``dashboard_utilization_history_ms``. The panel and ``ClusterView`` draw
these as sparklines.

    GET /api/utilization[?node_id=HEX][&since_ms=N]
        {"period_ms", "history_ms", "now_ms", "series": [names],
         "nodes": [{"node_id", "state", "t_ms": [...], "<series>": [...], ...}]}

Columns rather than rows keep 10 minutes of a node short to encode. The
history is pure (no I/O, the clock is passed in); the sampler only calls
it on the asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nbray.common.config import Config
from nbray.dashboard import params
from nbray.dashboard.handlers import ApiContext, BaseHandler
from nbray.dashboard.security import RequestRefused

# What one sample holds, in this order (after its time).
SERIES = ("cpu_used", "cpu_total", "gpu_used", "gpu_total", "memory_used", "memory_total",
          "store_used_bytes", "store_capacity_bytes")

MAX_EPOCH_MS_DIGITS = 15


def epoch_ms(value: str) -> int:
    """A time in milliseconds since the epoch (``params.int_in`` stops at 9 digits)."""
    if not value.isdigit() or len(value) > MAX_EPOCH_MS_DIGITS:
        raise RequestRefused(400, "expected a time in milliseconds since the epoch")
    return int(value)


UTILIZATION_QUERY: dict[str, params.Validator] = {"node_id": params.node_id, "since_ms": epoch_ms}

Sample = tuple[int, float, float, float, float, float, float, float, float]


def sample_of(now_ms: int, row: Mapping[str, Any]) -> Sample:
    """One sample from a dashboard node row (``NodeTable`` rows)."""
    store = row["object_store"]
    return (now_ms, float(row["cpu"]["used"]), float(row["cpu"]["total"]), float(row["gpu"]["used"]),
            float(row["gpu"]["total"]), float(row["memory"]["used"]), float(row["memory"]["total"]),
            float(store["used_bytes"]), float(store["capacity_bytes"]))


class UtilizationHistory:
    """The last ``history_ms`` of samples per node, at most ``max_nodes`` nodes.

    Each node's samples live in a ring buffer of ``history_ms / period_ms``
    entries (one extra for a late tick), so memory stays bounded however
    long the dashboard runs.
    """

    def __init__(self, period_ms: int, history_ms: int, max_nodes: int) -> None:
        if period_ms <= 0 or history_ms < period_ms or max_nodes <= 0:
            raise ValueError(f"bad utilization bounds: period_ms={period_ms}, history_ms={history_ms}, "
                             f"max_nodes={max_nodes}")
        self.period_ms = period_ms
        self.history_ms = history_ms
        self.max_nodes = max_nodes
        self.capacity = history_ms // period_ms + 1
        self._samples: dict[str, deque[Sample]] = {}
        self._alive: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._samples)

    def record(self, now_ms: int, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append a sample for each alive node; forget nodes with nothing left in the window."""
        for row in rows:
            node_id = row["node_id"]
            alive = row["state"] == "ALIVE"
            self._alive[node_id] = alive
            if not alive:
                continue
            ring = self._samples.get(node_id)
            if ring is None:
                self._make_room()
                ring = self._samples[node_id] = deque(maxlen=self.capacity)
            ring.append(sample_of(now_ms, row))
        oldest = now_ms - self.history_ms
        for node_id in [n for n, ring in self._samples.items() if not ring or ring[-1][0] < oldest]:
            self._forget(node_id)

    def _make_room(self) -> None:
        while len(self._samples) >= self.max_nodes:
            # a dead node first, else the one silent the longest
            victim = min(self._samples, key=lambda n: (self._alive.get(n, False), self._samples[n][-1][0]))
            self._forget(victim)

    def _forget(self, node_id: str) -> None:
        self._samples.pop(node_id, None)
        self._alive.pop(node_id, None)

    def samples(self, node_id: str) -> list[Sample]:
        return list(self._samples.get(node_id, ()))

    def to_json(self, now_ms: int, node_id: str | None = None, since_ms: int = 0) -> dict[str, Any]:
        """The history as columns per node, samples newer than ``since_ms`` (in the window)."""
        after = max(since_ms, now_ms - self.history_ms - 1)
        nodes = []
        for nid, ring in self._samples.items():
            if node_id is not None and nid != node_id:
                continue
            picked = [s for s in ring if s[0] > after]
            entry: dict[str, Any] = {"node_id": nid, "state": "ALIVE" if self._alive.get(nid) else "DEAD",
                                     "t_ms": [s[0] for s in picked]}
            for i, name in enumerate(SERIES, start=1):
                entry[name] = [s[i] for s in picked]
            nodes.append(entry)
        return {"period_ms": self.period_ms, "history_ms": self.history_ms, "now_ms": now_ms,
                "series": list(SERIES), "nodes": nodes}


class UtilizationSampler:
    """Samples the node table into a history on the asyncio loop, every period."""

    def __init__(self, rows: Callable[[], list[dict[str, Any]]], config: Config,
                 clock_ms: Callable[[], int]) -> None:
        self.history = UtilizationHistory(config.dashboard_utilization_period_ms,
                                          config.dashboard_utilization_history_ms,
                                          config.dashboard_utilization_max_nodes)
        self._rows = rows
        self._clock_ms = clock_ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def now_ms(self) -> int:
        return self._clock_ms()

    def sample_now(self) -> None:
        self.history.record(self._clock_ms(), self._rows())

    async def _run(self) -> None:
        period_s = self.history.period_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.sample_now()
            # keep to the period's grid; after a stall, skip the missed ticks
            next_at += period_s
            now = loop.time()
            if next_at < now:
                next_at = now + period_s
            await asyncio.sleep(next_at - now)


class UtilizationHandler(BaseHandler):
    def initialize(self, ctx: ApiContext, sampler: UtilizationSampler) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.sampler = sampler

    def get(self) -> None:
        q = self.query(UTILIZATION_QUERY)
        if q is None:
            return
        now_ms = self.sampler.now_ms()
        self.send_json(self.sampler.history.to_json(now_ms, q.get("node_id"), q.get("since_ms", 0)))


def routes(ctx: ApiContext, sampler: UtilizationSampler) -> list[tuple[str, type[BaseHandler], dict[str, Any]]]:
    return [(r"/api/utilization", UtilizationHandler, {"ctx": ctx, "sampler": sampler})]
