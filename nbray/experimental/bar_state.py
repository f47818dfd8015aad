"""Progress bars of ``tqdm_ray``: the report format and the driver's bar table.

Pure logic, no I/O. Runs in workers (encoding reports) and on the driver
(decoding them, keeping the set of open bars, formatting their lines).

A bar in a task reports its whole state as one line of the worker's
stdout, Ray's format: a JSON object whose ``__magic_token__`` is
``RAY_TQDM_MAGIC``. Those lines reach the driver through the ordinary log
channel (``raylet/log_router.py``), tagged with the task, worker pid and
notebook cell; the driver takes them out of the output and draws the bars
instead of printing the JSON.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

RAY_TQDM_MAGIC = "__ray_tqdm_magic_token__"
_MAGIC_KEY = "__magic_token__"
# Every report starts with this (the magic is the first key), so a report
# written after a partial line of other output is still found.
_REPORT_START = json.dumps({_MAGIC_KEY: RAY_TQDM_MAGIC})[:-1]

DEFAULT_UNIT = "it"
MAX_BAR_CELLS = 40
"""The widest a bar gets in a line (the rest of a wide terminal stays empty)."""
MIN_BAR_CELLS = 4


@dataclass(frozen=True)
class BarState:
    """What one tqdm object reports: its whole state, each time."""

    uuid: str
    n: float
    """Progress so far (Ray's ``x``)."""
    total: float | None = None
    desc: str = ""
    unit: str = DEFAULT_UNIT
    position: int = 0
    closed: bool = False
    pid: int = 0
    ip: str = ""
    bar_format: str | None = None
    elapsed_s: float | None = None
    """Seconds since the bar was made, by the reporter's clock (not in
    Ray's reports; the driver then measures from the first report)."""

    def to_wire(self) -> dict[str, Any]:
        return {_MAGIC_KEY: RAY_TQDM_MAGIC, "x": self.n, "pos": self.position, "desc": self.desc,
                "total": self.total, "unit": self.unit, "ip": self.ip, "pid": self.pid,
                "uuid": self.uuid, "closed": self.closed, "bar_format": self.bar_format,
                "elapsed_s": self.elapsed_s}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> BarState:
        """Raises ValueError when `data` is not a bar report."""
        if data.get(_MAGIC_KEY) != RAY_TQDM_MAGIC or not isinstance(data.get("uuid"), str):
            raise ValueError("not a tqdm_ray report")
        try:
            total, elapsed = data.get("total"), data.get("elapsed_s")
            return cls(uuid=data["uuid"], n=_number(data.get("x", 0)),
                       total=None if total is None else _number(total), desc=str(data.get("desc") or ""),
                       unit=str(data.get("unit") or DEFAULT_UNIT), position=int(data.get("pos") or 0),
                       closed=bool(data.get("closed")), pid=int(data.get("pid") or 0), ip=str(data.get("ip") or ""),
                       bar_format=None if data.get("bar_format") is None else str(data["bar_format"]),
                       elapsed_s=None if elapsed is None else _number(elapsed))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed tqdm_ray report: {exc}") from exc


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def encode_report(state: BarState) -> str:
    """The stdout line (ending in a newline) that reports `state`."""
    return json.dumps(state.to_wire()) + "\n"


def extract_reports(text: str) -> tuple[list[BarState], str]:
    """Split worker output into the bar reports it carries and the rest.

    A line holding the magic but no readable report is dropped rather than
    printed: the magic only appears in lines that ``tqdm_ray`` wrote.
    """
    if RAY_TQDM_MAGIC not in text:
        return [], text
    reports: list[BarState] = []
    rest: list[str] = []
    for line in text.splitlines(keepends=True):
        start = line.find(_REPORT_START)
        if start < 0:
            if RAY_TQDM_MAGIC not in line:
                rest.append(line)
            continue
        if start:
            rest.append(line[:start])  # a partial line written just before the report
        try:
            data = json.loads(line[start:])
            reports.append(BarState.from_wire(data))
        except ValueError:
            continue
    return reports, "".join(rest)


# ---- the driver's table of bars ---------------------------------------------------------------------


@dataclass(frozen=True)
class BarSource:
    """Who reported a bar: the task's output tags (empty on the driver)."""

    task_name: str = ""
    pid: int = 0
    node_ip: str = ""
    context_tag: str = ""
    """The notebook cell that started the work."""
    on_driver: bool = False

    def prefix(self) -> str:
        """How the bar's line is labelled, like the task's printed lines."""
        if self.on_driver:
            return ""
        label = f"({self.task_name or 'worker'} pid={self.pid}"
        if self.node_ip and self.node_ip not in ("127.0.0.1", "localhost"):
            label += f", ip={self.node_ip}"
        return label + ") "


@dataclass(frozen=True)
class Bar:
    """A bar as the driver knows it."""

    state: BarState
    source: BarSource
    opened_s: float
    """Driver clock when the bar was first reported."""
    updated_s: float
    group: int
    """Bars of one process are drawn together, processes in order of appearance."""
    serial: int

    @property
    def key(self) -> str:
        return self.state.uuid


class ChangeKind(enum.Enum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


@dataclass(frozen=True)
class BarChange:
    kind: ChangeKind
    bar: Bar


class BarBoard:
    """The open bars of a driver: reports in, changes out.

    At most `max_live_bars` are open at once; reports of further bars are
    counted as hidden until a place frees up. Closed bars are remembered
    (up to `closed_remembered`) so that a report arriving after the close
    does not reopen one.
    """

    def __init__(self, max_live_bars: int, closed_remembered: int) -> None:
        assert max_live_bars > 0 and closed_remembered >= 0
        self.max_live_bars = max_live_bars
        self.closed_remembered = closed_remembered
        self._live: dict[str, Bar] = {}
        self._hidden: OrderedDict[str, None] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._serial = 0

    @property
    def hidden_count(self) -> int:
        return len(self._hidden)

    def live_bars(self) -> list[Bar]:
        """Open bars in drawing order."""
        return sorted(self._live.values(), key=lambda b: (b.group, b.state.position, b.serial))

    def apply(self, state: BarState, source: BarSource, now_s: float) -> BarChange | None:
        """Take one report; the change to draw, or None when nothing shows."""
        key = state.uuid
        if key in self._closed:
            return None
        bar = self._live.get(key)
        if bar is None:
            if len(self._live) >= self.max_live_bars and not state.closed:
                self._hidden[key] = None
                while len(self._hidden) > self.max_live_bars * 100:  # bound even a flood of bars
                    self._hidden.popitem(last=False)
                return None
            self._hidden.pop(key, None)
            bar = self._open(state, source, now_s)
            if not state.closed:
                self._live[key] = bar
                return BarChange(ChangeKind.OPENED, bar)
        else:
            bar = replace(bar, state=state, updated_s=now_s)
        if state.closed:
            self._live.pop(key, None)
            self._remember_closed(key)
            return BarChange(ChangeKind.CLOSED, bar)
        self._live[key] = bar
        return BarChange(ChangeKind.UPDATED, bar)

    def _open(self, state: BarState, source: BarSource, now_s: float) -> Bar:
        self._serial += 1
        same_process = [b.group for b in self._live.values()
                        if (b.source.node_ip, b.source.pid) == (source.node_ip, source.pid)]
        group = min(same_process) if same_process else self._serial
        return Bar(state, source, opened_s=now_s, updated_s=now_s, group=group, serial=self._serial)

    def _remember_closed(self, key: str) -> None:
        self._closed[key] = None
        while len(self._closed) > self.closed_remembered:
            self._closed.popitem(last=False)


# ---- one line per bar ----------------------------------------------------------------------------


def format_count(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def format_interval(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from an hour on (as tqdm writes times)."""
    whole = int(max(seconds, 0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_rate(n: float, elapsed_s: float, unit: str) -> str:
    if elapsed_s <= 0 or n <= 0:
        return f"?{unit}/s"
    rate = n / elapsed_s
    return f"{rate:.2f}{unit}/s" if rate >= 1 else f"{1 / rate:.2f}s/{unit}"


def bar_fields(bar: Bar, now_s: float) -> dict[str, Any]:
    """The values a line is made of (tqdm's names, for ``bar_format``)."""
    state = bar.state
    if state.elapsed_s is not None:
        at_report = state.elapsed_s
    else:
        at_report = max(bar.updated_s - bar.opened_s, 0.0)
    # an open bar's clock keeps running between reports
    elapsed = at_report if state.closed else at_report + max(now_s - bar.updated_s, 0.0)
    total = state.total
    fraction = min(max(state.n / total, 0.0), 1.0) if total else None
    remaining = "?"
    if total and state.n > 0 and at_report > 0:
        remaining = format_interval(max(total - state.n, 0) * at_report / state.n)
    prefix = bar.source.prefix()
    return {
        "desc": prefix + state.desc,
        "label": prefix + (f"{state.desc}: " if state.desc else ""),
        "n": state.n, "n_fmt": format_count(state.n),
        "total": total, "total_fmt": "?" if total is None else format_count(total),
        "percentage": 100 * fraction if fraction is not None else 0.0,
        "fraction": fraction,
        "elapsed": format_interval(elapsed), "remaining": remaining,
        "rate_fmt": format_rate(state.n, at_report, state.unit), "unit": state.unit,
    }


def format_bar(bar: Bar, now_s: float, width: int, *, ascii_only: bool = False) -> str:
    """One line, at most `width` characters: ``desc: 40%|####      | 4/10 [00:02<00:03, 2.00it/s]``."""
    f = bar_fields(bar, now_s)
    if bar.state.bar_format:
        custom = _custom_format(bar.state.bar_format, f)
        if custom is not None:
            return custom[:width]
    label = f["label"]
    if f["fraction"] is None:
        line = f"{label}{f['n_fmt']}{f['unit']} [{f['elapsed']}, {f['rate_fmt']}]"
        return line[:width]
    left = f"{label}{f['percentage']:3.0f}%|"
    right = f"| {f['n_fmt']}/{f['total_fmt']} [{f['elapsed']}<{f['remaining']}, {f['rate_fmt']}]"
    room = width - len(left) - len(right)
    if room < MIN_BAR_CELLS:
        # no room for the bar: keep the numbers, shorten the label
        counts = f"{f['percentage']:3.0f}% {f['n_fmt']}/{f['total_fmt']}"
        return (label[:max(width - len(counts), 0)] + counts)[:width]
    return left + progress_cells(f["fraction"], min(room, MAX_BAR_CELLS), ascii_only) + right


def progress_cells(fraction: float, cells: int, ascii_only: bool = False) -> str:
    """The bar itself: `cells` characters filled in proportion to `fraction`."""
    fill, empty = ("#", " ") if ascii_only else ("\u2588", " ")
    filled = int(round(fraction * cells))
    return fill * filled + empty * (cells - filled)


def _custom_format(bar_format: str, fields: dict[str, Any]) -> str | None:
    """A user's tqdm ``bar_format``; None when it names a field nbray lacks."""
    values = dict(fields, bar=progress_cells(fields["fraction"] or 0.0, 10),
                  l_bar=f"{fields['label']}{fields['percentage']:3.0f}%|",
                  r_bar=f"| {fields['n_fmt']}/{fields['total_fmt']} [{fields['elapsed']}<{fields['remaining']}, "
                        f"{fields['rate_fmt']}]")
    try:
        return bar_format.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError):
        return None


# ---- drawing in a terminal -------------------------------------------------------------------------


def redraw(finished: list[str], live: list[str], drawn: int) -> str:
    """Terminal text that replaces the `drawn` bar lines just above the
    cursor: the final lines of closed bars stay printed, the open bars
    are drawn below them, and the cursor ends under the last bar."""
    out = [f"\r\x1b[{drawn}A"] if drawn else ["\r"]
    out += [f"\x1b[2K{line}\n" for line in finished + live]
    out.append("\x1b[J")  # clears what is left of an area that shrank
    return "".join(out)


def erase(drawn: int) -> str:
    """Terminal text that removes the `drawn` bar lines above the cursor."""
    return f"\r\x1b[{drawn}A\x1b[J" if drawn else ""


def plain_line_due(kind: ChangeKind, last_printed_s: float | None, now_s: float, interval_s: float) -> bool:
    """Without a terminal a bar is printed when it opens, when it closes,
    and at most every `interval_s` in between."""
    if kind is not ChangeKind.UPDATED or last_printed_s is None:
        return True
    return now_s - last_printed_s >= interval_s
