"""The bounded store of task attempts behind the state API (GCS process).

Core workers report task attempts in batches: the owner sends the task's
static facts (name, parent, the objects it consumes and produces) and its
scheduling states, the executor sends RUNNING with node, worker and pid,
and the owner the final state with any error. Reports of one attempt may
arrive in any order; the current state is the terminal one if any,
otherwise the latest. At most ``max_tasks`` attempts are kept, finished
ones evicted first (as Ray does).

Every change to an attempt (a new state, or a report that only adds facts
such as the node or the error) gets the next *change number*. Readers list
attempts in the order the store first saw them, oldest or newest first,
page by page with a cursor, and follow later changes with
``changed_after`` (see ``GetTaskEventsRequest``).

Actor creation tasks run on a worker the GCS leased; that worker reports
RUNNING and how ``__init__`` ended. ``ActorCreationEvents`` fills in, from
the actor table, what no worker lived to report: an attempt that ended
because its worker or node died, or because the actor was killed before it
was created.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from typing import Any

from nbray.common.task_event_columns import read_columns, read_running, split_ids
from nbray.protocol import common_pb2, gcs_pb2

TERMINAL = {gcs_pb2.FINISHED, gcs_pb2.FAILED}
_TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
_STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
_ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}
_Key = tuple[bytes, int]
# Report fields an attempt keeps as they are, latest non-empty value wins:
# (field of TaskEventRecord, attribute of TaskAttempt).
_PLAIN_FACTS = (("node_id", "node_id"), ("worker_id", "worker_id"), ("worker_pid", "worker_pid"),
                ("error_traceback", "traceback"), ("actor_repr_name", "actor_repr"))


def _no_repeated_end(states: list[int]) -> bool:
    """Whether no final state appears twice in `states`."""
    return states.count(gcs_pb2.FINISHED) < 2 and states.count(gcs_pb2.FAILED) < 2


class TaskAttempt:
    __slots__ = ("task_id", "attempt", "_info", "_template", "_arg_ids", "_return_ids", "states", "ts",
                 "node_id", "worker_id", "worker_pid", "error_type", "error_message", "traceback", "actor_repr",
                 "updated_ns", "state", "seq", "change")

    def __init__(self, task_id: bytes, attempt: int, seq: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self._info: gcs_pb2.TaskInfo | None = None
        # Facts reported in columns, kept as they came until someone reads them
        # (a TaskInfo per attempt costs more than the rest of the attempt).
        self._template: gcs_pb2.TaskInfo | None = None
        self._arg_ids = b""
        self._return_ids = b""
        self.states: list[int] = []
        self.ts: list[int] = []
        self.node_id = b""
        self.worker_id = b""
        self.worker_pid = 0
        self.error_type = 0
        self.error_message = ""
        self.traceback = ""
        self.actor_repr = ""
        self.updated_ns = 0
        self.state: int = gcs_pb2.NIL
        # when the store first saw it (listing order and cursor) and its last change
        self.seq = seq
        self.change = 0

    @property
    def info(self) -> gcs_pb2.TaskInfo | None:
        """The attempt's static facts (None until its owner reported them)."""
        template = self._template
        if template is not None:
            info = gcs_pb2.TaskInfo()
            info.CopyFrom(template)
            info.arg_object_ids.extend(split_ids(self._arg_ids))
            info.return_object_ids.extend(split_ids(self._return_ids))
            self._info = info
            self._template = None
            self._arg_ids = self._return_ids = b""
        return self._info

    @info.setter
    def info(self, info: gcs_pb2.TaskInfo | None) -> None:
        self._info = info
        self._template = None
        self._arg_ids = self._return_ids = b""

    def has_info(self) -> bool:
        return self._info is not None or self._template is not None

    def job_id(self) -> bytes:
        """The job's id, without building the TaskInfo."""
        facts = self._template if self._template is not None else self._info
        return facts.job_id if facts is not None else b""

    def take_columns_info(self, template: gcs_pb2.TaskInfo, arg_ids: bytes, return_ids: bytes) -> None:
        """Facts reported in columns: a template shared with other attempts and this attempt's ids."""
        self._info = None
        self._template = template
        self._arg_ids = arg_ids
        self._return_ids = return_ids

    def recompute_state(self) -> None:
        states = self.states
        for s in reversed(states):
            if s in TERMINAL:
                self.state = s
                return
        if not states:
            self.state = gcs_pb2.NIL
            return
        # the latest; of equal times, the one reported last
        ts = self.ts
        best = 0
        for i in range(1, len(ts)):
            if ts[i] >= ts[best]:
                best = i
        self.state = states[best]

    def merge_facts(self, rec: gcs_pb2.TaskEventRecord) -> bool:
        """Take the facts of a report; returns whether any was new."""
        changed = False
        if rec.has_info and (not self.has_info() or self.info != rec.info):
            self.info = rec.info
            changed = True
        for field, attr in _PLAIN_FACTS:
            value = getattr(rec, field)
            if value and value != getattr(self, attr):
                setattr(self, attr, value)
                changed = True
        if rec.error.type:
            # The report with the traceback comes from where the error happened
            # (the executor) and names the cause; other reports only summarize.
            if rec.error_traceback or not self.error_type:
                message = rec.error.message or self.error_message
                if (rec.error.type, message) != (self.error_type, self.error_message):
                    self.error_type = rec.error.type
                    self.error_message = message
                    changed = True
            elif rec.error.message and not self.error_message:
                self.error_message = rec.error.message
                changed = True
        return changed

    def merge_states(self, rec: gcs_pb2.TaskEventRecord) -> bool:
        """Take the states of a report; returns whether any was new."""
        # Plain lists first: iterating a protobuf repeated field costs far more.
        return self.merge_state_lists(rec.states[:], rec.state_ts_ns[:])

    def merge_state_lists(self, new_states: list[int], new_ts: list[int]) -> bool:
        """Take reported states and their times; returns whether any was new."""
        own = self.states
        if not own and len(new_states) == len(new_ts) and _no_repeated_end(new_states):
            if not new_states:
                return False
            self.states = new_states
            self.ts = new_ts
            self.updated_ns = max(self.updated_ns, max(new_ts))
            self.recompute_state()
            return True
        added = False
        for state, ts in zip(new_states, new_ts):
            if state in TERMINAL and state in own:
                continue  # the same end, reported twice (by the worker and the GCS)
            own.append(state)
            self.ts.append(ts)
            if ts > self.updated_ns:
                self.updated_ns = ts
            added = True
        if added:
            self.recompute_state()
        return added

    def field(self, key: str) -> str:
        """The value of a filterable field, as the state API shows it."""
        info = self.info
        if key == "task_id":
            return self.task_id.hex()
        if key == "attempt_number":
            return str(self.attempt)
        if key == "state":
            return _STATE_NAMES.get(self.state, "NIL")
        if key == "node_id":
            return self.node_id.hex()
        if key == "worker_id":
            return self.worker_id.hex()
        if key == "worker_pid":
            return str(self.worker_pid)
        if key == "error_type":
            return _ERROR_NAMES.get(self.error_type, "") if self.error_type else ""
        if info is None:
            return ""
        if key == "name":
            return info.name
        if key == "func_or_class_name":
            return info.func_or_class_name
        if key == "job_id":
            return info.job_id.hex()
        if key == "actor_id":
            return info.actor_id.hex()
        if key == "parent_task_id":
            return info.parent_task_id.hex()
        if key == "type":
            return _TYPE_NAMES.get(info.type, "")
        if key == "context_tag":
            return info.context_tag
        if key == "placement_group_id":
            return info.placement_group_id.hex()
        raise KeyError(key)


FILTER_KEYS = (
    "task_id", "attempt_number", "state", "node_id", "worker_id", "worker_pid", "error_type",
    "name", "func_or_class_name", "job_id", "actor_id", "parent_task_id", "type", "context_tag",
    "placement_group_id",
)


class TaskEventStore:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        # in the order first seen (listings) ...
        self.attempts: OrderedDict[_Key, TaskAttempt] = OrderedDict()
        # ... and least recently changed first (followers of changes)
        self._by_change: OrderedDict[_Key, None] = OrderedDict()
        self._finished: deque[_Key] = deque()
        self._seq = 0
        self.last_change = 0
        self.num_evicted = 0
        self.num_dropped = 0
        # Attempts that reached each final state since the store started (kept past eviction).
        self.num_ended: dict[int, int] = {}

    def get(self, task_id: bytes, attempt: int) -> TaskAttempt | None:
        return self.attempts.get((task_id, attempt))

    def add(self, records: Iterable[gcs_pb2.TaskEventRecord], num_dropped: int = 0,
            now_ns: int | None = None, report_changes: bool = True) -> list[gcs_pb2.TaskStateChange]:
        """Merge reports; returns the changes they caused (new states, or new facts only),
        or nothing without `report_changes` (no one listens)."""
        self.num_dropped += num_dropped
        now = time.time_ns() if now_ns is None else now_ns
        changes: list[gcs_pb2.TaskStateChange] | None = [] if report_changes else None
        for rec in records:
            att, created = self._attempt(rec.task_id, rec.attempt_number, rec.has_info)
            before = att.state
            facts = att.merge_facts(rec)
            states = att.merge_states(rec) if rec.states else False
            if not (created or facts or states):
                continue
            self._changed(att, before, now, changes)
            if rec.has_info and facts:
                self._pass_info_on(att, now, changes)
        self._evict()
        return changes or []

    def add_request(self, req: gcs_pb2.AddTaskEventsRequest,
                    report_changes: bool = True) -> list[gcs_pb2.TaskStateChange]:
        """Merge an AddTaskEvents request: its columns, then its records.

        Raises ColumnsError (a ValueError) for columns that do not fit
        together; nothing of the request is merged then."""
        now = time.time_ns()
        changes: list[gcs_pb2.TaskStateChange] | None = [] if report_changes else None
        if req.HasField("columns"):
            columns = req.columns
            entries = list(read_columns(columns))
            running = list(read_running(columns))
            for entry in entries:
                info = entry.info
                att, created = self._attempt(entry.task_id, entry.attempt, info is not None)
                before = att.state
                facts = info is not None
                if info is not None:
                    att.take_columns_info(info, entry.arg_ids, entry.return_ids)
                states = att.merge_state_lists(entry.states, entry.ts) if entry.states else False
                if not (created or facts or states):
                    continue
                self._changed(att, before, now, changes)
                if facts:
                    self._pass_info_on(att, now, changes)
            self._add_running(running, columns.node_id, columns.worker_id, columns.worker_pid, now, changes)
        return (changes or []) + self.add(req.events, req.num_dropped, now, report_changes)

    def _add_running(self, running: list[tuple[bytes, int, int]], node_id: bytes, worker_id: bytes, pid: int,
                     now: int, changes: list[gcs_pb2.TaskStateChange] | None) -> None:
        for task_id, attempt, ts in running:
            att, created = self._attempt(task_id, attempt, False)
            before = att.state
            facts = False
            if (node_id, worker_id, pid) != (att.node_id, att.worker_id, att.worker_pid):
                att.node_id, att.worker_id, att.worker_pid = node_id, worker_id, pid
                facts = True
            states = att.merge_state_lists([gcs_pb2.RUNNING], [ts])
            if created or facts or states:
                self._changed(att, before, now, changes)

    def _attempt(self, task_id: bytes, attempt: int, with_info: bool) -> tuple[TaskAttempt, bool]:
        """The attempt, made if new; and whether it was."""
        key = (task_id, attempt)
        att = self.attempts.get(key)
        if att is not None:
            return att, False
        self._seq += 1
        att = self.attempts[key] = TaskAttempt(task_id, attempt, self._seq)
        if attempt and not with_info:
            # Owners send the static facts once, with the first attempt.
            earlier = self.attempts.get((task_id, attempt - 1))
            if earlier is not None and earlier.has_info():
                att.info = earlier.info
        return att, True

    def _pass_info_on(self, att: TaskAttempt, now: int, changes: list[gcs_pb2.TaskStateChange] | None) -> None:
        """Later attempts reported before `att`'s facts get them too."""
        later = self.attempts.get((att.task_id, att.attempt + 1))
        while later is not None and not later.has_info():
            later.info = att.info
            self._changed(later, later.state, now, changes)
            later = self.attempts.get((att.task_id, later.attempt + 1))

    def _changed(self, att: TaskAttempt, before: int, now: int,
                 changes: list[gcs_pb2.TaskStateChange] | None) -> None:
        # The GCS's clock too, so "changed since" readers see facts that came later.
        att.updated_ns = max(att.updated_ns, now)
        self.last_change += 1
        att.change = self.last_change
        key = (att.task_id, att.attempt)
        self._by_change[key] = None
        self._by_change.move_to_end(key)
        state_changed = att.state != before
        if state_changed and att.state in TERMINAL:
            self._finished.append(key)
            if before not in TERMINAL:
                self.num_ended[att.state] = self.num_ended.get(att.state, 0) + 1
        if changes is None:
            return
        job = att.job_id()
        changes.append(gcs_pb2.TaskStateChange(
            task_id=att.task_id, attempt_number=att.attempt, state=att.state,  # type: ignore[arg-type]
            ts_ns=att.updated_ns, job_id=job, facts_only=not state_changed, change=att.change))

    def _evict(self) -> None:
        while len(self.attempts) > self.max_tasks:
            victim = None
            while self._finished:
                key = self._finished.popleft()
                att = self.attempts.get(key)
                if att is not None and att.state in TERMINAL:
                    victim = key
                    break
            if victim is None:
                victim = next(iter(self.attempts))
            del self.attempts[victim]
            self._by_change.pop(victim, None)
            self.num_evicted += 1

    def query(self, filters: Iterable[gcs_pb2.StateFilter], limit: int, since_ns: int = 0, *,
              newest_first: bool = False, cursor: int = 0,
              changed_after: int | None = None) -> gcs_pb2.GetTaskEventsReply:
        """Rows matching `filters`, at most `limit` (see GetTaskEventsRequest for the order and paging).

        Raises ValueError for an unknown filter key or operator.
        """
        assert limit > 0, limit
        preds = []
        for f in filters:
            if f.key not in FILTER_KEYS:
                raise ValueError(f"cannot filter tasks by {f.key!r}; filterable keys: {', '.join(FILTER_KEYS)}")
            if f.op not in ("=", "!="):
                raise ValueError(f"unsupported filter operator {f.op!r}; use '=' or '!='")
            preds.append((f.key, f.op == "=", _normalize(f.key, f.value)))
        reply = gcs_pb2.GetTaskEventsReply(num_evicted=self.num_evicted, num_dropped=self.num_dropped,
                                           last_change=self.last_change)
        matched = 0
        last: TaskAttempt | None = None
        rows = reply.tasks
        for att in self._candidates(newest_first, cursor, changed_after):
            if since_ns and att.updated_ns < since_ns:
                continue
            if preds and not all((_normalize(k, att.field(k)) == v) == eq for k, eq, v in preds):
                continue
            matched += 1
            if matched > limit:
                continue
            rows.append(to_row(att))
            last = att
        reply.num_truncated = max(0, matched - limit)
        if reply.num_truncated and last is not None:
            if changed_after is not None:
                reply.last_change = last.change
            else:
                reply.next_cursor = last.seq
        return reply

    def _candidates(self, newest_first: bool, cursor: int, changed_after: int | None) -> Iterator[TaskAttempt]:
        attempts = self.attempts
        if changed_after is not None:
            # The latest changes are at the end: walk back to the cursor, then forward.
            recent = []
            for key in reversed(self._by_change):
                att = attempts[key]
                if att.change <= changed_after:
                    break
                recent.append(att)
            yield from reversed(recent)
        elif newest_first:
            for att in reversed(attempts.values()):
                if not cursor or att.seq < cursor:
                    yield att
        else:
            for att in attempts.values():
                if att.seq > cursor:
                    yield att

    def summary(self) -> dict[str, Any]:
        return {"tasks": len(self.attempts), "evicted": self.num_evicted}


class ActorCreationEvents:
    """Ends of actor creation attempts that no worker reported, from the actor table (GCS).

    Fed every published actor state. An attempt whose actor became ALIVE
    was created (its worker reports FINISHED; recorded here only if missing
    when the actor later restarts or dies); an attempt that ends in
    RESTARTING or DEAD without becoming ALIVE failed. A restart opens the
    next attempt (which takes the static facts of the earlier one).
    """

    def __init__(self, store: TaskEventStore) -> None:
        self.store = store
        # actor id -> the ALIVE attempt: (attempt, when, node, worker, pid); dropped when the actor dies
        self._alive: dict[bytes, tuple[int, int, bytes, bytes, int]] = {}

    def on_actor(self, creation_task_id: bytes, info: gcs_pb2.ActorInfo, now_ns: int | None = None,
                 report_changes: bool = True) -> list[gcs_pb2.TaskStateChange]:
        now = time.time_ns() if now_ns is None else now_ns
        actor_id = info.actor_id
        state = info.state
        if state == gcs_pb2.ActorInfo.ALIVE:
            self._alive[actor_id] = (info.num_restarts, now, info.node_id, info.address.worker_id, info.pid)
            return []
        if state == gcs_pb2.ActorInfo.RESTARTING:
            ended = info.num_restarts - 1
            cause = common_pb2.ErrorInfo(
                type=common_pb2.NODE_DIED if info.preempted else common_pb2.WORKER_DIED,
                message=f"the actor's {'node' if info.preempted else 'worker'} died before its __init__ "
                        f"finished; the actor restarts ({info.num_restarts}/"
                        f"{'inf' if info.max_restarts == -1 else info.max_restarts})")
            records = self._ended(creation_task_id, actor_id, ended, cause, now)
            records.append(self._reopened(creation_task_id, info.num_restarts, now))
            return self.store.add(records, now_ns=now, report_changes=report_changes)
        if state == gcs_pb2.ActorInfo.DEAD:
            cause = common_pb2.ErrorInfo()
            cause.CopyFrom(info.death_cause)
            if not cause.type:
                cause.type = common_pb2.ACTOR_DIED
            records = self._ended(creation_task_id, actor_id, info.num_restarts, cause, now)
            self._alive.pop(actor_id, None)
            return self.store.add(records, now_ns=now, report_changes=report_changes)
        return []

    def _ended(self, task_id: bytes, actor_id: bytes, attempt: int, cause: common_pb2.ErrorInfo,
               now: int) -> list[gcs_pb2.TaskEventRecord]:
        alive = self._alive.get(actor_id)
        if alive is not None and alive[0] == attempt:
            current = self.store.get(task_id, attempt)
            if current is not None and current.state in TERMINAL:
                return []
            # created, but the worker's report never arrived (it died right after)
            rec = gcs_pb2.TaskEventRecord(task_id=task_id, attempt_number=attempt, node_id=alive[2],
                                          worker_id=alive[3], worker_pid=alive[4])
            rec.states.append(gcs_pb2.FINISHED)
            rec.state_ts_ns.append(alive[1])
            return [rec]
        rec = gcs_pb2.TaskEventRecord(task_id=task_id, attempt_number=attempt)
        rec.states.append(gcs_pb2.FAILED)
        rec.state_ts_ns.append(now)
        rec.error.CopyFrom(cause)
        return [rec]

    def _reopened(self, task_id: bytes, attempt: int, now: int) -> gcs_pb2.TaskEventRecord:
        rec = gcs_pb2.TaskEventRecord(task_id=task_id, attempt_number=attempt)
        rec.states.append(gcs_pb2.PENDING_NODE_ASSIGNMENT)
        rec.state_ts_ns.append(now)
        return rec  # the store gives it the static facts of the earlier attempt


def _normalize(key: str, value: str) -> str:
    if key.endswith("_id"):
        return value.lower()
    if key in ("state", "type", "error_type"):
        return value.upper()
    return value


def to_row(att: TaskAttempt) -> gcs_pb2.TaskStateRow:
    # states are TaskState values kept as plain ints
    row = gcs_pb2.TaskStateRow(
        task_id=att.task_id, attempt_number=att.attempt, state=att.state,  # type: ignore[arg-type]
        states=att.states, state_ts_ns=att.ts, node_id=att.node_id,  # type: ignore[arg-type]
        worker_id=att.worker_id, worker_pid=att.worker_pid, error_traceback=att.traceback,
        actor_repr_name=att.actor_repr, updated_ns=att.updated_ns,
    )
    if att.info is not None:
        row.info.CopyFrom(att.info)
    if att.error_type:
        row.error.type = att.error_type  # type: ignore[assignment]
        row.error.message = att.error_message
    return row
