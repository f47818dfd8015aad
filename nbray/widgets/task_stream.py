"""``TaskStream``: a live Gantt view of task attempts, as a notebook widget.

Runs in the notebook kernel. Reads task attempts from the state API (one
row per attempt), lays them out one row per worker grouped by node
(``stream_layout``, pure) and sends them to an anywidget view that draws
them on a canvas: bars coloured by function, failed attempts outlined in
red, bars thinner than a pixel merged per pixel column, a time window that
follows now, wheel to zoom, drag to pan, hover for function, duration and
node, click for the attempt's details.
"""

from __future__ import annotations

import html
import pathlib
import time
from collections.abc import Iterable
from typing import Any

import anywidget
import traitlets

import nbray
from nbray.jupyter.settings import get_settings
from nbray.widgets.refresh import Refresher

_CSS = """
.nbray-task-stream-view { font-family: var(--jp-ui-font-family, sans-serif); font-size: 11px; position: relative;
  color: var(--jp-ui-font-color1, #222); }
.nbray-task-stream-view canvas { display: block; border: 1px solid var(--jp-border-color2, #ddd); border-radius: 3px;
  background: var(--jp-layout-color0, #fff); cursor: grab; touch-action: none; }
.nbray-task-stream-tip { position: absolute; pointer-events: none; padding: 2px 6px; border-radius: 3px;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); display: none; }
.nbray-task-stream-legend span.swatch { display: inline-block; width: 9px; height: 9px; margin: 0 3px 0 8px;
  border-radius: 2px; }
"""

# Fields of a row the view needs, in the order of the columns sent to it.
_DETAIL_FIELDS = ("func_or_class_name", "state", "task_id", "attempt_number", "node_id", "worker_pid", "job_id",
                  "context_tag", "start_time_ms", "end_time_ms", "error_type", "error_message")


def short_func_name(func: str) -> str:
    """``mod.f`` -> ``f``; ``mod.Counter.incr`` -> ``Counter.incr``; ``mod.outer.<locals>.f`` -> ``f``."""
    name = func.rsplit("<locals>.", 1)[-1]
    parts = name.split(".")
    if len(parts) < 2:
        return name
    owner = parts[-2]
    return f"{owner}.{parts[-1]}" if owner[:1].isupper() else parts[-1]


def stream_layout(rows: Iterable[dict[str, Any]], node_order: list[str] | None = None) -> dict[str, Any]:
    """Rows (one per worker, grouped by node) and columnar bars for the view.

    Only attempts that started on a worker have a bar. An attempt that
    never ended is running (end -1) unless a later attempt of the same
    task exists: then it failed when the later attempt was created.
    Times are milliseconds since ``t0_ms`` (the earliest start).
    """
    rows = list(rows)
    started = [r for r in rows if r.get("start_time_ms") and r.get("worker_id") and r.get("node_id")]
    later_created: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        later_created.setdefault(r["task_id"], []).append((r["attempt_number"], r.get("creation_time_ms") or 0))
    rank = {node_id: i for i, node_id in enumerate(node_order or [])}
    workers: dict[tuple[str, str], int | None] = {}
    for r in started:
        key = (r["node_id"], r["worker_id"])
        if workers.get(key) is None:
            workers[key] = r.get("worker_pid")
    ordered = sorted(workers, key=lambda k: (rank.get(k[0], len(rank)), k[0], workers[k] or 0, k[1]))
    row_of = {k: i for i, k in enumerate(ordered)}
    t0 = min((r["start_time_ms"] for r in started), default=0)
    funcs: dict[str, int] = {}
    cols: dict[str, list[Any]] = {"row": [], "start": [], "end": [], "func": [], "failed": [], "key": []}
    for r in sorted(started, key=lambda r: r["start_time_ms"]):
        end = r.get("end_time_ms")
        failed = r.get("state") == "FAILED"
        if end is None and r.get("state") not in ("FINISHED", "FAILED"):
            retries = [created for attempt, created in later_created.get(r["task_id"], ())
                       if attempt > r["attempt_number"]]
            if retries:
                end, failed = max(r["start_time_ms"], min(retries)), True
        func = r.get("func_or_class_name") or r.get("name") or "?"
        cols["row"].append(row_of[(r["node_id"], r["worker_id"])])
        cols["start"].append(r["start_time_ms"] - t0)
        cols["end"].append(-1 if end is None else max(end, r["start_time_ms"]) - t0)
        cols["func"].append(funcs.setdefault(func, len(funcs)))
        cols["failed"].append(1 if failed else 0)
        cols["key"].append(f"{r['task_id']}:{r['attempt_number']}")
    first_of_node: set[str] = set()
    out_rows = []
    for node_id, worker_id in ordered:
        out_rows.append({"node_id": node_id, "worker_id": worker_id, "pid": workers[(node_id, worker_id)],
                         "node_first": node_id not in first_of_node})
        first_of_node.add(node_id)
    return {"t0_ms": t0, "rows": out_rows, "funcs": list(funcs), "short_funcs": [short_func_name(f) for f in funcs],
            "bars": cols}


def details_html(row: dict[str, Any]) -> str:
    """The clicked attempt's facts as a small HTML table (what the task graph shows)."""
    cells = []
    for name in _DETAIL_FIELDS:
        value = row.get(name)
        if value in (None, ""):
            continue
        if name.endswith("_time_ms"):
            value = time.strftime("%H:%M:%S", time.localtime(value / 1000)) + f".{int(value) % 1000:03d}"
        cells.append(f"<tr><td><b>{html.escape(name)}</b></td><td>{html.escape(str(value))}</td></tr>")
    start, end = row.get("start_time_ms"), row.get("end_time_ms")
    if start and end:
        cells.append(f"<tr><td><b>ran for</b></td><td>{(end - start) / 1000:.3f} s</td></tr>")
    trace = row.get("error_traceback")
    extra = f"<pre>{html.escape(trace)}</pre>" if trace else ""
    title = html.escape(short_func_name(row.get("func_or_class_name") or row.get("name") or row["task_id"]))
    return f"<b>{title}</b><table>{''.join(cells)}</table>{extra}"


class TaskStream(anywidget.AnyWidget):
    """Live task stream of `job` (default: this notebook's job; "all": every job), optionally one cell's tasks.

    ``cell`` is the notebook cell tag tasks carry (``context_tag``), as
    the panel's cell filter uses. ``window_s`` is the initial width of the
    time window.
    """

    _esm = pathlib.Path(__file__).with_name("task_stream.js")
    _css = _CSS
    layout_data = traitlets.Dict().tag(sync=True)
    now_ms = traitlets.Float(0.0).tag(sync=True)
    window_s = traitlets.Float(60.0).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Unicode("").tag(sync=True)
    num_bars = traitlets.Int(0).tag(sync=True)
    num_failed = traitlets.Int(0).tag(sync=True)
    _refresher: Refresher | None = None

    def __init__(self, job: str | None = None, *, cell: str | None = None, window_s: float = 60.0,
                 refresh_s: float | None = None, live: bool = True, **kwargs: Any) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        super().__init__(window_s=float(window_s), **kwargs)
        settings = get_settings()
        self.job = job if job is not None else (str(nbray.get_runtime_context().get_job_id())
                                                if nbray.is_initialized() else "all")
        self.cell = cell
        self._max_rows = settings.task_graph_max_rows
        self._rows: list[dict[str, Any]] = []
        self._signature: tuple[int, int] | None = None
        self.observe(self._on_select, names="selected")
        self.refresh()
        self._refresher = Refresher(self.refresh, refresh_s or settings.widget_refresh_s, "nbray-task-stream")
        if live:
            self._refresher.start()

    def refresh(self) -> None:
        """Read the attempts again and redraw when they changed (also runs periodically)."""
        from nbray.util.state import list_nodes, list_tasks

        filters = [("job_id", "=", self.job)] if self.job != "all" else []
        rows = list_tasks(filters=filters, limit=self._max_rows, detail=True)
        if self.cell is not None:
            rows = [r for r in rows if r.get("context_tag") == self.cell]
        self.now_ms = time.time() * 1000
        signature = (len(rows), hash(tuple((r["task_id"], r["attempt_number"], r["state"]) for r in rows)))
        if signature == self._signature:
            return
        self._signature = signature
        self._rows = rows
        heads = [n["node_id"] for n in list_nodes() if n.get("is_head_node")]
        layout = stream_layout(rows, heads)
        self.num_bars = len(layout["bars"]["key"])
        self.num_failed = sum(layout["bars"]["failed"])
        self.layout_data = layout

    def stop(self) -> None:
        """Stop refreshing (the view keeps its last picture)."""
        if self._refresher is not None:
            self._refresher.stop()

    def close(self) -> None:
        self.stop()
        super().close()

    def __repr__(self) -> str:
        cell = f", cell={self.cell!r}" if self.cell is not None else ""
        return f"TaskStream(job={self.job!r}{cell}, bars={self.num_bars}, failed={self.num_failed})"

    def _on_select(self, change: dict[str, Any]) -> None:
        task_id, _, attempt = str(change["new"]).partition(":")
        row = next((r for r in self._rows if r["task_id"] == task_id and str(r["attempt_number"]) == attempt), None)
        self.details = details_html(row) if row is not None else ""
