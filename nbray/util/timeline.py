"""``nbray.timeline``: task attempts as a Chrome trace (driver, or any process with a cluster address).

The output is the JSON array form of the Trace Event Format that Ray's
``ray.timeline`` writes and that Perfetto (ui.perfetto.dev) and
chrome://tracing open: one complete event (``"ph": "X"``) per task attempt
that ran, on the row of its node (``pid``) and worker (``tid``), from its
RUNNING state to its end, in microseconds since the epoch. Attempts still
running end at the time of the call; attempts that never ran (failed while
waiting for arguments or a lease, or still queued) have no bar and are left
out. Failed attempts carry ``"cname": "terrible"`` (red in the viewers) and
``args.failed``.

Times come from the GCS's task-event store with nanosecond precision; the
state API shows the same timestamps in milliseconds.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterable
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2

_TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
_ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}
_STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
_TERMINAL = (gcs_pb2.FINISHED, gcs_pb2.FAILED)

# Trace-viewer colour names (catapult's reserved colours).
COLOR_FINISHED = "thread_state_running"
COLOR_FAILED = "terrible"
COLOR_RUNNING = "thread_state_runnable"


def attempt_span(states: Iterable[int], ts_ns: Iterable[int]) -> tuple[int, int | None, int | None] | None:
    """(start_ns, end_ns, final state) of an attempt from its state history, or None if it never ran.

    The same choice as the state API's start_time_ms/end_time_ms: the latest
    RUNNING, and the FINISHED time, else the FAILED time; end and final state
    are None while it runs.
    """
    latest: dict[int, int] = {}
    for state, ts in sorted(zip(states, ts_ns), key=lambda e: e[1]):
        latest[state] = ts
    start = latest.get(gcs_pb2.RUNNING)
    if start is None:
        return None
    for final in _TERMINAL:
        if final in latest:
            return start, latest[final], final
    return start, None, None


def trace_event(row: gcs_pb2.TaskStateRow, now_ns: int) -> dict[str, Any] | None:
    """The complete event of one task attempt, or None if it never ran."""
    span = attempt_span(row.states, row.state_ts_ns)
    if span is None:
        return None
    start, end, final = span
    info = row.info
    failed = final == gcs_pb2.FAILED
    end_ns = end if end is not None else max(start, now_ns)
    node = row.node_id.hex()
    args: dict[str, Any] = {
        "task_id": row.task_id.hex(),
        "attempt_number": row.attempt_number,
        "state": _STATE_NAMES.get(final, "RUNNING") if final is not None else "RUNNING",
        "failed": failed,
        "name": info.name,
        "func_or_class_name": info.func_or_class_name,
        "job_id": info.job_id.hex(),
        "node_id": node,
        "worker_id": row.worker_id.hex(),
        "worker_pid": row.worker_pid,
        "actor_id": info.actor_id.hex() if info.actor_id else None,
        "arg_object_ids": [o.hex() for o in info.arg_object_ids],
        "return_object_ids": [o.hex() for o in info.return_object_ids],
    }
    if failed:
        args["error_type"] = _ERROR_NAMES.get(row.error.type) if row.error.type else None
        args["error_message"] = row.error.message or None
    return {
        "name": info.name or info.func_or_class_name or "task",
        "cat": _TYPE_NAMES.get(info.type, "NORMAL_TASK").lower(),
        "ph": "X",
        "ts": start / 1000,
        "dur": (end_ns - start) / 1000,
        "pid": f"node {node[:12]}" if node else "node ?",
        "tid": f"worker {row.worker_pid}" if row.worker_pid else f"worker {row.worker_id.hex()[:12]}",
        "cname": COLOR_FAILED if failed else COLOR_FINISHED if final is not None else COLOR_RUNNING,
        "args": args,
    }


def trace_events(rows: Iterable[gcs_pb2.TaskStateRow], now_ns: int | None = None) -> list[dict[str, Any]]:
    """Complete events of the attempts that ran, ordered by start time."""
    now = time.time_ns() if now_ns is None else now_ns
    events = [e for e in (trace_event(r, now) for r in rows) if e is not None]
    events.sort(key=lambda e: e["ts"])
    return events


def check_output_path(filename: str | os.PathLike[str]) -> str:
    """The path to write, as a str; FileNotFoundError naming the directory when it does not exist."""
    path = os.fspath(filename)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot write the timeline: the directory {directory} does not exist",
                                path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "cannot write the timeline: the path is a directory", path)
    return path


def timeline(filename: str | os.PathLike[str] | None = None, address: str | None = None) -> list[dict[str, Any]] | None:
    """Chrome trace events of every task attempt the GCS keeps (Ray's ``ray.timeline``).

    Returns the list of events without `filename`; with it, writes them
    there as JSON and returns None. Raises FileNotFoundError when the
    file's directory does not exist (before asking the cluster anything),
    ConnectionError when no cluster is reachable.
    """
    from nbray.util.state import read_task_rows

    path = check_output_path(filename) if filename is not None else None
    events = trace_events(read_task_rows(address))
    if path is None:
        return events
    with open(path, "w") as f:
        json.dump(events, f)
    return None
