"""``tqdm_ray`` bars as ipywidgets, under the cell that started the work.

Runs in the notebook kernel. Loading the nbray extension registers
``NotebookBars`` as the driver's bar renderer (``bar_display.set_renderer``);
the runtime calls it with each change of a bar. A bar becomes an HBox
(description, ``IntProgress``, counts and rate) shown under the cell whose
tag the bar's task carries, updated in place, and left showing its final
state when closed (green, or red when it stopped short of its total), as
tqdm's notebook bars do.

The changes arrive on nbray's I/O thread. The ``display_data`` goes out
with the cell's parent header through the cell router; ipywidgets' own
comm messages take their parent from ipykernel's ``_shell_parent`` context
variable, so each bar's widget calls run in a private context where that
variable names the cell: frontends and nbclient then file the widget
model's messages under the same cell, even while another cell runs.
Without ipywidgets, bars are printed into the cell as text lines.
"""

from __future__ import annotations

import contextvars
import html
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from nbray.common.config import get_config
from nbray.experimental.bar_state import (
    Bar,
    BarBoard,
    BarChange,
    ChangeKind,
    bar_fields,
    format_bar,
    plain_line_due,
)

if TYPE_CHECKING:
    from nbray.jupyter.output import CellOutputRouter

logger = logging.getLogger(__name__)

TEXT_LINE_WIDTH = 100


class _BarView:
    """One bar's widgets, and the context its widget messages are sent from."""

    def __init__(self, widgets: Any, context: contextvars.Context) -> None:
        self.context = context
        self.label = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=1, value=0)
        self.stats = widgets.HTML()
        self.box = widgets.HBox([self.label, self.progress, self.stats])

    def show(self, bar: Bar, now_s: float) -> None:
        f = bar_fields(bar, now_s)
        state = bar.state
        total = state.total
        with self.progress.hold_sync():
            if total:
                self.progress.max = max(int(total), 1)
                self.progress.value = min(max(int(state.n), 0), self.progress.max)
            else:  # unknown total: a full bar that only counts
                self.progress.max = 1
                self.progress.value = 1
            if state.closed:
                self.progress.bar_style = "danger" if total and state.n < total else "success"
            elif not total:
                self.progress.bar_style = "info"
        self.label.value = html.escape(f["desc"])
        counts = f"{f['n_fmt']}/{f['total_fmt']}" if total else f"{f['n_fmt']}{f['unit']}"
        self.stats.value = html.escape(f"{counts} [{f['elapsed']}<{f['remaining']}, {f['rate_fmt']}]")


class NotebookBars:
    """The bar renderer of a notebook kernel (see the module docstring)."""

    def __init__(self, router: CellOutputRouter) -> None:
        self.router = router
        self._views: dict[str, _BarView] = {}
        self._widgets: Any = None
        self._text_printed: dict[str, float] = {}
        self._text_interval_s = get_config().tqdm_plain_print_interval_ms / 1000

    def draw(self, changes: Sequence[BarChange], board: BarBoard, now_s: float) -> None:
        widgets = self._load_widgets()
        for change in changes:
            if widgets is None:
                self._draw_text(change, now_s)
                continue
            key = change.bar.key
            view = self._views.get(key)
            if view is None:
                view = self._open(widgets, change.bar)
                if change.kind is not ChangeKind.CLOSED:
                    self._views[key] = view
            view.context.run(view.show, change.bar, now_s)
            if change.kind is ChangeKind.CLOSED:
                self._views.pop(key, None)

    def hide(self) -> None:
        """Widgets live in their own output area: nothing to step aside from."""

    def unhide(self) -> None:
        pass

    # ---- widgets -------------------------------------------------------------------------------------------

    def _load_widgets(self) -> Any:
        if self._widgets is None:
            try:
                import ipywidgets
            except ImportError:
                logger.warning("ipywidgets is not installed: tqdm_ray bars are printed as text")
                self._widgets = False
            else:
                self._widgets = ipywidgets
        return self._widgets or None

    def _open(self, widgets: Any, bar: Bar) -> _BarView:
        parent = self._parent_of(bar)
        context = contextvars.Context()
        shell_parent = getattr(self.router.kernel, "_shell_parent", None)
        if parent and isinstance(shell_parent, ContextVar):
            context.run(shell_parent.set, {"header": parent})
        view: _BarView = context.run(_BarView, widgets, context)
        bundle = view.box._repr_mimebundle_()
        self.router.send("display_data", {"data": bundle, "metadata": {}, "transient": {}}, parent)
        return view

    def _parent_of(self, bar: Bar) -> dict[str, Any]:
        target = self.router.target_for(bar.source.context_tag) if bar.source.context_tag else None
        target = target or self.router.current
        return target.parent if target is not None else {}

    # ---- without ipywidgets ----------------------------------------------------------------------------------

    def _draw_text(self, change: BarChange, now_s: float) -> None:
        key = change.bar.key
        if plain_line_due(change.kind, self._text_printed.get(key), now_s, self._text_interval_s):
            line = format_bar(change.bar, now_s, TEXT_LINE_WIDTH) + "\n"
            self.router.send("stream", {"name": "stdout", "text": line}, self._parent_of(change.bar))
            self._text_printed[key] = now_s
        if change.kind is ChangeKind.CLOSED:
            self._text_printed.pop(key, None)


def install(router: CellOutputRouter) -> NotebookBars:
    """Make `router`'s kernel draw this driver's tqdm_ray bars as widgets."""
    from nbray.experimental import bar_display

    bars = NotebookBars(router)
    bar_display.set_renderer(bars)
    return bars


def uninstall(bars: NotebookBars) -> None:
    """Back to drawing bars on stdout, if `bars` still draws them."""
    from nbray.experimental import bar_display

    if bar_display.current_renderer() is bars:
        bar_display.set_renderer(None)
