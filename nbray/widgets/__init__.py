"""Notebook widgets: progress bars, a live cluster view and the task graph.

::

    import nbray.widgets

    nbray.widgets.progress([f.remote(i) for i in range(100)])   # returns when all are done
    nbray.widgets.ClusterView()                                 # per-node CPU/GPU/memory/store bars
    nbray.widgets.TaskGraph()                                   # live graph of this notebook's tasks
    nbray.widgets.TaskStream()                                  # live Gantt view: a row per worker, a bar per attempt
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClusterView", "ProgressSummary", "TaskGraph", "TaskStream", "progress"]


def __getattr__(name: str) -> Any:
    # ipywidgets and anywidget load only when a widget is used
    if name in ("progress", "ProgressSummary"):
        from nbray.widgets import progress_bar as module

        return getattr(module, name)
    if name == "ClusterView":
        from nbray.widgets.cluster_view import ClusterView

        return ClusterView
    if name == "TaskGraph":
        from nbray.widgets.task_graph import TaskGraph

        return TaskGraph
    if name == "TaskStream":
        from nbray.widgets.task_stream import TaskStream

        return TaskStream
    raise AttributeError(f"module 'nbray.widgets' has no attribute {name!r}")
