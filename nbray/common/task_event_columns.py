"""Owned tasks' event reports in columns (``gcs_pb2.TaskEventColumns``).

An owner reports thousands of task attempts a second. One
``TaskEventRecord`` each means a message object per attempt and a dozen
protobuf field accesses per attempt on both ends, which cost more than the
task itself. In columns, the owner appends plain Python values to lists and
hands each list to protobuf once per batch, and the GCS reads each column
once. Facts that many attempts share (function, job, caller, parent,
resources) travel once per batch as a ``TaskInfo`` template; each attempt
adds only its object ids.

``ColumnWriter`` runs in core workers, ``read_columns`` in the GCS; both are
pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from nbray.common.ids import OBJECT_ID_SIZE, TASK_ID_SIZE
from nbray.protocol import gcs_pb2


class ColumnsError(ValueError):
    """A ``TaskEventColumns`` message whose columns do not fit together."""


class ColumnWriter:
    """Collects attempts' reports; ``fill`` writes them into a message."""

    __slots__ = ("task_ids", "attempts", "num_states", "states", "ts", "info_index", "infos", "_info_pos",
                 "num_args", "arg_ids", "num_returns", "return_ids", "running", "runner")

    def __init__(self) -> None:
        self.task_ids: list[bytes] = []
        self.attempts: list[int] = []
        self.num_states: list[int] = []
        self.states: list[int] = []
        self.ts: list[int] = []
        self.info_index: list[int] = []
        self.infos: list[gcs_pb2.TaskInfo] = []
        self._info_pos: dict[int, int] = {}
        self.num_args: list[int] = []
        self.arg_ids: list[bytes] = []
        self.num_returns: list[int] = []
        self.return_ids: list[bytes] = []
        self.running: list[tuple[bytes, int, int]] = []
        self.runner: tuple[bytes, bytes, int] | None = None

    def __len__(self) -> int:
        return len(self.attempts) + len(self.running)

    def add_running(self, task_id: bytes, attempt: int, ts_ns: int, node_id: bytes, worker_id: bytes,
                    pid: int) -> bool:
        """An attempt this process began to run at `ts_ns`; False (nothing
        added) when the batch already holds another node, worker or pid."""
        runner = (node_id, worker_id, pid)
        if self.runner is None:
            self.runner = runner
        elif self.runner != runner:
            return False
        self.running.append((task_id, attempt, ts_ns))
        return True

    def add_task(self, task_id: bytes, events: Sequence[tuple[int, int, int]], info_attempt: int = 0,
                 info: tuple[gcs_pb2.TaskInfo, Sequence[bytes], Sequence[bytes]] | None = None) -> None:
        """One task's new states, ``(attempt, state, unix ns)`` in order (an
        entry per run of one attempt), and, when given, its static facts
        ``(template, arg ids, return ids)`` for attempt `info_attempt`."""
        start = 0
        n = len(events)
        while start < n:
            attempt = events[start][0]
            end = start + 1
            while end < n and events[end][0] == attempt:
                end += 1
            self._entry(task_id, attempt, events[start:end],
                        info if info is not None and attempt == info_attempt else None)
            if attempt == info_attempt:
                info = None
            start = end
        if info is not None:  # no new state of that attempt: the facts alone
            self._entry(task_id, info_attempt, (), info)

    def _entry(self, task_id: bytes, attempt: int, events: Sequence[tuple[int, int, int]],
               info: tuple[gcs_pb2.TaskInfo, Sequence[bytes], Sequence[bytes]] | None) -> None:
        self.task_ids.append(task_id)
        self.attempts.append(attempt)
        self.num_states.append(len(events))
        for _, state, ts in events:
            self.states.append(state)
            self.ts.append(ts)
        if info is None:
            self.info_index.append(0)
            self.num_args.append(0)
            self.num_returns.append(0)
            return
        template, args, returns = info
        pos = self._info_pos.get(id(template))
        if pos is None:
            # `infos` holds the template, so its id stays unique for the batch
            self.infos.append(template)
            pos = self._info_pos[id(template)] = len(self.infos)
        self.info_index.append(pos)
        self.num_args.append(len(args))
        self.arg_ids.extend(args)
        self.num_returns.append(len(returns))
        self.return_ids.extend(returns)

    def fill(self, columns: gcs_pb2.TaskEventColumns) -> None:
        columns.task_ids = b"".join(self.task_ids)
        columns.attempts.extend(self.attempts)
        columns.num_states.extend(self.num_states)
        columns.states.extend(self.states)  # type: ignore[arg-type]
        columns.state_ts_ns.extend(self.ts)
        columns.info_index.extend(self.info_index)
        columns.infos.extend(self.infos)
        columns.num_args.extend(self.num_args)
        columns.arg_ids = b"".join(self.arg_ids)
        columns.num_returns.extend(self.num_returns)
        columns.return_ids = b"".join(self.return_ids)
        if self.running:
            assert self.runner is not None
            columns.running_task_ids = b"".join([r[0] for r in self.running])
            columns.running_attempts.extend([r[1] for r in self.running])
            columns.running_ts_ns.extend([r[2] for r in self.running])
            columns.node_id, columns.worker_id, columns.worker_pid = self.runner


class Entry(NamedTuple):
    """One attempt's report, read back from columns."""

    task_id: bytes
    attempt: int
    states: list[int]
    ts: list[int]
    info: gcs_pb2.TaskInfo | None
    """The shared template (without object ids), or None when this report carries no facts."""
    arg_ids: bytes
    """Concatenated object ids (OBJECT_ID_SIZE each)."""
    return_ids: bytes


def read_running(columns: gcs_pb2.TaskEventColumns) -> Iterator[tuple[bytes, int, int]]:
    """``(task_id, attempt, ts_ns)`` of each attempt the reporter began to
    run (on ``columns.node_id``, ``worker_id``, ``worker_pid``).

    Raises ColumnsError when the columns do not fit together (checked before
    anything is yielded)."""
    attempts = columns.running_attempts[:]
    ts = columns.running_ts_ns[:]
    task_ids = columns.running_task_ids
    if len(ts) != len(attempts) or len(task_ids) != len(attempts) * TASK_ID_SIZE:
        raise ColumnsError(f"task event columns: {len(attempts)} running attempts with {len(ts)} times "
                           f"and {len(task_ids)} bytes of task ids")
    for i, attempt in enumerate(attempts):
        yield task_ids[i * TASK_ID_SIZE:(i + 1) * TASK_ID_SIZE], attempt, ts[i]


def read_columns(columns: gcs_pb2.TaskEventColumns) -> Iterator[Entry]:
    """The entries of `columns`, in order. Templates are copied out of the
    message, so nothing kept refers to (and keeps alive) the request.

    Raises ColumnsError when the columns do not fit together (checked before
    anything is yielded)."""
    attempts = columns.attempts[:]
    count = len(attempts)
    if not count:
        return
    task_ids = columns.task_ids
    num_states = columns.num_states[:]
    states = columns.states[:]
    ts = columns.state_ts_ns[:]
    info_index = columns.info_index[:]
    num_args = columns.num_args[:]
    num_returns = columns.num_returns[:]
    arg_ids = columns.arg_ids
    return_ids = columns.return_ids
    templates: list[gcs_pb2.TaskInfo] = []
    for info in columns.infos:
        copy = gcs_pb2.TaskInfo()
        copy.CopyFrom(info)
        templates.append(copy)
    _check(count, task_ids, num_states, states, ts, info_index, len(templates), num_args, arg_ids,
           num_returns, return_ids)
    s = a = r = 0
    # tuple.__new__ straight: a named tuple's own constructor is a Python
    # function, and this runs once per task reported.
    make = tuple.__new__
    for i in range(count):
        n = num_states[i]
        k = info_index[i]
        na = num_args[i] * OBJECT_ID_SIZE
        nr = num_returns[i] * OBJECT_ID_SIZE
        yield make(Entry, (task_ids[i * TASK_ID_SIZE:(i + 1) * TASK_ID_SIZE], attempts[i], states[s:s + n],
                           ts[s:s + n], templates[k - 1] if k else None, arg_ids[a:a + na], return_ids[r:r + nr]))
        s += n
        a += na
        r += nr


def _check(count: int, task_ids: bytes, num_states: list[int], states: list[int], ts: list[int],
           info_index: list[int], num_infos: int, num_args: list[int], arg_ids: bytes,
           num_returns: list[int], return_ids: bytes) -> None:
    per_entry = {"num_states": num_states, "info_index": info_index, "num_args": num_args,
                 "num_returns": num_returns}
    for name, column in per_entry.items():
        if len(column) != count:
            raise ColumnsError(f"task event columns: {name} has {len(column)} entries, attempts has {count}")
    if len(task_ids) != count * TASK_ID_SIZE:
        raise ColumnsError(f"task event columns: task_ids holds {len(task_ids)} bytes, "
                           f"expected {count} ids of {TASK_ID_SIZE}")
    if min(num_states) < 0 or sum(num_states) != len(states) or len(states) != len(ts):
        raise ColumnsError(f"task event columns: num_states adds up to {sum(num_states)}, "
                           f"with {len(states)} states and {len(ts)} times")
    if min(info_index) < 0 or max(info_index) > num_infos:
        raise ColumnsError(f"task event columns: an info_index is outside 0..{num_infos}")
    for name, counts, ids in (("arg_ids", num_args, arg_ids), ("return_ids", num_returns, return_ids)):
        if min(counts) < 0 or sum(counts) * OBJECT_ID_SIZE != len(ids):
            raise ColumnsError(f"task event columns: {name} holds {len(ids)} bytes, "
                               f"expected {sum(counts)} ids of {OBJECT_ID_SIZE}")


def split_ids(ids: bytes) -> list[bytes]:
    """Concatenated object ids, one by one."""
    return [ids[i:i + OBJECT_ID_SIZE] for i in range(0, len(ids), OBJECT_ID_SIZE)]
