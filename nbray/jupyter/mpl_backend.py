"""A matplotlib backend for workers: figures appear in the notebook.

Runs in worker processes. ``%%remote`` selects it
(``module://nbray.jupyter.mpl_backend``) before a cell that uses
matplotlib runs; rendering is Agg, and ``plt.show()`` (like the end of a
remote cell) sends each open figure to the notebook as ``image/png``.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

from nbray.jupyter.remote_display import flush_figures

NAME = "module://nbray.jupyter.mpl_backend"


class FigureManager(FigureManagerBase):
    def show(self) -> None:  # type: ignore[override]
        from nbray.jupyter.remote_display import display

        display(self.canvas.figure)


class FigureCanvas(FigureCanvasAgg):
    manager_class = FigureManager  # type: ignore[assignment]


def show(*args: Any, block: Any = None, **kwargs: Any) -> None:
    flush_figures(close=True)
