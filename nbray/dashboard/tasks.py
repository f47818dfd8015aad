"""The dashboard's table of tasks: latest attempt per task, and earlier attempts (dashboard process).

Fed from two places: rows fetched with ``GetTaskEvents`` (complete facts)
and the GCS TASK channel (state, or a note that facts were added: the
source then fetches the row). Both may arrive out of order, so a
report replaces what is known only if it is at least as recent: a later
attempt, or a terminal state, or a newer timestamp.

Listing 10,000 tasks must answer in well under 200 ms, so every row keeps
its JSON encoding, rebuilt only when the row changes, and a listing is a
join of those encodings. The table is bounded like the GCS's store:
finished tasks are evicted first, oldest first.

A retried task's earlier attempts are kept apart (``earlier_json``), so
the task stream can draw them after a reload: an attempt that a later one
replaced without reporting an end failed when the later one was created.
They share the bound: at most ``max_tasks`` earlier attempts, oldest
dropped first, and a task's earlier attempts go when the task does.

No I/O here: ``nbray.dashboard.source`` feeds it, the HTTP handlers read it.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2

STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}
TERMINAL_STATES = frozenset({"FINISHED", "FAILED"})
RUNNING_STATES = frozenset({"RUNNING", "RUNNING_IN_RAY_GET", "RUNNING_IN_RAY_WAIT"})
# Longest error message kept in a list row; the detail view has all of it.
MAX_LIST_ERROR_CHARS = 300

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def row_from_proto(t: gcs_pb2.TaskStateRow) -> dict[str, Any]:
    """The list form of a task attempt (no events or traceback)."""
    info = t.info
    start = end = created = None
    for state, ts in zip(t.states, t.state_ts_ns):
        ms = ts // 1_000_000
        if created is None or ms < created:
            created = ms
        if state == gcs_pb2.RUNNING and (start is None or ms < start):
            start = ms
        elif state in (gcs_pb2.FINISHED, gcs_pb2.FAILED):
            end = ms if end is None else max(end, ms)
    caller = info.caller
    return {
        "task_id": t.task_id.hex(),
        "attempt_number": t.attempt_number,
        "name": info.name,
        "func_or_class_name": info.func_or_class_name,
        "type": TYPE_NAMES.get(info.type, "NORMAL_TASK"),
        "state": STATE_NAMES.get(t.state, "NIL"),
        "job_id": info.job_id.hex(),
        "actor_id": info.actor_id.hex() or None,
        "parent_task_id": info.parent_task_id.hex() or None,
        "node_id": t.node_id.hex() or None,
        "worker_id": t.worker_id.hex() or None,
        "worker_pid": t.worker_pid or None,
        "arg_object_ids": [o.hex() for o in info.arg_object_ids],
        "return_object_ids": [o.hex() for o in info.return_object_ids],
        "context_tag": info.context_tag or None,
        "owner_address": f"{caller.host}:{caller.port}" if caller.port else None,
        "creation_time_ms": created,
        "start_time_ms": start,
        "end_time_ms": end,
        "error_type": ERROR_NAMES.get(t.error.type) if t.error.type else None,
        "error_message": (t.error.message[:MAX_LIST_ERROR_CHARS] or None) if t.error.message else None,
        "updated_ns": t.updated_ns,
    }


def detail_from_proto(t: gcs_pb2.TaskStateRow) -> dict[str, Any]:
    """Everything about one attempt: list fields, events, full error and traceback."""
    row = row_from_proto(t)
    info = t.info
    row.update({
        "events": [{"state": STATE_NAMES.get(s, "NIL"), "time_ms": ts // 1_000_000}
                   for s, ts in sorted(zip(t.states, t.state_ts_ns), key=lambda e: e[1])],
        "error_message": t.error.message or None,
        "error_traceback": t.error_traceback or None,
        "required_resources": dict(info.required_resources),
        "placement_group_id": info.placement_group_id.hex() or None,
        "actor_repr_name": t.actor_repr_name or None,
        "owner_worker_id": info.caller.worker_id.hex() or None,
        "owner_node_id": info.caller.node_id.hex() or None,
    })
    return row


def _rank(row: dict[str, Any]) -> tuple[int, int, int]:
    return (row["attempt_number"], 1 if row["state"] in TERMINAL_STATES else 0, row["updated_ns"])


@dataclass
class TaskFilter:
    job_id: str | None = None
    states: frozenset[str] | None = None
    func: str | None = None
    node_id: str | None = None
    context_tag: str | None = None
    actor_id: str | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        if self.job_id is not None and row["job_id"] != self.job_id:
            return False
        if self.states is not None and row["state"] not in self.states:
            return False
        if self.func is not None and row["func_or_class_name"] != self.func and row["name"] != self.func:
            return False
        if self.node_id is not None and row["node_id"] != self.node_id:
            return False
        if self.context_tag is not None and row["context_tag"] != self.context_tag:
            return False
        return self.actor_id is None or row["actor_id"] == self.actor_id

    def is_empty(self) -> bool:
        return all(v is None for v in (self.job_id, self.states, self.func, self.node_id, self.context_tag,
                                       self.actor_id))


class _Entry:
    __slots__ = ("row", "encoded")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.encoded = _encode(row)


class TaskTable:
    """Latest attempt of each task, in creation order, with cached JSON."""

    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self._entries: dict[str, _Entry] = {}
        self._finished: deque[str] = deque()
        self._running_on_worker: dict[str, str] = {}
        # Earlier attempts of retried tasks by (task id, attempt), oldest first.
        self._earlier: dict[tuple[str, int], _Entry] = {}
        self.num_evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, task_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(task_id)
        return entry.row if entry is not None else None

    def rows(self) -> Iterator[dict[str, Any]]:
        return (e.row for e in self._entries.values())

    def running_task_of_worker(self, worker_id: str) -> dict[str, Any] | None:
        task_id = self._running_on_worker.get(worker_id)
        return self.get(task_id) if task_id is not None else None

    # ---- updates ----------------------------------------------------------------------------------------------

    def upsert(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Merge complete rows; returns the rows that changed, then the earlier attempts that changed."""
        changed: list[dict[str, Any]] = []
        earlier: list[dict[str, Any]] = []
        for row in rows:
            entry = self._entries.get(row["task_id"])
            if entry is not None:
                old = entry.row
                if row["attempt_number"] < old["attempt_number"]:
                    kept = self._keep_earlier(row, old)
                    if kept is not None:
                        earlier.append(kept)
                    continue
                if _rank(row) < _rank(old):
                    continue
                if row["attempt_number"] > old["attempt_number"]:
                    kept = self._keep_earlier(old, row)
                    if kept is not None:
                        earlier.append(kept)
                if row["attempt_number"] == old["attempt_number"]:
                    # Executors report node and worker separately from the
                    # owner's report; keep what the newer report lacks.
                    for key in ("node_id", "worker_id", "worker_pid", "start_time_ms"):
                        if row[key] is None and old[key] is not None:
                            row[key] = old[key]
                if row == old:
                    continue
            if self._store(row):
                changed.append(row)
        self._evict()
        return changed + earlier

    def apply_changes(self, changes: Iterable[gcs_pb2.TaskStateChange]) -> tuple[list[dict[str, Any]], int]:
        """Apply channel state changes; returns (changed rows, oldest change time in ns).

        A task seen here first gets a minimal row; the caller then fetches
        the complete rows that changed. Earlier attempts that changed come last.
        """
        changed: list[dict[str, Any]] = []
        earlier: list[dict[str, Any]] = []
        oldest = 0
        for c in changes:
            task_id = c.task_id.hex()
            state = STATE_NAMES.get(c.state, "NIL")
            oldest = c.ts_ns if not oldest else min(oldest, c.ts_ns)
            entry = self._entries.get(task_id)
            if entry is not None and c.facts_only:
                continue  # nothing to show until the fetched row brings the facts
            if entry is None:
                row = _minimal_row(task_id, c.attempt_number, state, c.ts_ns, c.job_id.hex())
            else:
                if c.attempt_number < entry.row["attempt_number"]:
                    continue  # an earlier attempt's facts come with the fetched rows
                row = dict(entry.row)
                row.update(attempt_number=c.attempt_number, state=state, updated_ns=max(c.ts_ns, row["updated_ns"]))
                if _rank(row) < _rank(entry.row) or row == entry.row:
                    continue
                if c.attempt_number > entry.row["attempt_number"]:
                    # The new attempt has not run yet: none of the old one's run facts are its own.
                    row.update(node_id=None, worker_id=None, worker_pid=None, start_time_ms=None, end_time_ms=None,
                               error_type=None, error_message=None, creation_time_ms=c.ts_ns // 1_000_000)
                    kept = self._keep_earlier(entry.row, row)
                    if kept is not None:
                        earlier.append(kept)
                if state in TERMINAL_STATES and row["end_time_ms"] is None:
                    row["end_time_ms"] = c.ts_ns // 1_000_000
            if self._store(row):
                changed.append(row)
        self._evict()
        return changed + earlier, oldest

    def _store(self, row: dict[str, Any]) -> bool:
        task_id = row["task_id"]
        previous = self._entries.get(task_id)
        self._entries[task_id] = _Entry(row)
        worker = row["worker_id"]
        old_worker = previous.row["worker_id"] if previous is not None else None
        if old_worker and old_worker != worker and self._running_on_worker.get(old_worker) == task_id:
            del self._running_on_worker[old_worker]
        if row["state"] in RUNNING_STATES and worker:
            self._running_on_worker[worker] = task_id
        elif worker and self._running_on_worker.get(worker) == task_id:
            del self._running_on_worker[worker]
        if row["state"] in TERMINAL_STATES and (previous is None or previous.row["state"] not in TERMINAL_STATES):
            self._finished.append(task_id)
        return True

    def _evict(self) -> None:
        while len(self._entries) > self.max_tasks:
            victim = None
            while self._finished:
                candidate = self._finished.popleft()
                entry = self._entries.get(candidate)
                if entry is not None and entry.row["state"] in TERMINAL_STATES:
                    victim = candidate
                    break
            if victim is None:
                victim = next(iter(self._entries))
            entry = self._entries.pop(victim)
            worker = entry.row["worker_id"]
            if worker and self._running_on_worker.get(worker) == victim:
                del self._running_on_worker[worker]
            for attempt in range(entry.row["attempt_number"]):
                self._earlier.pop((victim, attempt), None)
            self.num_evicted += 1

    def _keep_earlier(self, earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any] | None:
        """Record ``earlier``, an attempt that ``later`` (a later attempt of the same task) replaced.

        Returns the stored row, or None when nothing new was learnt.
        """
        key = (earlier["task_id"], earlier["attempt_number"])
        row = superseded_attempt(earlier, later)
        old = self._earlier.get(key)
        if old is not None:
            if _rank(row) < _rank(old.row) or row == old.row:
                return None
            for name in ("node_id", "worker_id", "worker_pid", "start_time_ms"):
                if row[name] is None and old.row[name] is not None:
                    row[name] = old.row[name]
        self._earlier[key] = _Entry(row)
        while len(self._earlier) > self.max_tasks:
            del self._earlier[next(iter(self._earlier))]
        return row

    def earlier_attempts(self, task_id: str) -> list[dict[str, Any]]:
        """The kept earlier attempts of a task, first attempt first."""
        entry = self._entries.get(task_id)
        if entry is None:
            return []
        found = (self._earlier.get((task_id, a)) for a in range(entry.row["attempt_number"]))
        return [e.row for e in found if e is not None]

    @property
    def num_earlier_attempts(self) -> int:
        return len(self._earlier)

    # ---- reads ------------------------------------------------------------------------------------------------

    def list_json(self, flt: TaskFilter, offset: int, limit: int) -> tuple[bytes, int]:
        """(JSON array of matching rows in creation order, number matched)."""
        if flt.is_empty():
            entries = self._entries.values()
            total = len(self._entries)
            page = [e.encoded for e in itertools.islice(entries, offset, offset + limit)]
        else:
            matching = [e for e in self._entries.values() if flt.matches(e.row)]
            total = len(matching)
            page = [e.encoded for e in matching[offset:offset + limit]]
        return ("[" + ",".join(page) + "]").encode(), total

    def earlier_json(self, flt: TaskFilter, limit: int) -> tuple[bytes, int]:
        """(JSON array of the earlier attempts of retried tasks matching the filter, oldest first; number matched).

        The filter applies to the attempt's own row, except its state: a
        task filtered by state keeps its earlier attempts when its latest
        attempt matches.
        """
        picked: list[str] = []
        total = 0
        for (task_id, _), e in self._earlier.items():
            row = e.row
            if flt.states is not None:
                latest = self._entries.get(task_id)
                if latest is None:
                    continue
                row = {**row, "state": latest.row["state"]}
            if flt.matches(row):
                total += 1
                if len(picked) < limit:
                    picked.append(e.encoded)
        return ("[" + ",".join(picked) + "]").encode(), total

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._entries.values():
            state = e.row["state"]
            counts[state] = counts.get(state, 0) + 1
        return counts

    def distinct(self, key: str, limit: int = 500) -> list[str]:
        """Distinct non-empty values of a field (job ids, notebook cells), first seen first."""
        seen: dict[str, None] = {}
        for e in self._entries.values():
            value = e.row[key]
            if value and value not in seen:
                seen[value] = None
                if len(seen) >= limit:
                    break
        return list(seen)


def superseded_attempt(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """``earlier`` as an attempt that ``later`` replaced: one that never reported an end failed then.

    A retry is made only after an attempt failed (a worker died, or the
    task raised with ``retry_exceptions``), so the earlier attempt ended
    no later than the later attempt's creation.
    """
    if earlier["state"] in TERMINAL_STATES:
        return earlier
    created = later["creation_time_ms"]
    start = earlier["start_time_ms"]
    end = created if created is not None else earlier["updated_ns"] // 1_000_000
    if start is not None:
        end = max(start, end)
    return {**earlier, "state": "FAILED", "end_time_ms": end}


def _minimal_row(task_id: str, attempt: int, state: str, ts_ns: int, job_id: str) -> dict[str, Any]:
    ms = ts_ns // 1_000_000
    return {
        "task_id": task_id, "attempt_number": attempt, "name": "", "func_or_class_name": "",
        "type": "NORMAL_TASK", "state": state, "job_id": job_id, "actor_id": None, "parent_task_id": None,
        "node_id": None, "worker_id": None, "worker_pid": None, "arg_object_ids": [], "return_object_ids": [],
        "context_tag": None, "owner_address": None, "creation_time_ms": ms,
        "start_time_ms": ms if state == "RUNNING" else None,
        "end_time_ms": ms if state in TERMINAL_STATES else None, "error_type": None, "error_message": None,
        "updated_ns": ts_ns,
    }


def encode(value: Any) -> str:
    return _encode(value)
