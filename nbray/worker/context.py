"""What the current thread is running: task, job, actor, resources.

A driver runs its own root task; a worker runs one task at a time on its
main thread (or several, on threads or coroutines, for concurrent actors),
so the context is thread-local and async actors copy it per call.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any


class TaskContext:
    """The task whose code is running on this thread."""

    __slots__ = ("task_id", "job_id", "name", "func_name", "actor_id", "attempt", "context_tag",
                 "resource_ids", "resources", "placement_group_id", "capture_child_tasks",
                 "cancelled", "_puts", "namespace", "is_actor_creation", "runtime_env")

    def __init__(self, task_id: bytes, job_id: bytes, *, name: str = "", func_name: str = "",
                 actor_id: bytes = b"", attempt: int = 0, context_tag: str = "",
                 resource_ids: dict[str, list[str]] | None = None,
                 resources: Any = None, placement_group_id: bytes = b"",
                 capture_child_tasks: bool = False, namespace: str = "",
                 is_actor_creation: bool = False, runtime_env: dict[str, Any] | None = None) -> None:
        self.task_id = task_id
        self.job_id = job_id
        self.name = name
        self.func_name = func_name
        self.actor_id = actor_id
        self.attempt = attempt
        self.context_tag = context_tag
        self.resource_ids = resource_ids or {}
        # a dict, or the protobuf map of the task's spec (read-only)
        self.resources: Any = resources if resources is not None else {}
        self.placement_group_id = placement_group_id
        self.capture_child_tasks = capture_child_tasks
        self.cancelled = False
        self._puts = itertools.count(1)
        self.namespace = namespace
        self.is_actor_creation = is_actor_creation
        self.runtime_env = runtime_env or {}

    def next_put_index(self) -> int:
        return next(self._puts)


class _ThreadContext(threading.local):
    def __init__(self) -> None:
        self.task: TaskContext | None = None


_thread = _ThreadContext()
_async_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("nbray_task", default=None)
_root: list[TaskContext | None] = [None]


def set_root(ctx: TaskContext | None) -> None:
    """The context of threads not running a task (the driver's root task)."""
    _root[0] = ctx


def current() -> TaskContext:
    ctx = _async_task.get() or _thread.task or _root[0]
    if ctx is None:
        raise RuntimeError("nbray is not initialized; call nbray.init() first")
    return ctx


def current_or_none() -> TaskContext | None:
    return _async_task.get() or _thread.task or _root[0]


def set_thread_task(ctx: TaskContext | None) -> None:
    _thread.task = ctx


def set_async_task(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    return _async_task.set(ctx)


def reset_async_task(token: contextvars.Token[TaskContext | None]) -> None:
    _async_task.reset(token)
