"""Decisions around a GCS outage and restart, without I/O (used by the GCS,
its supervisor on the head node, and every GCS client).

- ``backoff_delay_s``: the wait before the n-th retry (clients reconnecting,
  the supervisor restarting the GCS).
- ``RestartBudget``: whether the supervisor may restart the GCS once more,
  and after what delay; a GCS that keeps dying is given up on.
- ``registration_decision``: what the GCS does with a raylet that registers
  a node id it already knows (after a restart, raylets register again).
"""

from __future__ import annotations

import collections
import enum


def backoff_delay_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay before retry number `attempt` (0-based): doubling from `initial_s`, capped at `max_s`."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if initial_s < 0 or max_s < 0:
        raise ValueError(f"backoff delays must be >= 0, got {initial_s} and {max_s}")
    return min(max_s, initial_s * (2 ** min(attempt, 32)))


class RestartBudget:
    """At most `max_restarts` restarts in any `window_s`; the delay before a
    restart doubles with each restart still inside the window."""

    def __init__(self, max_restarts: int, window_s: float, initial_s: float, max_s: float) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.initial_s = initial_s
        self.max_s = max_s
        self._restarts: collections.deque[float] = collections.deque()

    def next_restart_delay(self, now: float) -> float | None:
        """Called when the process exited at `now`: the delay before the next
        start, or None when the budget is spent (then give up). Counts the
        restart it allows."""
        while self._restarts and now - self._restarts[0] >= self.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return None
        delay = backoff_delay_s(len(self._restarts), self.initial_s, self.max_s)
        self._restarts.append(now + delay)
        return delay


class Registration(enum.Enum):
    NEW = "new"              # an unknown node joins
    RETURNING = "returning"  # a node alive before the GCS restarted registers again
    REFUSED = "refused"      # a node already declared dead: it never comes back


def registration_decision(known: bool, alive: bool, awaiting: bool) -> Registration:
    """What to do with a RegisterNode for a node id: `known` (in the node
    table), `alive` (its record says ALIVE), `awaiting` (stored ALIVE by an
    earlier GCS and not registered since)."""
    if not known:
        return Registration.NEW
    if awaiting or alive:
        # alive: the same raylet registering again on a new connection
        # (its old one closed before the GCS noticed); take the new one.
        return Registration.RETURNING
    return Registration.REFUSED
