"""``TaskGraph``: the live dynamic task graph of a job, as a widget.

Runs in the notebook kernel. Reads task rows from the state API (after the
first read only the rows that changed), builds the graph
(``graph_model``), renders it as SVG and shows it in an anywidget view
with zoom, pan and click-for-details. Above ``collapse_above`` tasks it
shows one node per function, so 10,000 tasks stay responsive.
"""

from __future__ import annotations

import html
import pathlib
from typing import Any

import anywidget
import traitlets

from nbray.jupyter import backends
from nbray.jupyter.settings import get_settings
from nbray.widgets import graph_model
from nbray.widgets.refresh import Refresher

_CSS = """
.nbray-task-graph-view { display: flex; flex-direction: column; gap: 4px; }
.nbray-task-graph-canvas svg { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px;
  background: var(--jp-layout-color0, #fff); color: var(--jp-ui-font-color1, #222); }
.nbray-task-graph-canvas text { fill: currentColor; }
.nbray-task-graph-info { font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; }
"""


class TaskGraph(anywidget.AnyWidget):
    """Live task graph of `job` (default: this notebook's job; "all": every job).

    Tasks are circles coloured by state (grey pending, blue running, green
    finished, red failed), objects small squares; solid edges are data
    (an object consumed or produced), dashed ones parent -> child.
    """

    _esm = pathlib.Path(__file__).with_name("task_graph.js")
    _css = _CSS
    svg = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    num_tasks = traitlets.Int(0).tag(sync=True)
    num_objects = traitlets.Int(0).tag(sync=True)
    collapsed = traitlets.Bool(False).tag(sync=True)
    state_counts = traitlets.Dict().tag(sync=True)

    def __init__(self, job: str | None = None, *, collapse_above: int | None = None,
                 refresh_s: float | None = None, live: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        settings = get_settings()
        self.job = _resolve_job(job)
        self.collapse_above = collapse_above if collapse_above is not None else settings.task_graph_collapse_above
        self._max_rows = settings.task_graph_max_rows
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}
        self._since_ns = 0
        self.graph: graph_model.Graph | None = None
        self.observe(self._on_select, names="selected")
        self.refresh()
        self._refresher = Refresher(self.refresh, refresh_s or settings.widget_refresh_s, "nbray-task-graph")
        if live:
            self._refresher.start()

    def refresh(self) -> None:
        """Read what changed, rebuild and redraw (also runs periodically)."""
        changed = self._read_rows()
        if not changed and self.graph is not None:
            return
        graph = graph_model.build_graph(self._rows.values(), self.collapse_above)
        self.graph = graph
        self.num_tasks, self.num_objects = graph.num_tasks, graph.num_objects
        self.collapsed = graph.collapsed
        self.state_counts = dict(graph.state_counts)
        self.svg = graph_model.to_svg(graph, note=_edge_note(backends.current().name))

    def to_networkx(self) -> Any:
        """The current graph as a networkx DiGraph."""
        if self.graph is None:
            self.refresh()
        assert self.graph is not None
        return self.graph.to_networkx()

    def stop(self) -> None:
        """Stop refreshing (the view keeps its last picture)."""
        self._refresher.stop()

    def close(self) -> None:
        self.stop()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = repr(self)
            data["text/html"] = self.svg  # static fallback (nbconvert, GitHub)
        return bundle

    def __repr__(self) -> str:
        mode = ", one node per function" if self.collapsed else ""
        return f"TaskGraph(job={self.job!r}, tasks={self.num_tasks}, objects={self.num_objects}{mode})"

    # ---- reading -----------------------------------------------------------------------------------------

    def _read_rows(self) -> bool:
        backend = backends.current()
        if backend.name != "nbray":  # other runtimes: whole rows from their state API
            rows = [r for r in backend.list_tasks(limit=self._max_rows) if self.job in ("all", r.get("job_id"))]
            before = dict(self._rows)
            self._rows = {(r["task_id"], int(r.get("attempt_number") or 0)): r for r in rows}
            return self._rows != before
        from nbray.jupyter import runtime_hooks
        from nbray.util.state import list_tasks, task_row

        filters = [("job_id", "=", self.job)] if self.job != "all" else []
        rt = runtime_hooks.runtime()
        gcs = getattr(rt, "gcs", None)
        if gcs is not None:
            from nbray.protocol import gcs_pb2

            request = gcs_pb2.GetTaskEventsRequest(limit=self._max_rows, since_ns=self._since_ns)
            for key, op, value in filters:
                request.filters.add(key=key, op=op, value=value)
            reply = gcs.call("GetTaskEvents", request)
            fresh = [(task_row(t, True), t.updated_ns) for t in reply.tasks]
        else:
            fresh = [(r, 0) for r in list_tasks(filters=filters, limit=self._max_rows, detail=True)]
        for row, updated_ns in fresh:
            self._rows[(row["task_id"], row["attempt_number"])] = row
            self._since_ns = max(self._since_ns, updated_ns + 1)
        return bool(fresh)

    # ---- details --------------------------------------------------------------------------------------------

    def _on_select(self, change: dict[str, Any]) -> None:
        node = next((n for n in (self.graph.nodes if self.graph else []) if n.id == change["new"]), None)
        if node is None:
            self.details = ""
            return
        rows = [(k, v) for k, v in node.info.items() if v not in (None, "")]
        if node.kind == "function":
            rows += [(state.lower(), count) for state, count in sorted(node.counts.items())]
        body = "".join(f"<tr><td><b>{html.escape(str(k))}</b></td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        self.details = f"<b>{html.escape(node.kind)} {html.escape(node.label)}</b><table>{body}</table>"


def _resolve_job(job: str | None) -> str:
    if job is not None:
        return job
    backend = backends.current()
    return backend.job_id() if backend.connected() else "all"


def _edge_note(backend_name: str) -> str:
    if backend_name == "nbray":
        return ""
    return "dashed edges: parent -> child; no data edges (Ray does not record which objects a task read)"
