"""The owner's record of its recently failed tasks, for post-mortem debugging.

Runs in every core worker (drivers, notebook kernels, workers that submit
tasks). When a task this process owns ends with an exception raised by its
function, the task manager hands the spec here; ``%nbray debug`` reads the
record back, rebuilds the call and re-runs it in the kernel under the
debugger (``nbray.jupyter.debug``).

What is kept, and its bounds:

* the last ``MAX_FAILED_TASKS`` failed tasks of the process, oldest dropped;
* the function's pickled body (shared with the owner's own cache of
  bodies, not copied) and the call's pickled arguments, only when those
  take at most ``MAX_ARGUMENT_BYTES`` (larger ones are dropped, and the
  record says so);
* for an argument passed as an ObjectRef: its id and owner only (plus the
  value when the owner had inlined it into the spec, i.e. a small object).
  The record never holds the ref itself, so it never keeps an object
  alive: while the program still holds a reference the value is fetched
  at debug time; once the last reference is gone the object is freed as
  always, and the debugger says which argument went away and why.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import weakref
from typing import Any

from nbray.protocol import common_pb2

MAX_FAILED_TASKS = 20
MAX_ARGUMENT_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RefArgument:
    """An argument passed as an ObjectRef."""

    position: int                 # -1 for a keyword argument
    keyword: str
    object_id: bytes
    owner: bytes                  # the owner's serialized Address
    inline_value: bytes | None    # the value as the owner inlined it (small objects), else None


@dataclasses.dataclass(frozen=True)
class FailedTask:
    task_id: bytes
    name: str
    is_actor_task: bool
    function_body: bytes          # cloudpickle of the function; empty when the owner no longer had it
    args_pickle: bytes | None     # (args, kwargs) with ObjectRef arguments as None; None when dropped
    ref_args: tuple[RefArgument, ...]
    args_dropped_reason: str      # why the arguments were not kept ("" when they were)
    failed_at: float              # time.time()


def arguments_size(args_pickle: bytes, ref_args: tuple[RefArgument, ...]) -> int:
    return len(args_pickle) + sum(len(r.inline_value or b"") for r in ref_args)


def record_of(spec: Any, function_body: bytes, max_argument_bytes: int = MAX_ARGUMENT_BYTES) -> FailedTask:
    """The record of a failed task from its spec (pure: no I/O)."""
    ref_args = tuple(
        RefArgument(position=ra.position, keyword=ra.keyword, object_id=ra.ref.object_id,
                    owner=ra.ref.owner.SerializeToString(),
                    inline_value=(ra.inline_value.data if ra.has_inline_value
                                  and ra.inline_value.format == common_pb2.VALUE_PICKLE else None))
        for ra in spec.ref_args)
    args_pickle: bytes | None = spec.args_pickle
    reason = ""
    size = arguments_size(spec.args_pickle, ref_args)
    if size > max_argument_bytes:
        args_pickle = None
        ref_args = tuple(dataclasses.replace(r, inline_value=None) for r in ref_args)
        reason = (f"the arguments took {size} bytes, more than the {max_argument_bytes} bytes an owner keeps "
                  "for each failed task")
    return FailedTask(task_id=spec.task_id, name=spec.name or spec.function.qualname,
                      is_actor_task=spec.type == common_pb2.ACTOR_TASK, function_body=function_body,
                      args_pickle=args_pickle, ref_args=ref_args, args_dropped_reason=reason,
                      failed_at=time.time())


class FailedTaskLog:
    """The last failed tasks of one owner, oldest forgotten first."""

    def __init__(self, max_tasks: int = MAX_FAILED_TASKS, max_argument_bytes: int = MAX_ARGUMENT_BYTES) -> None:
        self.max_tasks = max_tasks
        self.max_argument_bytes = max_argument_bytes
        self._tasks: collections.OrderedDict[bytes, FailedTask] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, record: FailedTask) -> None:
        with self._lock:
            self._tasks.pop(record.task_id, None)
            self._tasks[record.task_id] = record
            while len(self._tasks) > self.max_tasks:
                self._tasks.popitem(last=False)

    def latest(self) -> FailedTask | None:
        with self._lock:
            return next(reversed(self._tasks.values()), None)

    def all(self) -> list[FailedTask]:
        """Oldest first."""
        with self._lock:
            return list(self._tasks.values())

    def find(self, task_id_hex: str) -> FailedTask | None:
        """The task whose id is, or starts with, this hex (None when none or several match)."""
        wanted = task_id_hex.strip().lower()
        with self._lock:
            found = [t for t in self._tasks.values() if t.task_id.hex().startswith(wanted)] if wanted else []
        return found[0] if len(found) == 1 else None


_logs: weakref.WeakKeyDictionary[Any, FailedTaskLog] = weakref.WeakKeyDictionary()
_logs_lock = threading.Lock()


def log_of(core: Any) -> FailedTaskLog:
    """The failed-task log of a core worker (made on first use)."""
    with _logs_lock:
        log = _logs.get(core)
        if log is None:
            log = _logs[core] = FailedTaskLog()
        return log


def remember(core: Any, spec: Any) -> None:
    """Called by the task manager when a task this process owns raised."""
    fid = spec.function.function_id
    body = spec.function.pickled or core.function_body(fid)
    log = log_of(core)
    log.add(record_of(spec, body, log.max_argument_bytes))
