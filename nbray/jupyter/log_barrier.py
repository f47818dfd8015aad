"""When the notebook must wait for worker output, and when it need not (pure logic).

Runs in the notebook kernel. A log flush barrier (``flush_output``) makes
worker output written so far reach the notebook; it costs round trips to
every raylet and the GCS, and runs at least once per cell. It can only
find something new when a task may have written since the last barrier:
a task was submitted since (the runtime counts every task, actor call,
actor and retry it submits), or a task was still running when the last
barrier began (it may have printed after it). ``Activity`` is that count
and the number of tasks in flight, taken just before a barrier starts.

A remote cell that submitted nothing from inside and whose end markers
arrived leaves nothing behind either (its markers follow whatever its
worker wrote for it, through the cell's own streams or through a stream
object kept from before, such as a logging handler's): ``settled_by_markers``
gives the state to remember instead of running a barrier.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Activity:
    """A driver's task activity at one moment."""

    runtime: bytes
    """Which connection (the driver's worker id): a new one starts over."""
    submitted: int
    """Tasks, actor calls and actors submitted so far (a counter that only grows)."""
    pending: int
    """Tasks and actor calls still running."""


def barrier_needed(settled: Activity | None, now: Activity | None) -> bool:
    """Whether a barrier now can bring output the last one did not.

    `settled` is the activity just before the last completed barrier (None:
    none yet); `now` the activity now (None: unknown, e.g. a client)."""
    if settled is None or now is None:
        return True
    if settled.runtime != now.runtime:
        return True
    return settled.pending > 0 or now.submitted != settled.submitted


def settled_by_markers(settled: Activity | None, before: Activity | None, now: Activity | None,
                       own_submissions: int) -> Activity | None:
    """The state to remember after a remote cell whose output is known to
    have arrived through its end markers, or None when a barrier is still due.

    `before` is the activity before the cell's tasks were submitted, `now`
    after they finished, `own_submissions` how many the cell submitted
    itself. Anything else submitted in between, a task still in flight, or
    a barrier already due before the cell, needs the barrier."""
    if before is None or now is None or barrier_needed(settled, before):
        return None
    if now.runtime != before.runtime or now.pending > 0:
        return None
    if now.submitted - before.submitted != own_submissions:
        return None
    return now
