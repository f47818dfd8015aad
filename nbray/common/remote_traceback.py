"""Remote tracebacks kept as frames and rendered where they are read.

Runs in every process. A worker captures the traceback of a task's
exception as plain frames (file, line, function, and the source line when
the worker can read the file); ``RayTaskError`` carries them, and the
process that reads the error renders them again with its own sources. So a
frame whose file only the driver has (a script on another machine, a
notebook cell, which lives only in IPython's line cache) still shows its
source line, and a notebook cell is named the way IPython names it:
``Cell In[5], line 3``.

Pure logic: the only lookups are the two callables ``render`` takes
(source lines and cell names), which default to this process's linecache
and IPython shell.
"""

from __future__ import annotations

import linecache
import sys
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

CAUSE_LINK = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT_LINK = "\nDuring handling of the above exception, another exception occurred:\n\n"
# Python prints a frame repeated this many times in a row before folding the rest.
REPEATED_FRAMES_SHOWN = 3
MAX_CHAINED_EXCEPTIONS = 32


class RemoteFrame(NamedTuple):
    """One frame of a remote traceback."""

    filename: str
    lineno: int
    name: str
    line: str
    """The source line as captured, unstripped; "" when the capturing process had no source."""
    end_lineno: int | None = None
    colno: int | None = None
    end_colno: int | None = None


class RemoteException(NamedTuple):
    """One exception of a chain: its frames and how Python words it."""

    frames: tuple[RemoteFrame, ...]
    exception_only: str
    """``ValueError: boom\\n`` as ``traceback.format_exception_only`` words it (notes included)."""
    link: str = ""
    """What is printed after this exception, before the next one in the chain ("" for the last)."""


RemoteTraceback = tuple[RemoteException, ...]
"""A whole chain, oldest exception first (the order Python prints them)."""


def capture(exc: BaseException, skip_prefix: str = "") -> RemoteTraceback | None:
    """The traceback of `exc` and the exceptions chained to it, without the
    frames of files under `skip_prefix`. None for exception groups, whose
    nested tracebacks are kept only as text."""
    te = traceback.TracebackException.from_exception(exc)
    newest_first: list[RemoteException] = []
    link = ""
    current: traceback.TracebackException | None = te
    while current is not None and len(newest_first) < MAX_CHAINED_EXCEPTIONS:
        if getattr(current, "exceptions", None):
            return None
        frames = tuple(_frame(f) for f in current.stack
                       if not (skip_prefix and f.filename.startswith(skip_prefix)))
        # `link` leads from this (older) exception to the one found before it,
        # so it is printed right after this one.
        newest_first.append(RemoteException(frames, "".join(current.format_exception_only()), link))
        if current.__cause__ is not None:
            current, link = current.__cause__, CAUSE_LINK
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, CONTEXT_LINK
        else:
            current = None
    return tuple(reversed(newest_first))


def _frame(f: traceback.FrameSummary) -> RemoteFrame:
    line = getattr(f, "_original_line", None)
    if line is None:
        line = f.line or ""
    return RemoteFrame(f.filename, f.lineno or 0, f.name, line.rstrip("\r\n"),
                       getattr(f, "end_lineno", None), getattr(f, "colno", None),
                       getattr(f, "end_colno", None))


def local_source_line(filename: str, lineno: int) -> str:
    """Line `lineno` of `filename` as this process knows it ("" if unknown)."""
    return linecache.getline(filename, lineno).rstrip("\r\n")


def notebook_cell_label(filename: str) -> str | None:
    """``In[5]`` when `filename` is the code name IPython gave a cell of the
    shell running in this process; None otherwise (or without IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    format_code_name = getattr(getattr(shell, "compile", None), "format_code_name", None)
    if format_code_name is None:
        return None
    named = format_code_name(filename)
    return str(named[1]) if named else None


def render(tb: RemoteTraceback,
           source_line: Callable[[str, int], str] = local_source_line,
           cell_label: Callable[[str], str | None] = notebook_cell_label) -> str:
    """`tb` as Python prints a traceback, missing source lines filled in by
    `source_line` and notebook cells named by `cell_label`."""
    out: list[str] = []
    for exc in tb:
        if exc.frames:
            out.append("Traceback (most recent call last):\n")
            out.extend(_render_frames(exc.frames, source_line, cell_label))
        out.append(exc.exception_only)
        out.append(exc.link)
    return "".join(out)


def _render_frames(frames: tuple[RemoteFrame, ...], source_line: Callable[[str, int], str],
                   cell_label: Callable[[str], str | None]) -> list[str]:
    out: list[str] = []
    previous: tuple[str, int, str] | None = None
    repeats = 0
    for frame in frames:
        key = (frame.filename, frame.lineno, frame.name)
        if key == previous:
            repeats += 1
            if repeats >= REPEATED_FRAMES_SHOWN:
                continue
        else:
            _fold(out, repeats)
            previous, repeats = key, 0
        out.append(_render_frame(frame, source_line, cell_label))
    _fold(out, repeats)
    return out


def _fold(out: list[str], repeats: int) -> None:
    hidden = repeats - REPEATED_FRAMES_SHOWN + 1
    if hidden > 0:
        out.append(f"  [Previous line repeated {hidden} more time{'s' if hidden > 1 else ''}]\n")


def _render_frame(frame: RemoteFrame, source_line: Callable[[str, int], str],
                  cell_label: Callable[[str], str | None]) -> str:
    line = frame.line or source_line(frame.filename, frame.lineno)
    if line:
        # As linecache gives it: Python places the carets (^^^) under the
        # code by the length of the line, its newline included.
        line += "\n"
    extra: dict[str, Any] = {}
    if sys.version_info >= (3, 11):
        extra = {"end_lineno": frame.end_lineno, "colno": frame.colno, "end_colno": frame.end_colno}
    summary = traceback.FrameSummary(frame.filename, frame.lineno, frame.name, lookup_line=False,
                                     line=line, **extra)
    text = traceback.StackSummary.from_list([summary]).format()[0]
    label = cell_label(frame.filename)
    if label is None:
        return text
    _, _, source = text.partition("\n")
    where = f", in {frame.name}" if frame.name != "<module>" else ""
    return f"  Cell {label}, line {frame.lineno}{where}\n{source}"
