"""The live event stream: Server-Sent Events to every watcher (dashboard process).

Events are encoded once and queued to every subscriber. Each has a
sequence number (the SSE ``id``), and the last ``replay_events`` are kept
so a client that reconnects with ``Last-Event-ID`` gets what it missed;
one that comes back too late, or reads too slowly for its queue, gets a
``resync`` event and reloads its snapshot.

Task changes are the bulk: they are merged per task attempt (a retried
task's earlier attempt and its new one both reach the task stream) and sent at most
every ``flush_interval_s`` as one ``tasks`` event. Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from nbray.dashboard.tasks import encode


def frame(seq: int, event: str, data: Any) -> bytes:
    return f"id: {seq}\nevent: {event}\ndata: {encode(data)}\n\n".encode()


class Subscriber:
    __slots__ = ("queue", "overflowed", "want_tasks")

    def __init__(self, max_queued: int, want_tasks: bool) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued)
        self.overflowed = False
        self.want_tasks = want_tasks

    def close(self) -> None:
        """Make the writer stop: an empty frame ends the stream."""
        while True:
            try:
                self.queue.put_nowait(b"")
                return
            except asyncio.QueueFull:
                self.overflowed = True
                self.queue.get_nowait()


class EventHub:
    def __init__(self, replay_events: int, max_queued: int, flush_interval_s: float,
                 max_tasks_per_event: int) -> None:
        self.max_queued = max_queued
        self.flush_interval_s = flush_interval_s
        self.max_tasks_per_event = max_tasks_per_event
        self._seq = 0
        self._recent: deque[tuple[int, str, bytes]] = deque(maxlen=replay_events)
        self._subs: set[Subscriber] = set()
        self._pending_tasks: dict[tuple[str, int], dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self.on_first_subscriber: Callable[[], None] | None = None

    @property
    def seq(self) -> int:
        return self._seq

    def num_subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, last_event_id: int | None, want_tasks: bool = True) -> tuple[Subscriber, bool]:
        """A new subscriber and whether it must reload (it missed events we no longer have)."""
        sub = Subscriber(self.max_queued, want_tasks)
        needs_resync = False
        if last_event_id is not None:
            oldest = self._recent[0][0] if self._recent else self._seq + 1
            if last_event_id > self._seq or last_event_id + 1 < oldest:
                needs_resync = True
            else:
                for seq, event, data in self._recent:
                    if seq > last_event_id and (want_tasks or event != "tasks"):
                        self._offer(sub, data)
        first = not self._subs
        self._subs.add(sub)
        if first and self.on_first_subscriber is not None:
            self.on_first_subscriber()
        return sub, needs_resync

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def publish(self, event: str, data: Any) -> None:
        self._seq += 1
        encoded = frame(self._seq, event, data)
        self._recent.append((self._seq, event, encoded))
        for sub in list(self._subs):
            if event == "tasks" and not sub.want_tasks:
                continue
            self._offer(sub, encoded)

    def _offer(self, sub: Subscriber, data: bytes) -> None:
        if sub.overflowed:
            return
        try:
            sub.queue.put_nowait(data)
        except asyncio.QueueFull:
            # A slow reader: drop what it has queued and tell it to reload.
            sub.overflowed = True
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(frame(self._seq, "resync", {"reason": "too slow"}))

    def task_changed(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        for row in rows:
            self._pending_tasks[(row["task_id"], row.get("attempt_number", 0))] = row
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self.flush_interval_s, self.flush_tasks)

    def flush_tasks(self) -> None:
        self._flush_handle = None
        rows = list(self._pending_tasks.values())
        self._pending_tasks.clear()
        for start in range(0, len(rows), self.max_tasks_per_event):
            self.publish("tasks", {"tasks": rows[start:start + self.max_tasks_per_event]})

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
