"""Task state transitions recorded by this process, sent to the GCS in batches.

Recording is an append of a small tuple (it sits on the task hot path);
every ``task_events_report_interval_ms`` the buffer is merged per task
attempt and sent as one ``AddTaskEvents`` message. The buffer is bounded:
past its limit the oldest events are dropped and counted.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2


class TaskEventBuffer:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._events: deque[tuple[Any, ...]] = deque()
        self._dropped = 0
        self.enabled = True

    def __len__(self) -> int:
        return len(self._events)

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
        if not events and not self._dropped:
            return None
        records: dict[tuple[bytes, int], gcs_pb2.TaskEventRecord] = {}
        request = gcs_pb2.AddTaskEventsRequest(num_dropped=self._dropped)
        self._dropped = 0
        add = request.events.add
        while events:
            ev = events.popleft()
            key = (ev[1], ev[2])
            rec = records.get(key)
            if rec is None:
                rec = add(task_id=ev[1], attempt_number=ev[2])
                records[key] = rec
            kind = ev[0]
            if kind == "s":
                rec.states.append(ev[3])
                rec.state_ts_ns.append(ev[4])
            elif kind == "i":
                rec.info.CopyFrom(ev[3])
                rec.has_info = True
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
