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

Once such a backlog is released, its memory is free but still the
process's: dict tables keep their room after deletions, and glibc keeps
freed heap pages. ``HeapTrimPolicy`` decides when giving them back is
worth it: after many references were released, once, a moment after the
releases stop (a burst of a million releases asks for one trim, not
hundreds).
"""

from __future__ import annotations

import gc

# Freeze once this many tasks are pending, and again each time as many more
# have been added since the last freeze.
FREEZE_STEP_TASKS = 20_000
_NEVER = 1 << 62

# Give memory back after at least this many released references...
TRIM_MIN_RELEASED = 4096
# ... this long after the release that crossed the mark (the trim is
# deferred so that the rest of a burst is released first).
TRIM_DELAY_S = 0.5
# ... deferred again while at least as many more are released per delay,
# at most this many times (a steady stream of releases still gets trims).
TRIM_MAX_WAITS = 10


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


class HeapTrimPolicy:
    """When to shrink tables and return freed heap pages to the system,
    from the number of references released (pure: no timer, no I/O).

    ``on_released`` says when to arm a one-shot timer; when it fires the
    owner calls ``on_fired``: "trim" now, "wait" (arm the timer again:
    releases are still coming, and a trim in the middle of a burst is paid
    again at its end) or "idle" (nothing to do). Releases that arrive while
    the timer is armed are covered by its trim."""

    def __init__(self, min_released: int = TRIM_MIN_RELEASED, max_waits: int = TRIM_MAX_WAITS) -> None:
        if min_released <= 0:
            raise ValueError(f"the release count before a trim must be positive, got {min_released}")
        if max_waits < 0:
            raise ValueError(f"the number of waits before a trim must not be negative, got {max_waits}")
        self.min_released = min_released
        self.max_waits = max_waits
        self.released = 0
        self.armed = False
        # Releases since the timer was last armed, and how often it waited.
        self.released_while_armed = 0
        self.waits = 0

    def on_released(self, count: int) -> bool:
        """`count` references were released; True: arm the timer now."""
        self.released += count
        if self.armed:
            self.released_while_armed += count
            return False
        if self.released < self.min_released:
            return False
        self.armed = True
        self.released_while_armed = 0
        self.waits = 0
        return True

    def on_fired(self) -> str:
        """The timer fired: "trim", "wait" (arm it again) or "idle"."""
        if not self.armed:
            return "idle"
        if self.released_while_armed >= self.min_released and self.waits < self.max_waits:
            self.released_while_armed = 0
            self.waits += 1
            return "wait"
        self.armed = False
        self.released = 0
        return "trim"
