"""Task state transitions recorded by this process, sent to the GCS in batches.

Runs in every core worker (drivers and workers). Recording sits on the
task hot path, so it is as cheap as possible:

- tasks this process owns are *tracked*; their state timestamps are
  appended to a list on the task object itself (``record_state``), and
  the static facts are built from the spec only at flush time. A flush
  reads only tasks with something due: a new task once it is
  ``task_events_report_interval_ms`` old (most short tasks have finished by
  then and go out once, whole), a task that reached a final state at once,
  and a slice of the tasks reported before and still in flight (so their
  later states follow and those that ended are let go). A million queued
  tasks thus cost nothing per flush while they wait;
- other events (the executor's RUNNING, failures) are small tuples in a
  bounded buffer.

A flush turns both into one ``AddTaskEvents`` message (tracked tasks in
columns, see nbray/common/task_event_columns.py). Flushes are timed
here, on the process's I/O loop: every ``task_events_report_interval_ms``
while anything is buffered or a tracked task is still in flight (an idle
process never wakes up), and ``task_events_final_report_delay_ms`` after a
task reaches a final state, so a finished task shows up promptly without a
message per task (at most one extra report per that delay). Past
``max_events`` buffered items the oldest are dropped and counted.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nbray.common.task_event_columns import ColumnWriter
from nbray.protocol import common_pb2, gcs_pb2

# schedule(delay_s, fn, *args): run fn on the I/O loop after delay_s; callable from any thread
Scheduler = Callable[..., None]


class TrackedTask:
    """What the event buffer needs from an owned task (PendingTask has it)."""

    __slots__ = ()
    task_id: bytes
    attempt: int
    ev: list[tuple[int, int, int]]  # (attempt, state, unix ns)
    ev_sent: int
    ev_info_sent: bool
    ev_done: bool
    ev_queued: bool  # in its buffer's queue of tasks with a final state
    ev_waiting: bool  # among its buffer's reported tasks in flight
    ev_buffer: TaskEventBuffer | None  # set when tracked


_FINAL_STATES = frozenset({gcs_pb2.FINISHED, gcs_pb2.FAILED})


def record_state(task: Any, state: int) -> None:
    task.ev.append((task.attempt, state, time.time_ns()))
    # A final state is reported soon; others go with the task's next report.
    # Appended first, then queued: a flush that ran meanwhile either sent
    # the state or cleared the flag (so the task is queued again here).
    if state in _FINAL_STATES and not task.ev_queued:
        buffer = task.ev_buffer
        if buffer is not None:
            buffer.requeue(task)


class TaskEventBuffer:
    def __init__(self, max_events: int, report_interval_ms: int = 1_000, final_report_delay_ms: int = 100) -> None:
        self.max_events = max_events
        self.report_interval_s = report_interval_ms / 1000
        self.final_report_delay_s = final_report_delay_ms / 1000
        self._events: deque[tuple[Any, ...]] = deque()
        # Tracked tasks never reported, oldest first (a deque: past
        # max_events the oldest is dropped on every new task).
        self._fresh: deque[Any] = deque()
        # Tracked tasks that reached a final state, to report soon.
        self._tracked: deque[Any] = deque()
        # Tracked tasks reported so far and not known to be done.
        self._waiting: deque[Any] = deque()
        self._dropped = 0
        self.enabled = True
        # filled by the core worker: a tracked task's static facts, as
        # (shared TaskInfo template, arg object ids, return object ids)
        self.info_parts: Any = None
        # Flush timing (see the module docstring). Set by start(); the flags are
        # read and written from several threads without a lock: a lost race only
        # arms a timer twice, and a stale timer (not the latest token) does nothing.
        self._schedule: Scheduler | None = None
        self._flush: Callable[[], None] | None = None
        self._tokens = itertools.count(1)
        self._armed = 0              # token of the timer that will flush, 0: none
        self._armed_due = 0.0        # its deadline (time.monotonic)
        self._soon_armed = False     # a final-state report is already due soon
        self._drain_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events) + len(self._fresh) + len(self._tracked) + len(self._waiting)

    # ---- flush timing ----------------------------------------------------------------------------

    def start(self, schedule: Scheduler, flush: Callable[[], None]) -> None:
        """Begin timed flushes: `schedule` runs a call on the I/O loop later, `flush` sends a batch."""
        self._schedule = schedule
        self._flush = flush
        if self._events or self._fresh or self._tracked or self._dropped:
            self._arm(self.report_interval_s)

    def report_soon(self) -> None:
        """A task reached a final state: flush within ``final_report_delay_ms``."""
        if self._soon_armed or not self.enabled:
            return
        self._soon_armed = True
        delay = self.final_report_delay_s
        if self._armed and self._armed_due <= time.monotonic() + delay:
            return  # the pending flush comes soon enough
        self._arm(delay)

    def _arm(self, delay_s: float) -> None:
        schedule = self._schedule
        if schedule is None:
            return  # not started: start() arms
        token = next(self._tokens)
        self._armed_due = time.monotonic() + delay_s
        self._armed = token
        schedule(delay_s, self._on_timer, token)

    def _on_timer(self, token: int) -> None:
        """I/O loop: flush if this is the current timer, then keep reporting while tasks are in flight."""
        if token != self._armed:
            return
        # Clear before draining: anything recorded from now on arms a new timer.
        self._armed = 0
        self._soon_armed = False
        assert self._flush is not None
        self._flush()
        if (self._fresh or self._tracked or self._waiting) and not self._armed:
            self._arm(self.report_interval_s)

    # ---- recording -------------------------------------------------------------------------------

    def track(self, task: Any) -> None:
        if not self.enabled:
            return
        task.ev_buffer = self
        fresh = self._fresh
        fresh.append(task)
        if len(fresh) > self.max_events:
            # Dropped for good: it never reports (nor queues itself) again.
            fresh.popleft().ev_buffer = None
            self._dropped += 1
        if not self._armed:
            self._arm(self.report_interval_s)

    def requeue(self, task: Any) -> None:
        """`task` reached a final state (any thread)."""
        task.ev_queued = True
        self._tracked.append(task)
        self.report_soon()

    def info(self, task_id: bytes, attempt: int, info: gcs_pb2.TaskInfo) -> None:
        self._append(("i", task_id, attempt, info))

    def state(self, task_id: bytes, attempt: int, state: int) -> None:
        self._append(("s", task_id, attempt, state, time.time_ns()))

    def finished(self, task_id: bytes, attempt: int) -> None:
        """The attempt finished here (an actor's __init__ returned); reported soon."""
        self._append(("s", task_id, attempt, gcs_pb2.FINISHED, time.time_ns()))
        self.report_soon()

    def running(self, task_id: bytes, attempt: int, node_id: bytes, worker_id: bytes, pid: int,
                actor_repr: str = "") -> None:
        self._append(("r", task_id, attempt, time.time_ns(), node_id, worker_id, pid, actor_repr))

    def failed(self, task_id: bytes, attempt: int, error_type: int, message: str, traceback: str) -> None:
        """The attempt failed (a final state); reported soon."""
        self._append(("f", task_id, attempt, time.time_ns(), error_type, message, traceback))
        self.report_soon()

    def _append(self, event: tuple[Any, ...]) -> None:
        if not self.enabled:
            return
        events = self._events
        events.append(event)
        if len(events) > self.max_events:
            events.popleft()
            self._dropped += 1
        if not self._armed:
            self._arm(self.report_interval_s)

    def drain(self, everything: bool = False) -> gcs_pb2.AddTaskEventsRequest | None:
        """What is due, merged per task attempt (any thread); `everything`:
        new tasks too, however young (before the process exits)."""
        with self._drain_lock:
            return self._drain(everything)

    def _drain(self, everything: bool) -> gcs_pb2.AddTaskEventsRequest | None:
        events = self._events
        request = gcs_pb2.AddTaskEventsRequest(num_dropped=self._dropped)
        self._dropped = 0
        records: dict[tuple[bytes, int], gcs_pb2.TaskEventRecord] = {}
        add = request.events.add
        waiting = self._waiting
        columns = ColumnWriter()
        add_task = columns.add_task
        info_parts = self.info_parts

        def report(task: Any) -> None:
            # Read "done" first: its final state was appended before it was set.
            done = task.ev_done
            ev = task.ev
            n = len(ev)
            sent = task.ev_sent
            if sent < n or not task.ev_info_sent:
                if task.ev_info_sent:
                    add_task(task.task_id, ev[sent:n])
                else:
                    task.ev_info_sent = True
                    add_task(task.task_id, ev[sent:n], ev[0][0] if ev else 0, info_parts(task))
                task.ev_sent = n
            if not done and not task.ev_waiting:
                task.ev_waiting = True
                waiting.append(task)

        # Taken one by one (no swap): a task queued by another thread meanwhile
        # stays for the next flush, and is never appended to a list let go.
        tracked = self._tracked
        batch: list[Any] = []
        for _ in range(len(tracked)):
            if not tracked:
                break
            task = tracked.popleft()
            # Cleared before reading the states: a final state recorded from
            # now on (a retry's) queues it again.
            task.ev_queued = False
            batch.append(task)
        # Young tasks wait, except those created before a task reported now:
        # the GCS keeps tasks in the order they first arrive, which must stay
        # the order they were submitted (listings are oldest first, and a
        # limit keeps the newest).
        due_ns = max(time.time_ns() - int(self.report_interval_s * 0.5e9), max(map(_created_ns, batch), default=0))
        fresh = self._fresh
        while fresh:
            task = fresh[0]
            if not everything and task.ev and task.ev[0][2] > due_ns:
                break  # this one and those after it are too young
            fresh.popleft()
            if task.ev_buffer is self:
                batch.append(task)
        batch.sort(key=_created_ns)
        for task in batch:
            report(task)
        self._walk_waiting(report, everything)
        add_running = columns.add_running
        while events:
            ev = events.popleft()
            if ev[0] == "r" and not ev[7] and add_running(ev[1], ev[2], ev[3], ev[4], ev[5], ev[6]):
                continue
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
        if columns:
            columns.fill(request.columns)
        elif not request.events and not request.num_dropped:
            return None  # only tracked tasks with nothing new
        return request


    def _walk_waiting(self, report: Callable[[Any], None], everything: bool) -> None:
        """Look over a slice of the reported tasks in flight (all of them
        with `everything`): report their new states, forget those done. A
        slice, so a flush stays cheap however many wait."""
        waiting = self._waiting
        n = len(waiting)
        if not n:
            return
        count = n if everything else min(n, max(_WALK_MIN, n // _WALK_FRACTION))
        for _ in range(count):
            task = waiting.popleft()
            task.ev_waiting = False
            report(task)  # puts it back while not done
        while len(waiting) > self.max_events:
            waiting.popleft().ev_waiting = False


def _created_ns(task: Any) -> int:
    """When a tracked task was first recorded (its first state's time)."""
    ev = task.ev
    return int(ev[0][2]) if ev else 0


# Each flush looks over this many reported tasks in flight at least, or
# 1/fraction of them.
_WALK_MIN = 1024
_WALK_FRACTION = 8


def error_type_name(error_type: int) -> str:
    return common_pb2.ErrorType.Name(error_type)
