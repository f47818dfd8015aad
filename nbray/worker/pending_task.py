"""One task this process owns, from submission to its stored results (owner side).

A driver may queue a million tasks before the first one runs, so a pending
task is kept small: for the common case (a normal task whose arguments hold
no ObjectRefs and that inherits nothing from its parent) it is a slotted
record holding only what differs between calls (ids, the pickled
arguments, the attempt number) and a reference to the spec template its
remote function shares with every other call of the same options. The
``PushTaskRequest`` carrying the full spec is built the first time anyone
asks for ``spec`` or ``push_req`` -- normally when the task is pushed to a
worker, so only tasks in flight hold one. Tasks that need a spec of their
own from the start (actor calls, ref arguments, inherited placement groups
or environments) are built eagerly and behave the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from nbray.protocol import common_pb2, core_worker_pb2

_NORMAL = common_pb2.NORMAL_TASK
_ACTOR = common_pb2.ACTOR_TASK


class GeneratorState:
    """Items of a streaming generator task, as they arrive."""

    __slots__ = ("items", "total", "cond", "consumed", "dropped")

    def __init__(self) -> None:
        self.items: dict[int, bytes] = {}
        self.total: int | None = None
        self.cond = threading.Condition()
        self.consumed = 0
        self.dropped = False


class PendingTask:
    __slots__ = ("_req", "template", "task_id", "job_id", "parent_task_id", "context_tag", "namespace",
                 "caller", "args_pickle", "return_base_id", "name", "attempt", "has_ref_args",
                 "return_ids", "arg_ids", "retries_left", "cancelled", "force_cancelled", "generator",
                 "is_actor", "pushed_to", "lineage_bytes", "on_done", "pin_args", "sched_key",
                 "ev", "ev_sent", "ev_info_sent", "ev_done", "ev_queued", "ev_waiting", "ev_buffer",
                 "holds_handle", "actor_call")

    def __init__(self, push_req: Any, return_ids: list[bytes], arg_ids: Sequence[bytes]) -> None:
        """A task whose full spec (inside `push_req`) exists already."""
        self._req = push_req
        spec = push_req.spec
        self.template = spec
        self.task_id = spec.task_id
        self.job_id = spec.job_id
        self.parent_task_id = spec.parent_task_id
        self.context_tag = spec.context_tag
        self.namespace = spec.namespace
        self.caller: common_pb2.Address | None = None
        self.args_pickle = b""
        self.actor_call: tuple[bytes, int, bytes] | None = None
        self.return_base_id = spec.return_base_id
        self.name = spec.name
        self.attempt = spec.attempt_number
        self.has_ref_args = bool(spec.ref_args)
        self._init_common(spec, return_ids, arg_ids)

    @classmethod
    def compact(cls, template: common_pb2.TaskSpec, task_id: bytes, job_id: bytes, parent_task_id: bytes,
                context_tag: str, namespace: str, caller: common_pb2.Address, args_pickle: bytes,
                return_ids: list[bytes], return_base_id: bytes, name: str,
                actor_call: tuple[bytes, int, bytes] | None = None,
                arg_ids: Sequence[bytes] = ()) -> PendingTask:
        """A task kept as a record; its spec is built on first use.

        `template` is shared and must not change afterwards (remote functions
        and actor handles keep one per set of options and never modify it once
        built). An actor call gives its (actor id, sequence number, caller
        handle id) as `actor_call`; `arg_ids` are ids it holds while pending
        (an actor call's handle)."""
        self = cls.__new__(cls)
        self._req = None
        self.template = template
        self.task_id = task_id
        self.job_id = job_id
        self.parent_task_id = parent_task_id
        self.context_tag = context_tag
        self.namespace = namespace
        self.caller = caller
        self.args_pickle = args_pickle
        self.return_base_id = return_base_id
        self.name = name or template.name
        self.attempt = 0
        self.has_ref_args = False
        self.actor_call = actor_call
        self._init_common(template, return_ids, arg_ids)
        return self

    @property
    def actor_id(self) -> bytes:
        call = self.actor_call
        return call[0] if call is not None else self.template.actor_id

    @property
    def sequence_number(self) -> int:
        call = self.actor_call
        return call[1] if call is not None else self.template.sequence_number

    def _init_common(self, spec: common_pb2.TaskSpec, return_ids: list[bytes], arg_ids: Sequence[bytes]) -> None:
        self.return_ids = return_ids
        self.arg_ids = arg_ids
        kind = spec.type
        self.retries_left = spec.max_retries if kind == _NORMAL else spec.max_task_retries
        self.cancelled = False
        self.force_cancelled = False
        self.generator: GeneratorState | None = GeneratorState() if spec.streaming_generator else None
        self.is_actor = kind == _ACTOR
        # Address of the worker the task was pushed to (for cancel/kill).
        self.pushed_to: common_pb2.Address | None = None
        self.lineage_bytes = 0
        self.on_done: Callable[[], None] | None = None
        self.pin_args = True
        self.sched_key: Any = None
        # Task events (see task_events.py): (attempt, state, unix ns) per transition.
        self.ev: list[tuple[int, int, int]] = []
        self.ev_sent = 0
        self.ev_info_sent = False
        self.ev_done = False
        self.ev_queued = False
        self.ev_waiting = False
        self.ev_buffer: Any = None
        # An actor task's last arg id is its actor handle's ref, held so the
        # actor outlives the call even if the caller drops the handle at once.
        self.holds_handle = False

    # ---- the full spec -------------------------------------------------------------------------------

    @property
    def push_req(self) -> core_worker_pb2.PushTaskRequest:
        """The request that pushes this task (the spec lives inside it, so
        pushing needs no copy)."""
        req = self._req
        if req is None:
            req = self._req = self._build()
        return req

    @property
    def spec(self) -> common_pb2.TaskSpec:
        req = self._req
        if req is None:
            req = self._req = self._build()
        return req.spec

    @property
    def spec_built(self) -> bool:
        return self._req is not None

    def _build(self) -> core_worker_pb2.PushTaskRequest:
        req = core_worker_pb2.PushTaskRequest()
        spec = req.spec
        spec.CopyFrom(self.template)
        spec.task_id = self.task_id
        spec.job_id = self.job_id
        spec.parent_task_id = self.parent_task_id
        assert self.caller is not None
        spec.caller.CopyFrom(self.caller)
        if self.context_tag:
            spec.context_tag = self.context_tag
        spec.namespace = self.namespace
        if self.name != spec.name:
            spec.name = self.name
        spec.args_pickle = self.args_pickle
        spec.return_base_id = self.return_base_id
        spec.attempt_number = self.attempt
        call = self.actor_call
        if call is not None:
            spec.actor_id, spec.sequence_number, spec.caller_handle_id = call
        self.args_pickle = b""  # the spec holds it now
        return req

    def next_attempt(self) -> None:
        """The task is about to run again (a retry or a rebuild)."""
        self.attempt += 1
        if self._req is not None:
            self._req.spec.attempt_number = self.attempt
