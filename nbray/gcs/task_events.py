"""The bounded store of task attempts behind the state API (GCS process).

Core workers report task attempts in batches: the owner sends the task's
static facts (name, parent, the objects it consumes and produces) and its
scheduling states, the executor sends RUNNING with node, worker and pid,
and the owner the final state with any error. Reports of one attempt may
arrive in any order; the current state is the terminal one if any,
otherwise the latest. At most ``max_tasks`` attempts are kept, finished
ones evicted first (as Ray does).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2

TERMINAL = {gcs_pb2.FINISHED, gcs_pb2.FAILED}
_TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
_STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
_ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}


class TaskAttempt:
    __slots__ = ("task_id", "attempt", "info", "states", "ts", "node_id", "worker_id", "worker_pid",
                 "error_type", "error_message", "traceback", "actor_repr", "updated_ns", "state")

    def __init__(self, task_id: bytes, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.info: gcs_pb2.TaskInfo | None = None
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
        self.state = gcs_pb2.NIL

    def recompute_state(self) -> None:
        terminal = [s for s in self.states if s in TERMINAL]
        if terminal:
            self.state = terminal[-1]
            return
        best = None
        for s, t in zip(self.states, self.ts):
            if best is None or t >= best[1]:
                best = (s, t)
        self.state = best[0] if best else gcs_pb2.NIL

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
        self.attempts: OrderedDict[tuple[bytes, int], TaskAttempt] = OrderedDict()
        self._finished: deque[tuple[bytes, int]] = deque()
        self.num_evicted = 0
        self.num_dropped = 0

    def add(self, records: Iterable[gcs_pb2.TaskEventRecord], num_dropped: int = 0) -> list[gcs_pb2.TaskStateChange]:
        """Merge reports; returns the state changes they caused."""
        self.num_dropped += num_dropped
        changes = []
        for rec in records:
            key = (rec.task_id, rec.attempt_number)
            att = self.attempts.get(key)
            if att is None:
                att = TaskAttempt(rec.task_id, rec.attempt_number)
                self.attempts[key] = att
            if rec.has_info:
                att.info = rec.info
            if rec.node_id:
                att.node_id = rec.node_id
            if rec.worker_id:
                att.worker_id = rec.worker_id
            if rec.worker_pid:
                att.worker_pid = rec.worker_pid
            if rec.error.type:
                att.error_type = rec.error.type
                if rec.error.message:  # the executor's message beats the owner's summary
                    att.error_message = att.error_message or rec.error.message
            if rec.error_traceback:
                att.traceback = rec.error_traceback
            if rec.actor_repr_name:
                att.actor_repr = rec.actor_repr_name
            if rec.states:
                before = att.state
                att.states.extend(rec.states)
                att.ts.extend(rec.state_ts_ns)
                att.updated_ns = max(att.updated_ns, max(rec.state_ts_ns, default=0))
                att.recompute_state()
                if att.state != before:
                    job = att.info.job_id if att.info is not None else b""
                    changes.append(gcs_pb2.TaskStateChange(
                        task_id=att.task_id, attempt_number=att.attempt, state=att.state,
                        ts_ns=att.updated_ns, job_id=job))
                    if att.state in TERMINAL:
                        self._finished.append(key)
        self._evict()
        return changes

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
            self.num_evicted += 1

    def query(self, filters: Iterable[gcs_pb2.StateFilter], limit: int, since_ns: int = 0) -> gcs_pb2.GetTaskEventsReply:
        preds = []
        for f in filters:
            if f.key not in FILTER_KEYS:
                raise ValueError(f"cannot filter tasks by {f.key!r}; filterable keys: {', '.join(FILTER_KEYS)}")
            if f.op not in ("=", "!="):
                raise ValueError(f"unsupported filter operator {f.op!r}; use '=' or '!='")
            preds.append((f.key, f.op == "=", _normalize(f.key, f.value)))
        reply = gcs_pb2.GetTaskEventsReply(num_evicted=self.num_evicted, num_dropped=self.num_dropped)
        matched = 0
        rows = reply.tasks
        for att in self.attempts.values():
            if since_ns and att.updated_ns < since_ns:
                continue
            if preds and not all((_normalize(k, att.field(k)) == v) == eq for k, eq, v in preds):
                continue
            matched += 1
            if matched > limit:
                continue
            rows.append(to_row(att))
        reply.num_truncated = max(0, matched - limit)
        return reply

    def summary(self) -> dict[str, Any]:
        return {"tasks": len(self.attempts), "evicted": self.num_evicted}


def _normalize(key: str, value: str) -> str:
    if key.endswith("_id"):
        return value.lower()
    if key in ("state", "type", "error_type"):
        return value.upper()
    return value


def to_row(att: TaskAttempt) -> gcs_pb2.TaskStateRow:
    row = gcs_pb2.TaskStateRow(
        task_id=att.task_id, attempt_number=att.attempt, state=att.state, states=att.states,
        state_ts_ns=att.ts, node_id=att.node_id, worker_id=att.worker_id,
        worker_pid=att.worker_pid, error_traceback=att.traceback, actor_repr_name=att.actor_repr,
        updated_ns=att.updated_ns,
    )
    if att.info is not None:
        row.info.CopyFrom(att.info)
    if att.error_type:
        row.error.type = att.error_type  # type: ignore[assignment]
        row.error.message = att.error_message
    return row
