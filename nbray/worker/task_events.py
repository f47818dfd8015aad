"""Task state transitions recorded by this process, sent to the GCS in batches.

Recording sits on the task hot path, so it is as cheap as possible:

- tasks this process owns are *tracked* once; their state timestamps are
  appended to a list on the task object itself (``record_state``), and
  the static facts are built from the spec only at flush time;
- other events (the executor's RUNNING, failures) are small tuples in a
  bounded buffer.

Every ``task_events_report_interval_ms`` ``drain()`` turns both into one
``AddTaskEvents`` message. Past ``max_events`` buffered items the oldest
are dropped and counted.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2


class TrackedTask:
    """What the event buffer needs from an owned task (PendingTask mixes it in)."""

    __slots__ = ()
    ev: list[tuple[int, int, int]]  # (attempt, state, unix ns)
    ev_sent: int
    ev_info_sent: bool
    ev_done: bool


def record_state(task: Any, state: int) -> None:
    task.ev.append((task.spec.attempt_number, state, time.time_ns()))


class TaskEventBuffer:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._events: deque[tuple[Any, ...]] = deque()
        self._tracked: list[Any] = []
        self._dropped = 0
        self.enabled = True
        # filled by the core worker: builds TaskInfo for a tracked task
        self.info_builder: Any = None

    def __len__(self) -> int:
        return len(self._events) + len(self._tracked)

    def track(self, task: Any) -> None:
        if not self.enabled:
            return
        tracked = self._tracked
        tracked.append(task)
        if len(tracked) > self.max_events:
            tracked.pop(0)
            self._dropped += 1

    def info(self, task_id: bytes, attempt: int, info: gcs_pb2.TaskInfo) -> None:
        self._append(("i", task_id, attempt, info))

    def state(self, task_id: bytes, attempt: int, state: int) -> None:
        self._append(("s", task_id, attempt, state, time.time_ns()))

    def running(self, task_id: bytes, attempt: int, node_id: bytes, worker_id: bytes, pid: int,
                actor_repr: str = "") -> None:
        self._append(("r", task_id, attempt, time.time_ns(), node_id, worker_id, pid, actor_repr))

    def failed(self, task_id: bytes, attempt: int, error_type: int, message: str, traceback: str) -> None:
        self._append(("f", task_id, attempt, time.time_ns(), error_type, message, traceback))

    def _append(self, event: tuple[Any, ...]) -> None:
        if not self.enabled:
            return
        events = self._events
        events.append(event)
        if len(events) > self.max_events:
            events.popleft()
            self._dropped += 1

    def drain(self) -> gcs_pb2.AddTaskEventsRequest | None:
        """Everything recorded so far, merged per task attempt."""
        events = self._events
        tracked = self._tracked
        if not events and not tracked and not self._dropped:
            return None
        request = gcs_pb2.AddTaskEventsRequest(num_dropped=self._dropped)
        self._dropped = 0
        records: dict[tuple[bytes, int], gcs_pb2.TaskEventRecord] = {}
        add = request.events.add
        if tracked:
            keep = []
            for task in tracked:
                ev = task.ev
                sent = task.ev_sent
                if sent < len(ev) or not task.ev_info_sent:
                    task_id = task.task_id
                    for attempt, state, ts in ev[sent:]:
                        key = (task_id, attempt)
                        rec = records.get(key)
                        if rec is None:
                            rec = records[key] = add(task_id=task_id, attempt_number=attempt)
                        rec.states.append(state)
                        rec.state_ts_ns.append(ts)
                    if not task.ev_info_sent:
                        task.ev_info_sent = True
                        key = (task_id, ev[0][0] if ev else 0)
                        rec = records.get(key)
                        if rec is None:
                            rec = records[key] = add(task_id=task_id, attempt_number=key[1])
                        self.info_builder(task, rec.info)
                        rec.has_info = True
                    task.ev_sent = len(ev)
                if not task.ev_done:
                    keep.append(task)
            self._tracked = keep
        while events:
            ev = events.popleft()
            key = (ev[1], ev[2])
            rec = records.get(key)
            if rec is None:
                rec = records[key] = add(task_id=ev[1], attempt_number=ev[2])
            kind = ev[0]
            if kind == "i":
                rec.info.CopyFrom(ev[3])
                rec.has_info = True
            elif kind == "s":
                rec.states.append(ev[3])
                rec.state_ts_ns.append(ev[4])
            elif kind == "r":
                rec.states.append(gcs_pb2.RUNNING)
                rec.state_ts_ns.append(ev[3])
                rec.node_id = ev[4]
                rec.worker_id = ev[5]
                rec.worker_pid = ev[6]
                if ev[7]:
                    rec.actor_repr_name = ev[7]
            elif kind == "f":
                rec.states.append(gcs_pb2.FAILED)
                rec.state_ts_ns.append(ev[3])
                rec.error.type = ev[4]
                rec.error.message = ev[5]
                if ev[6]:
                    rec.error_traceback = ev[6]
        return request


def error_type_name(error_type: int) -> str:
    return common_pb2.ErrorType.Name(error_type)
