"""Keeping CPython's cyclic collector off a large backlog of pending tasks (owner side).

Runs in every core worker. A driver that queues a million tasks holds a
few container objects per pending task (its record, its return's
reference entry, the ObjectRef handed out) for as long as the task waits.
The collector's full passes walk every one of them again and again as the
heap grows -- tens of microseconds per task at a million, for garbage that
is not there (pending tasks form no cycles; refcounting frees them).

So while the backlog grows, the objects alive at that moment are moved
out of the collector's view (``gc.freeze``, constant time), a step at a
time; once the backlog has drained they are handed back (``gc.unfreeze``),
and the next full pass looks at them again. The price: a reference cycle
that becomes garbage while frozen is collected only after the unfreeze.

``FreezePolicy`` is the pure decision (counts in, "freeze"/"unfreeze"
out); ``BacklogCollector`` applies it to the process's collector.
"""

from __future__ import annotations

import gc

# Freeze once this many tasks are pending, and again each time as many more
# have been added since the last freeze.
FREEZE_STEP_TASKS = 20_000
_NEVER = 1 << 62


class FreezePolicy:
    """When to freeze and unfreeze, from the number of pending tasks."""

    def __init__(self, step: int = FREEZE_STEP_TASKS) -> None:
        if step <= 0:
            raise ValueError(f"the freeze step must be a positive number of tasks, got {step}")
        self.step = step
        self.frozen = False
        # Pending count at which the next freeze happens.
        self.next_freeze = step

    def on_submitted(self, pending: int) -> bool:
        """A task was added; True: freeze now."""
        if pending < self.next_freeze:
            return False
        self.frozen = True
        self.next_freeze = pending + self.step
        return True

    def on_finished(self, pending: int) -> bool:
        """A task left the backlog; True: unfreeze now (the backlog is gone)."""
        if not self.frozen or pending > self.step // 4:
            return False
        self.frozen = False
        self.next_freeze = self.step
        return True


class BacklogCollector:
    """Applies a FreezePolicy to this process's garbage collector."""

    def __init__(self, policy: FreezePolicy | None = None) -> None:
        self.policy = policy or FreezePolicy()
        # Read without a lock on the hot paths: a stale value only moves a
        # freeze or an unfreeze by a task or two.
        self.next_freeze = self.policy.next_freeze
        self.frozen = False

    def on_submitted(self, pending: int) -> None:
        if pending < self.next_freeze:
            return
        if not self.frozen and gc.get_freeze_count():
            # The program freezes objects itself (before forking, say): our
            # unfreeze would undo that, so leave the collector alone.
            self.next_freeze = _NEVER
            return
        if self.policy.on_submitted(pending):
            gc.freeze()
            self.frozen = True
            self.next_freeze = self.policy.next_freeze

    def on_finished(self, pending: int) -> None:
        if self.frozen and self.policy.on_finished(pending):
            gc.unfreeze()
            self.frozen = False
            self.next_freeze = self.policy.next_freeze
