"""Drawing ``tqdm_ray`` bars on the driver.

Runs in the driver (a script, a notebook kernel, or a ``nbray://``
client). The functions that print worker output (``print_logs``, the
notebook's cell router) pass each batch through ``take_bar_reports``,
which removes the bar reports and draws them; bars made on the driver
itself arrive through ``show_driver_bar``. One renderer draws them:

- by default ``TerminalBars`` on stdout, one line per bar, redrawn in
  place with ANSI cursor movements when stdout is a terminal, printed as
  plain lines now and then otherwise;
- in a notebook, whatever the notebook layer registers with
  ``set_renderer`` (ipywidgets bars under the cell that started the
  work). The runtime never imports notebook code: it only calls this hook.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from nbray.common.config import get_config
from nbray.experimental.bar_state import (
    RAY_TQDM_MAGIC,
    BarBoard,
    BarChange,
    BarSource,
    BarState,
    ChangeKind,
    erase,
    extract_reports,
    format_bar,
    plain_line_due,
    redraw,
)
from nbray.protocol import gcs_pb2

logger = logging.getLogger(__name__)

_builtin_print = builtins.print


class BarRenderer(Protocol):
    """Draws the bars' changes (called with the display's lock held)."""

    def draw(self, changes: Sequence[BarChange], board: BarBoard, now_s: float) -> None: ...

    def hide(self) -> None:
        """Other output is about to be written where the bars are."""

    def unhide(self) -> None:
        """The other output was written: show the bars again."""


class TerminalBars:
    """Bars on a text stream (stdout unless told otherwise)."""

    def __init__(self, stream: Any = None, *, in_place: bool | None = None, plain_interval_s: float = 10.0,
                 patch_print: bool = False) -> None:
        self._stream = stream
        self.in_place = _is_terminal(self.stream) if in_place is None else in_place
        self.plain_interval_s = plain_interval_s
        self.patch_print = patch_print
        self._drawn = 0
        self._lines: list[str] = []
        self._hidden = False
        self._last_printed: dict[str, float] = {}

    @property
    def stream(self) -> Any:
        # looked up at each write: tests and shells swap sys.stdout
        return self._stream if self._stream is not None else sys.stdout

    def _width(self) -> int:
        return max(shutil.get_terminal_size((100, 24)).columns - 1, 20)

    def draw(self, changes: Sequence[BarChange], board: BarBoard, now_s: float) -> None:
        width = self._width()
        ascii_only = "utf" not in (getattr(self.stream, "encoding", "") or "").lower()
        if not self.in_place:
            self._draw_plain(changes, now_s, width, ascii_only)
            return
        finished = [format_bar(c.bar, now_s, width, ascii_only=ascii_only)
                    for c in changes if c.kind is ChangeKind.CLOSED]
        self._lines = [format_bar(b, now_s, width, ascii_only=ascii_only) for b in board.live_bars()]
        if board.hidden_count:
            self._lines.append(f"... and {board.hidden_count} more bars")
        if self._hidden:
            self._write(redraw(finished, [], 0))
            return
        self._write(redraw(finished, self._lines, self._drawn))
        self._drawn = len(self._lines)
        if self.patch_print:
            _patch_print()

    def _draw_plain(self, changes: Sequence[BarChange], now_s: float, width: int, ascii_only: bool) -> None:
        lines = []
        for change in changes:
            key = change.bar.key
            if plain_line_due(change.kind, self._last_printed.get(key), now_s, self.plain_interval_s):
                lines.append(format_bar(change.bar, now_s, width, ascii_only=ascii_only) + "\n")
                self._last_printed[key] = now_s
            if change.kind is ChangeKind.CLOSED:
                self._last_printed.pop(key, None)
        if lines:
            self._write("".join(lines))

    def hide(self) -> None:
        if self.in_place and not self._hidden:
            self._hidden = True
            if self._drawn:
                self._write(erase(self._drawn))
                self._drawn = 0

    def unhide(self) -> None:
        if self.in_place and self._hidden:
            self._hidden = False
            if self._lines:
                self._write(redraw([], self._lines, 0))
                self._drawn = len(self._lines)

    def _write(self, text: str) -> None:
        stream = self.stream
        stream.write(text)
        stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class BarDisplay:
    """The driver's bars: the table of open bars and the renderer drawing them."""

    def __init__(self, board: BarBoard, renderer: BarRenderer) -> None:
        self.board = board
        self.renderer = renderer
        # reentrant: print() may be patched to hide the bars, and a
        # renderer may print
        self.lock = threading.RLock()

    def report(self, reports: Sequence[tuple[BarState, BarSource]]) -> None:
        with self.lock:
            now_s = time.monotonic()
            changes = [c for state, source in reports if (c := self.board.apply(state, source, now_s)) is not None]
            if changes:
                self.renderer.draw(changes, self.board, now_s)

    @contextlib.contextmanager
    def other_output(self) -> Iterator[None]:
        """Hide the bars while something else is printed."""
        with self.lock:
            self.renderer.hide()
            try:
                yield
            finally:
                self.renderer.unhide()


_display: list[BarDisplay | None] = [None]
_display_lock = threading.Lock()


def _make_display() -> BarDisplay:
    config = get_config()
    board = BarBoard(config.tqdm_max_bars, config.tqdm_closed_bars_remembered)
    return BarDisplay(board, TerminalBars(plain_interval_s=config.tqdm_plain_print_interval_ms / 1000,
                                          patch_print=config.tqdm_patch_print))


def display() -> BarDisplay:
    """This driver's bar display (made on first use, drawing to stdout)."""
    with _display_lock:
        shown = _display[0]
        if shown is None:
            shown = _display[0] = _make_display()
        return shown


def set_renderer(renderer: BarRenderer | None) -> BarRenderer | None:
    """Draw bars with `renderer` from now on (None: back to stdout); the previous one."""
    shown = display()
    with shown.lock:
        previous = shown.renderer
        if renderer is None:
            config = get_config()
            renderer = TerminalBars(plain_interval_s=config.tqdm_plain_print_interval_ms / 1000,
                                    patch_print=config.tqdm_patch_print)
        shown.renderer = renderer
        return previous


def current_renderer() -> BarRenderer | None:
    shown = _display[0]
    return shown.renderer if shown is not None else None


def show_driver_bar(state: BarState, context_tag: str = "") -> None:
    """Draw a bar made by the driver's own code."""
    display().report([(state, BarSource(pid=state.pid, context_tag=context_tag, on_driver=True))])


def take_bar_reports(batch: gcs_pb2.LogBatch) -> gcs_pb2.LogBatch:
    """Draw the bar reports in a batch of worker output; the rest of it."""
    if not any(RAY_TQDM_MAGIC in entry.text for entry in batch.entries):
        return batch
    rest = gcs_pb2.LogBatch()
    reports: list[tuple[BarState, BarSource]] = []
    for entry in batch.entries:
        if RAY_TQDM_MAGIC not in entry.text:
            rest.entries.append(entry)
            continue
        states, text = extract_reports(entry.text)
        source = BarSource(task_name=entry.task_name, pid=entry.pid, node_ip=entry.node_ip,
                           context_tag=entry.context_tag)
        reports += [(state, source) for state in states]
        if text:
            kept = rest.entries.add()
            kept.CopyFrom(entry)
            kept.text = text
    try:
        display().report(reports)
    except Exception:  # a broken renderer must not cost the rest of the output
        logger.exception("drawing progress bars failed")
    return rest


@contextlib.contextmanager
def bars_hidden() -> Iterator[None]:
    """Around other output written to the terminal: bars (if any) step aside."""
    shown = _display[0]
    if shown is None:
        yield
        return
    with shown.other_output():
        yield


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not break bars drawn in place (Ray's ``safe_print``)."""
    if kwargs.get("file") not in (None, sys.stdout, sys.stderr):
        _builtin_print(*args, **kwargs)
        return
    with bars_hidden():
        _builtin_print(*args, **kwargs)


def _patch_print() -> None:
    # as Ray does once bars are drawn: prints of the driver's own code
    # would otherwise land inside the bar area and be overwritten
    if builtins.print is _builtin_print:
        builtins.print = safe_print
