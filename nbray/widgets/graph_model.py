"""The dynamic task graph as data, its layout and its SVG (pure logic).

Runs in the notebook kernel. Input: task rows of the state API
(``list_tasks(detail=True)``: ``task_id``, ``name``, ``state``,
``parent_task_id``, ``arg_object_ids``, ``return_object_ids`` ...).
Output: a ``Graph`` whose nodes are tasks and objects (data edges
object -> consuming task and task -> returned object; parent edges
parent task -> child task), or, above ``collapse_above`` tasks, one node
per function with its state counts and aggregated edges, so the view stays
small however many tasks run. Layout: layers by topological generation
(networkx), which reads as "time flows left to right" for task graphs.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

STATE_COLORS = {
    "PENDING": "#b0bec5",
    "RUNNING": "#1e88e5",
    "FINISHED": "#43a047",
    "FAILED": "#e53935",
}
OBJECT_COLOR = "#fbc02d"
_STATE_ORDER = ("FAILED", "RUNNING", "PENDING", "FINISHED")


def state_group(state: str) -> str:
    """RUNNING_IN_RAY_GET -> RUNNING, SUBMITTED_TO_WORKER -> PENDING, ..."""
    if state.startswith("RUNNING"):
        return "RUNNING"
    if state in ("FINISHED", "FAILED"):
        return state
    return "PENDING"


@dataclass
class Node:
    id: str
    kind: str  # "task" | "object" | "function"
    label: str
    state: str  # a state group; for functions the dominant one
    counts: dict[str, int] = field(default_factory=dict)
    x: float = 0.0
    y: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # "data" | "parent"
    count: int = 1


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    collapsed: bool
    num_tasks: int
    num_objects: int
    state_counts: dict[str, int]

    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, kind=n.kind, label=n.label, state=n.state, counts=dict(n.counts))
        for e in self.edges:
            g.add_edge(e.source, e.target, kind=e.kind, count=e.count)
        return g


def latest_attempts(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """task_id -> its row with the highest attempt number."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        prev = out.get(row["task_id"])
        if prev is None or row.get("attempt_number", 0) >= prev.get("attempt_number", 0):
            out[row["task_id"]] = row
    return out


def _function_name(row: dict[str, Any]) -> str:
    return str(row.get("func_or_class_name") or row.get("name") or "task")


def build_graph(rows: Iterable[dict[str, Any]], collapse_above: int = 300) -> Graph:
    tasks = latest_attempts(rows)
    counts = Counter(state_group(r["state"]) for r in tasks.values())
    if len(tasks) > collapse_above:
        graph = _collapsed(tasks, counts)
    else:
        graph = _detailed(tasks, counts)
    layout(graph)
    return graph


def _detailed(tasks: dict[str, dict[str, Any]], counts: Counter[str]) -> Graph:
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    producer: dict[str, str] = {}
    for tid, row in tasks.items():
        nodes[tid] = Node(tid, "task", str(row.get("name") or _function_name(row)), state_group(row["state"]),
                          info={"function": _function_name(row), "state": row["state"],
                                "node_id": row.get("node_id"), "worker_pid": row.get("worker_pid"),
                                "error": row.get("error_message")})
        for oid in row.get("return_object_ids") or ():
            producer[oid] = tid
    objects: set[str] = set()
    for tid, row in tasks.items():
        for oid in row.get("return_object_ids") or ():
            objects.add(oid)
            edges.append(Edge(tid, "o:" + oid, "data"))
        for oid in row.get("arg_object_ids") or ():
            objects.add(oid)
            edges.append(Edge("o:" + oid, tid, "data"))
        parent = row.get("parent_task_id")
        if parent and parent in tasks:
            edges.append(Edge(parent, tid, "parent"))
    for oid in objects:
        made_by = producer.get(oid)
        state = nodes[made_by].state if made_by else "FINISHED"
        nodes["o:" + oid] = Node("o:" + oid, "object", oid[:8], state, info={"object_id": oid})
    return Graph(list(nodes.values()), edges, False, len(tasks), len(objects), dict(counts))


def _collapsed(tasks: dict[str, dict[str, Any]], counts: Counter[str]) -> Graph:
    group_of = {tid: _function_name(row) for tid, row in tasks.items()}
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    producer: dict[str, str] = {}
    for tid, row in tasks.items():
        per_group[group_of[tid]][state_group(row["state"])] += 1
        for oid in row.get("return_object_ids") or ():
            producer[oid] = group_of[tid]
    edge_counts: Counter[tuple[str, str, str]] = Counter()
    num_objects = len(producer)
    for tid, row in tasks.items():
        group = group_of[tid]
        for oid in row.get("arg_object_ids") or ():
            source = producer.get(oid)
            if source is not None:
                edge_counts[(source, group, "data")] += 1
        parent = row.get("parent_task_id")
        if parent and parent in group_of:
            edge_counts[(group_of[parent], group, "parent")] += 1
    nodes = []
    for name, c in per_group.items():
        dominant = next(s for s in _STATE_ORDER if c.get(s)) if c else "PENDING"
        nodes.append(Node("f:" + name, "function", name, dominant, counts=dict(c),
                          info={"tasks": sum(c.values())}))
    edges = [Edge("f:" + s, "f:" + t, kind, n) for (s, t, kind), n in edge_counts.items()]
    return Graph(nodes, edges, True, len(tasks), num_objects, dict(counts))


def layout(graph: Graph) -> None:
    """Positions in [0, 1]: x by dependency depth, y spread within a layer."""
    g = nx.DiGraph()
    g.add_nodes_from(n.id for n in graph.nodes)
    g.add_edges_from((e.source, e.target) for e in graph.edges if e.source != e.target)
    condensed = nx.condensation(g)  # cycles (recursion between functions) become one layer
    member_of = condensed.graph["mapping"]
    layer_of_component: dict[int, int] = {}
    for depth, generation in enumerate(nx.topological_generations(condensed)):
        for comp in generation:
            layer_of_component[comp] = depth
    layers: dict[int, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        layers[layer_of_component[member_of[node.id]]].append(node)
    depth = max(layers) if layers else 0
    for d, members in layers.items():
        members.sort(key=lambda n: (n.kind != "task", n.label, n.id))
        for i, node in enumerate(members):
            node.x = (d + 0.5) / (depth + 1)
            node.y = (i + 0.5) / len(members)


# ---- SVG ------------------------------------------------------------------------------------------------------


def to_svg(graph: Graph, width: int = 900, height: int = 420, note: str = "") -> str:
    """The graph as a self-contained SVG (shown live, and as the static fallback);
    `note` is a line under the legend (what the edges can and cannot show)."""
    pad = 30
    pos = {n.id: (pad + n.x * (width - 2 * pad), pad + n.y * (height - 2 * pad)) for n in graph.nodes}
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' "
             f"style='max-height:{height}px;font-family:sans-serif;font-size:10px' class='nbray-task-graph'>",
             "<defs><marker id='nbray-arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='6' "
             "markerHeight='6' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' fill='#90a4ae'/>"
             "</marker></defs>"]
    for e in graph.edges:
        if e.source not in pos or e.target not in pos or e.source == e.target:
            continue
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        dash = " stroke-dasharray='4 3'" if e.kind == "parent" else ""
        stroke = min(1 + e.count ** 0.5 / 4, 6) if graph.collapsed else 1
        parts.append(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='#90a4ae' "
                     f"stroke-width='{stroke:.1f}'{dash} marker-end='url(#nbray-arrow)'>"
                     f"<title>{e.kind} edge{'' if e.count == 1 else f' x{e.count}'}</title></line>")
    for n in graph.nodes:
        x, y = pos[n.id]
        color = STATE_COLORS.get(n.state, "#9e9e9e")
        title = html.escape(_title(n))
        ident = html.escape(n.id, quote=True)
        if n.kind == "object":
            parts.append(f"<rect data-id='{ident}' x='{x - 4:.1f}' y='{y - 4:.1f}' width='8' height='8' "
                         f"fill='{OBJECT_COLOR}' stroke='{color}' stroke-width='1.5'><title>{title}</title></rect>")
        elif n.kind == "function":
            total = sum(n.counts.values())
            radius = 8 + min(total, 10_000) ** 0.5 / 3
            parts.append(f"<g data-id='{ident}'><circle cx='{x:.1f}' cy='{y:.1f}' r='{radius:.1f}' fill='{color}' "
                         f"fill-opacity='0.85'><title>{title}</title></circle>"
                         f"<text x='{x:.1f}' y='{y + radius + 11:.1f}' text-anchor='middle'>"
                         f"{html.escape(n.label[:28])} ({total})</text></g>")
        else:
            parts.append(f"<g data-id='{ident}'><circle cx='{x:.1f}' cy='{y:.1f}' r='7' fill='{color}'>"
                         f"<title>{title}</title></circle>"
                         f"<text x='{x:.1f}' y='{y + 17:.1f}' text-anchor='middle'>{html.escape(n.label[:18])}"
                         "</text></g>")
    parts.append(_legend(graph, width, note))
    parts.append("</svg>")
    return "".join(parts)


def _title(n: Node) -> str:
    if n.kind == "function":
        counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(n.counts.items()))
        return f"{n.label}: {counts}"
    if n.kind == "object":
        return f"object {n.info.get('object_id', n.id)}"
    detail = n.info.get("state", n.state)
    error = n.info.get("error")
    return f"{n.label} [{detail}] task {n.id}" + (f"\n{error}" if error else "")


def _legend(graph: Graph, width: int, note: str = "") -> str:
    items = []
    x = 8
    for state in ("PENDING", "RUNNING", "FINISHED", "FAILED"):
        count = graph.state_counts.get(state, 0)
        items.append(f"<circle cx='{x + 5}' cy='10' r='5' fill='{STATE_COLORS[state]}'/>"
                     f"<text x='{x + 13}' y='14'>{state.lower()} {count}</text>")
        x += 95
    mode = "one node per function" if graph.collapsed else f"{graph.num_objects} objects"
    items.append(f"<text x='{width - 8}' y='14' text-anchor='end'>{graph.num_tasks} tasks, {mode}</text>")
    if note:
        items.append(f"<text x='8' y='28' class='legend-note'>{html.escape(note)}</text>")
    return "<g class='legend'>" + "".join(items) + "</g>"
