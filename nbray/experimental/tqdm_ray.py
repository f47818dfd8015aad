"""``tqdm`` for tasks and actors, drawn by the driver (Ray's ``ray.experimental.tqdm_ray``).

Runs wherever user code does. In a task or actor a bar writes its state
as one line of the worker's stdout (``bar_state.encode_report``); the
driver takes those lines out of the worker output and draws the bars: one
line per bar in a terminal, an ipywidgets bar under the submitting cell in
a notebook. Reports are throttled to one per ``flush_interval_s`` per bar
(creation and close always report). On the driver itself a bar is drawn
directly. The ``tqdm`` package is not needed.

::

    from nbray.experimental.tqdm_ray import tqdm

    @nbray.remote
    def work(n):
        for _ in tqdm(range(n), desc="work"):
            ...
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

from nbray.common.config import get_config
from nbray.experimental import bar_display
from nbray.experimental.bar_state import DEFAULT_UNIT, RAY_TQDM_MAGIC, BarState, encode_report

__all__ = ["RAY_TQDM_MAGIC", "safe_print", "tqdm"]

T = TypeVar("T")

safe_print = bar_display.safe_print


def _running_in_worker() -> bool:
    from nbray.object_ref import _core

    core = _core[0]
    return core is not None and bool(core.is_worker)


def _node_ip() -> str:
    from nbray.object_ref import _core

    core = _core[0]
    return str(getattr(core, "node_ip", "") or "")


def _cell_tag() -> str:
    """The notebook cell whose code runs now (driver side; empty elsewhere)."""
    from nbray.worker import context

    ctx = context.current_or_none()
    return ctx.context_tag if ctx is not None else ""


class tqdm(Generic[T]):  # noqa: N801 - Ray's name
    """A progress bar that works inside tasks and actors.

    Supports the part of tqdm's interface that Ray's ``tqdm_ray`` does:
    ``tqdm(iterable=None, desc=None, total=None, unit=None, position=None,
    flush_interval_s=None)``, ``update(n)``, ``set_description(desc)``,
    ``refresh()``, ``close()``, ``total``, and iteration (the bar closes
    when the iteration ends). ``flush_interval_s`` is the least time
    between two reports (default ``NBRAY_TQDM_FLUSH_INTERVAL_MS``, 1 s).
    """

    def __init__(self, iterable: Iterable[T] | None = None, desc: str | None = None, total: float | None = None,
                 unit: str | None = None, position: int | None = None,
                 flush_interval_s: float | None = None) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if flush_interval_s is None:
            flush_interval_s = get_config().tqdm_flush_interval_ms / 1000
        if flush_interval_s < 0:
            raise ValueError(f"flush_interval_s must be >= 0, got {flush_interval_s}")
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or DEFAULT_UNIT
        self._position = position or 0
        self._n: float = 0
        self._closed = False
        self._bar_format: str | None = None
        self._uuid = uuid.uuid4().hex
        self._pid = os.getpid()
        self._in_worker = _running_in_worker()
        self._ip = _node_ip()
        self._cell_tag = "" if self._in_worker else _cell_tag()
        self._flush_interval_s = flush_interval_s
        self._last_report_s = 0.0
        self._started_s = time.monotonic()
        self._report(force=True)  # the bar shows as soon as it exists, as tqdm's does

    # ---- tqdm's interface ---------------------------------------------------------------------------

    def update(self, n: float = 1) -> None:
        """Advance by `n` (reported at most once per flush interval)."""
        if self._closed:
            return
        self._n += n
        self._report()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the label (sent with the next report, as Ray's is;
        `refresh` is there for tqdm's signature)."""
        self._desc = desc or ""
        self._report()

    def set_bar_format(self, bar_format: str | None) -> None:
        """A tqdm ``bar_format`` (``{desc}``, ``{n_fmt}``, ``{total_fmt}``, ``{percentage}``, ``{bar}``, ...)."""
        self._bar_format = bar_format
        self._report()

    def refresh(self) -> None:
        """Report the current state now."""
        self._report(force=True)

    def close(self) -> None:
        """Finish the bar: its final state is reported and it leaves the live display."""
        if self._closed:
            return
        self._closed = True
        self._report(force=True)

    @property
    def total(self) -> float | None:
        return self._total

    @total.setter
    def total(self, total: float | None) -> None:
        self._total = total

    @property
    def n(self) -> float:
        return self._n

    @property
    def desc(self) -> str:
        return self._desc

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise ValueError("this tqdm has no iterable to iterate over; pass one, or call update() instead")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> tqdm[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        # as tqdm does: a bar dropped unclosed (its task raised) is finished,
        # so the driver does not keep showing it as running
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except (AttributeError, ValueError, OSError):  # interpreter exit: stdout gone or closed
                pass

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"tqdm_ray.tqdm(desc={self._desc!r}, n={self._n}, total={total}, closed={self._closed})"

    # ---- reporting ----------------------------------------------------------------------------------

    def _state(self) -> BarState:
        return BarState(uuid=self._uuid, n=self._n, total=self._total, desc=self._desc, unit=self._unit,
                        position=self._position, closed=self._closed, pid=self._pid, ip=self._ip,
                        bar_format=self._bar_format, elapsed_s=time.monotonic() - self._started_s)

    def _report(self, force: bool = False) -> None:
        """Send the state if `force`, or if the flush interval has passed."""
        now_s = time.monotonic()
        if not force and now_s - self._last_report_s < self._flush_interval_s:
            return
        self._last_report_s = now_s
        state = self._state()
        if self._in_worker:
            # one write of a whole line: the log router never splits it
            sys.stdout.write(encode_report(state))
        else:
            bar_display.show_driver_bar(state, self._cell_tag)
