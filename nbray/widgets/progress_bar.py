"""``progress(refs)``: a live progress bar until every ref is ready.

Runs in the notebook kernel (or a console, where it draws a text bar on
stderr). Counts refs that are done, failed (the task raised) and pending,
checking with the backend's wait (``nbray.wait``, or ``ray.wait`` on the
Ray backend) every ``progress_poll_s``; returns a
``ProgressSummary`` when all are ready. Ctrl-C stops waiting (the tasks go
on).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from nbray.jupyter import backends
from nbray.jupyter.reprs import in_notebook
from nbray.jupyter.settings import get_settings


@dataclass(frozen=True)
class ProgressSummary:
    done: int
    failed: int
    total: int
    elapsed_s: float


def as_refs(refs: Any, ref_type: type, generator_type: type) -> list[Any]:
    """`refs` (a ref, a generator, a list or dict of them) as a list of refs.
    Raises TypeError for anything else."""
    if isinstance(refs, (ref_type, generator_type)):
        refs = [refs]
    elif isinstance(refs, dict):
        refs = list(refs.values())
    items: list[Any] = list(refs) if isinstance(refs, Iterable) else [refs]
    out = []
    for r in items:
        if isinstance(r, generator_type):
            r = cast(Any, r).completed()
        if not isinstance(r, ref_type):
            raise TypeError(f"progress() expects ObjectRefs, got {type(r).__name__}")
        out.append(r)
    return out


class _Bar:
    def __init__(self, total: int, description: str) -> None:
        self.total = total
        self.widget: Any = None
        if in_notebook():
            import ipywidgets as w
            from IPython.display import display

            self.bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=description,
                                     bar_style="info", layout=w.Layout(width="50%"))
            self.label = w.HTML()
            self.widget = w.HBox([self.bar, self.label])
            display(self.widget)
        self.description = description

    def update(self, done: int, failed: int, elapsed_s: float, final: bool = False) -> None:
        pending = self.total - done - failed
        text = f"{done} done, {failed} failed, {pending} pending ({elapsed_s:.1f} s)"
        if self.widget is not None:
            self.bar.value = done + failed
            self.label.value = text
            if final:
                self.bar.bar_style = "danger" if failed else "success"
        else:
            width = 30
            filled = int(width * (done + failed) / max(self.total, 1))
            sys.stderr.write(f"\r{self.description} [{'#' * filled}{'.' * (width - filled)}] {text}")
            if final:
                sys.stderr.write("\n")
            sys.stderr.flush()


def progress(refs: Any, *, description: str = "nbray", poll_s: float | None = None) -> ProgressSummary:
    """Show a progress bar of `refs` (ObjectRefs, generators, a list or dict
    of them) and return when all are ready: ``progress([f.remote(i) for i in range(100)])``."""
    backend = backends.current()
    pending = as_refs(refs, *backend.object_ref_types())
    poll = poll_s if poll_s is not None else get_settings().progress_poll_s
    bar = _Bar(len(pending), description)
    start = time.monotonic()
    done = failed = 0
    bar.update(0, 0, 0.0)
    while pending:
        ready, pending = backend.wait_objects(pending, poll)
        for ref in ready:
            if backend.object_failed(ref):
                failed += 1
            else:
                done += 1
        bar.update(done, failed, time.monotonic() - start, final=not pending)
    if not bar.total:
        bar.update(0, 0, 0.0, final=True)
    return ProgressSummary(done, failed, bar.total, time.monotonic() - start)
