"""``ClusterView``: live per-node CPU, GPU, memory and object-store bars.

Runs in the notebook kernel. Reads the GCS cluster status (per-node totals,
availability and store use) every ``widget_refresh_s`` on a background
thread and updates one row of progress bars per alive node.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import ipywidgets as w

from nbray.jupyter import backends, runtime_hooks
from nbray.jupyter.settings import get_settings
from nbray.widgets.refresh import Refresher
from nbray.widgets.sparkline import sparklines_html

# Utilization history shown as sparklines per node.
HISTORY_S = 600.0

_BARS = (("CPU", "CPU"), ("GPU", "GPU"), ("memory", "memory"), ("object store", "store"))


def _fmt(kind: str, value: float) -> str:
    if kind in ("memory", "store"):
        return f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 1e6:.0f} MB"
    return f"{value:g}"


class _NodeRow:
    def __init__(self, node_id: str, period_s: float = 1.0) -> None:
        self.title = w.HTML(layout=w.Layout(width="220px"))
        self.bars: dict[str, w.FloatProgress] = {}
        self.labels: dict[str, w.Label] = {}
        cells: list[w.Widget] = [self.title]
        for description, key in _BARS:
            bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description=description,
                                  style={"description_width": "80px"}, layout=w.Layout(width="230px"))
            label = w.Label(layout=w.Layout(width="120px"))
            self.bars[key], self.labels[key] = bar, label
            cells.append(w.VBox([bar, label]))
        # (CPU, GPU, memory, store) used per refresh, for the last HISTORY_S
        self.period_s = period_s
        self.history: deque[tuple[float, float, float, float]] = deque(maxlen=max(2, int(HISTORY_S / period_s)))
        self.sparks = w.HTML()
        self.box = w.VBox([w.HBox(cells), self.sparks])
        self.node_id = node_id

    def update(self, node: Any) -> None:
        total, avail = dict(node.total), dict(node.available)
        self.title.value = (f"<b>{self.node_id[:12]}</b><br><span style='font-size:11px'>{node.node_ip}"
                            f"{' · ' + str(node.pending) + ' queued' if node.pending else ''}</span>")
        used_total = {key: (total.get(name, 0.0) - avail.get(name, 0.0), total.get(name, 0.0))
                      for name, key in (("CPU", "CPU"), ("GPU", "GPU"), ("memory", "memory"))}
        used_total["store"] = (float(node.object_store_used_bytes), float(node.object_store_bytes))
        for key, (used, cap) in used_total.items():
            bar = self.bars[key]
            bar.max = max(cap, 1e-9)
            bar.value = min(max(used, 0.0), bar.max)
            bar.bar_style = "danger" if cap and used / cap > 0.9 else ("warning" if cap and used / cap > 0.7 else "info")
            text = f"{_fmt(key, used)} / {_fmt(key, cap)}" if cap else "none"
            if key == "store" and node.object_store_spilled_bytes:
                text += f" (+{_fmt(key, node.object_store_spilled_bytes)} spilled)"
            self.labels[key].value = text
        self.history.append(tuple(max(used_total[k][0], 0.0) for k in ("CPU", "GPU", "memory", "store")))
        series = [(label, [s[i] for s in self.history], used_total[key][1])
                  for i, (label, key) in enumerate((("CPU", "CPU"), ("GPU", "GPU"), ("memory", "memory"),
                                                    ("store", "store"))) if key != "GPU" or used_total[key][1] > 0]
        self.sparks.value = sparklines_html(series, self.history.maxlen or 2, self.period_s)


class ClusterView(w.VBox):
    """Live resource use of every alive node."""

    def __init__(self, refresh_s: float | None = None, live: bool = True, **kwargs: Any) -> None:
        self.header = w.HTML()
        self.rows: dict[str, _NodeRow] = {}
        self._period_s = refresh_s or get_settings().widget_refresh_s
        super().__init__([self.header], **kwargs)
        self.refresh()
        self._refresher = Refresher(self.refresh, refresh_s or get_settings().widget_refresh_s, "nbray-cluster-view")
        if live:
            self._refresher.start()

    def refresh(self) -> None:
        backend = backends.current()
        if backend.name != "nbray":  # other runtimes: the backend's node list
            alive: dict[str, Any] = {n.node_id: n for n in backend.nodes()}
            demands: list[Any] = []
        else:
            status = runtime_hooks.cluster_status()
            alive, demands = {n.node_id.hex(): n for n in status.nodes}, list(status.demands)
        for node_id in list(self.rows):
            if node_id not in alive:
                del self.rows[node_id]
        for node_id, node in alive.items():
            row = self.rows.get(node_id)
            if row is None:
                row = self.rows[node_id] = _NodeRow(node_id, self._period_s)
            row.update(node)
        pending = f", {len(demands)} pending demand(s)" if demands else ""
        self.header.value = f"<b>{'nbray' if backend.name == 'nbray' else 'Ray'} cluster</b>: {len(alive)} node(s){pending}"
        children = (self.header, *(self.rows[n].box for n in sorted(self.rows)))
        if tuple(self.children) != children:  # type: ignore[has-type]
            self.children = children

    def stop(self) -> None:
        self._refresher.stop()

    def close(self) -> None:
        self.stop()
        super().close()
