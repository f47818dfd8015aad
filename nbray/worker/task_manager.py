"""Tasks this process owns: from submission to stored results (owner side).

A pending task keeps its spec, the ids of its returns and the objects it
borrows as arguments. When the executor replies, the returns are stored
(inline values here, shared-memory objects as locations) and the argument
holds are dropped. A system failure (worker or node death) resubmits the
task while retries remain; an application error only with
``retry_exceptions``; a cancelled task never. Streaming generators store
each item as it is reported; a ``num_returns="dynamic"`` task's items are
then held by its first return, which lists them.
"""

from __future__ import annotations

import logging
import pickle
from typing import TYPE_CHECKING, Any

from nbray.common.serialization import serialize
from nbray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ActorUnschedulableError,
    ObjectLostError,
    OutOfMemoryError,
    OwnerDiedError,
    RayError,
    RaySystemError,
    RuntimeEnvSetupError,
    TaskCancelledError,
    TaskPlacementGroupRemoved,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from nbray.protocol import common_pb2, gcs_pb2
from nbray.worker import failed_tasks
from nbray.worker.gc_policy import BacklogCollector
from nbray.worker.memory_store import Entry, shrunk
from nbray.worker.pending_task import GeneratorState, PendingTask
from nbray.worker.returns import GC_PAUSE_MIN_RETURNS, gc_paused, packed_returns_problem, unpack_returns
from nbray.worker.task_events import record_state

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

_IN_PLASMA = common_pb2.VALUE_IN_PLASMA
_ERROR = common_pb2.VALUE_ERROR


class TaskManager:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.pending: dict[bytes, PendingTask] = {}
        self.backlog_gc = BacklogCollector()
        # finished tasks kept for their generators
        self.generators: dict[bytes, GeneratorState] = {}

    def add(self, task: PendingTask) -> None:
        """Caller holds core.lock."""
        pending = self.pending
        pending[task.task_id] = task
        backlog_gc = self.backlog_gc
        if len(pending) >= backlog_gc.next_freeze:
            backlog_gc.on_submitted(len(pending))
        if task.generator is not None:
            self.generators[task.task_id] = task.generator

    def _backlog_drained(self) -> None:
        """Caller holds core.lock: a task left a large backlog."""
        backlog_gc = self.backlog_gc
        backlog_gc.on_finished(len(self.pending))
        if not backlog_gc.frozen:  # the backlog is gone: so is the room it took
            self.pending = shrunk(self.pending)

    def get(self, task_id: bytes) -> PendingTask | None:
        return self.pending.get(task_id)

    # ---- completion -----------------------------------------------------------------------------

    def on_reply(self, task: PendingTask, reply: Any) -> bool:
        """Handle the executor's reply; returns False if the task was resubmitted."""
        core = self.core
        if reply.is_application_error and task.spec.retry_exceptions and task.retries_left > 0 \
                and not task.cancelled and self._should_retry(task, reply.exception_pickle):
            task.retries_left -= 1
            self._record_failure(task, common_pb2.TASK_EXECUTION_EXCEPTION, "retrying after an exception")
            core.resubmit(task)
            return False
        packed = len(reply.packed_return_sizes)
        if packed:
            problem = packed_returns_problem(reply, len(task.return_ids))
            if problem:
                self.fail(task, RaySystemError(f"task {task.name} got a malformed reply: {problem}"))
                return True
        if (packed or len(reply.returns)) < GC_PAUSE_MIN_RETURNS:
            return self._complete(task, reply, packed > 0)
        with gc_paused():
            return self._complete(task, reply, packed > 0)

    def _complete(self, task: PendingTask, reply: Any, packed: bool = False) -> bool:
        core = self.core
        actions: list[Any] = []
        template = task.template  # static facts, without building a queued task's spec
        any_in_plasma = False
        with core.lock:
            if self.pending.pop(task.task_id, None) is None:
                return True
            if self.backlog_gc.frozen:
                self._backlog_drained()
            refs = core.refs
            owned = refs.refs
            # Small values of a task with several returns come packed; the rest are listed.
            stored = unpack_returns(reply, task.return_ids, owned) if packed else []
            append = stored.append
            for ret in reply.returns:
                oid = ret.object_id
                value = ret.value
                if oid not in owned:
                    if value.format == _IN_PLASMA:
                        core.free_plasma([oid], value.plasma_node_id)
                    for r in value.nested_refs:
                        refs.registered_for_us(r.object_id, r.owner.SerializeToString(), 1)
                        actions.extend(refs.check_release(r.object_id))
                    continue
                if value.nested_refs:
                    nested = [(r.object_id, r.owner.SerializeToString()) for r in value.nested_refs]
                    for inner_id, inner_owner in nested:
                        refs.registered_for_us(inner_id, inner_owner, 1)
                    refs.set_contains(oid, nested)
                fmt = value.format
                if fmt == _IN_PLASMA:
                    any_in_plasma = True
                    ref = owned[oid]
                    ref.in_plasma = True
                    ref.node_ids = {value.plasma_node_id}
                    ref.size = value.plasma_size
                    append((oid, Entry(None, in_plasma=True, node_id=value.plasma_node_id,
                                       size=value.plasma_size)))
                else:
                    append((oid, Entry(value.data, is_error=fmt == _ERROR)))
            if template.dynamic_returns:
                actions.extend(self._release_dynamic_items(task))
            lineage = core.lineage
            if lineage.holds(task.task_id):
                # a rebuild finished: the arguments stay lineage pinned
                lineage.live_returns[task.task_id] = sum(1 for r in task.return_ids if r in refs.refs)
            elif task.pin_args:
                # Only outputs in a shared-memory store can be lost (and rebuilt).
                live = 0
                if any_in_plasma and not reply.is_application_error and lineage.worth_keeping(task, reply):
                    live = sum(1 for r in task.return_ids if r in owned)
                if live:
                    actions.extend(refs.to_lineage(task.arg_ids))
                    actions.extend(lineage.keep(task, live))
                elif task.arg_ids:
                    actions.extend(refs.remove_submitted(task.arg_ids))
        core.lineage.rebuilt(task.task_id)
        core.memory_store.put_many(stored)
        if task.generator is not None:
            gen = task.generator
            with gen.cond:
                gen.total = reply.num_generator_items
                gen.cond.notify_all()
        if actions:
            core.apply_actions(actions)
        if template.type == common_pb2.ACTOR_CREATION_TASK:
            return True
        state = gcs_pb2.FAILED if reply.is_application_error or reply.was_cancelled else gcs_pb2.FINISHED
        if state == gcs_pb2.FAILED:
            if not reply.was_cancelled:
                failed_tasks.remember(core, task.spec)  # kept for %nbray debug
            # the executor reported the exception itself; record only the state here
            self._record_failure(task, common_pb2.TASK_CANCELLED if reply.was_cancelled
                                 else common_pb2.TASK_EXECUTION_EXCEPTION, "")
        else:
            record_state(task, state)  # reported soon
        task.ev_done = True
        if task.on_done is not None:
            task.on_done()
        return True

    def _should_retry(self, task: PendingTask, exception_pickle: bytes) -> bool:
        if not task.spec.retry_exception_types:
            return True
        try:
            types = pickle.loads(task.spec.retry_exception_types)
            exc = pickle.loads(exception_pickle) if exception_pickle else None
        except Exception:
            return False
        return exc is not None and isinstance(exc, tuple(types))

    # ---- failures --------------------------------------------------------------------------------

    def on_system_failure(self, task: PendingTask, error_type: int, message: str,
                          retryable: bool = True) -> None:
        """The worker or node running the task failed (not the user code)."""
        if task.task_id not in self.pending or self.core.shutting_down:
            return
        if retryable and not task.cancelled and task.retries_left != 0:
            if task.retries_left > 0:
                task.retries_left -= 1
            self._record_failure(task, error_type, message)
            delay = self.core.config.task_retry_delay_ms / 1000
            logger.info("retrying task %s (attempt %d): %s", task.name, task.attempt + 2, message)
            if delay:
                self.core.loop.call_later(delay, self.core.resubmit, task)
            else:
                self.core.resubmit(task)
            return
        self.fail(task, self._error_for(task, error_type, message), error_type)

    def fail(self, task: PendingTask, error: BaseException, error_type: int = common_pb2.SYSTEM_ERROR) -> None:
        """Store `error` as the value of every return of the task."""
        core = self.core
        data = _error_bytes(error)
        actions: list[Any] = []
        with core.lock:
            if self.pending.pop(task.task_id, None) is None:
                return
            if self.backlog_gc.frozen:
                self._backlog_drained()
            live = [oid for oid in task.return_ids if oid in core.refs.refs]
            if task.spec.dynamic_returns:
                actions.extend(self._release_dynamic_items(task))
            if core.lineage.holds(task.task_id):
                core.lineage.rebuilt(task.task_id)  # a failed rebuild keeps its pins until freed
            elif task.pin_args:
                actions.extend(core.refs.remove_submitted(task.arg_ids))
        for oid in live:
            core.memory_store.put(oid, Entry(data, is_error=True))
        if task.generator is not None:
            gen = task.generator
            with gen.cond:
                if gen.total is None:
                    gen.total = len(gen.items)
                gen.cond.notify_all()
        core.apply_actions(actions)
        self._record_failure(task, error_type, str(error))
        task.ev_done = True
        if task.on_done is not None:
            task.on_done()

    def _record_failure(self, task: PendingTask, error_type: int, message: str) -> None:
        if task.template.type != common_pb2.ACTOR_CREATION_TASK:
            self.core.events.failed(task.task_id, task.attempt, error_type, message[:2000], "")

    def _error_for(self, task: PendingTask, error_type: int, message: str) -> BaseException:
        if task.cancelled or error_type == common_pb2.TASK_CANCELLED:
            return TaskCancelledError(task.task_id.hex())
        if error_type == common_pb2.ACTOR_DIED:
            return ActorDiedError(task.spec.actor_id.hex(), message)
        if error_type == common_pb2.ACTOR_UNAVAILABLE:
            return ActorUnavailableError(task.spec.actor_id.hex(), message)
        if error_type == common_pb2.TASK_UNSCHEDULABLE:
            return TaskUnschedulableError(message)
        if error_type == common_pb2.ACTOR_UNSCHEDULABLE:
            return ActorUnschedulableError(message)
        if error_type == common_pb2.RUNTIME_ENV_SETUP_FAILED:
            return RuntimeEnvSetupError(message)
        if error_type == common_pb2.OWNER_DIED:
            return OwnerDiedError(message=message)
        if error_type == common_pb2.OBJECT_LOST:
            return ObjectLostError(message=message)
        if error_type == common_pb2.PLACEMENT_GROUP_REMOVED:
            return TaskPlacementGroupRemoved(message)
        if error_type == common_pb2.OUT_OF_MEMORY:
            attempts = task.spec.max_retries if not task.is_actor else task.spec.max_task_retries
            return OutOfMemoryError(
                f"Task {task.name} (task id {task.task_id.hex()}) was killed because its node ran low on "
                f"memory. {message} The task was tried {max(0, attempts) + 1} time(s) (max_retries={attempts}). "
                "To avoid this, lower the task's memory use or run fewer such tasks at once (ask for more "
                "CPUs or memory per task); to change when workers are killed, set memory_usage_threshold "
                "(NBRAY_MEMORY_USAGE_THRESHOLD, now the fraction above), or turn the monitor off with "
                "NBRAY_MEMORY_MONITOR_REFRESH_MS=0.")
        if error_type == common_pb2.WORKER_DIED or error_type == common_pb2.NODE_DIED:
            attempts = (task.spec.max_retries if not task.is_actor else task.spec.max_task_retries)
            return WorkerCrashedError(
                f"The worker running task {task.name} died unexpectedly: {message}. The task was tried "
                f"{max(0, attempts) + 1} time(s) (max_retries={attempts}). Check the worker's output for a "
                "crash (segfault, os._exit, out of memory).")
        return RaySystemError(message)

    # ---- generators ----------------------------------------------------------------------------

    def _release_dynamic_items(self, task: PendingTask) -> list[Any]:
        """Caller holds core.lock. A num_returns="dynamic" task ended: its
        first return now contains its items (or holds the error), so the
        hold taken on each item as it arrived goes."""
        gen = self.generators.pop(task.task_id, None)
        if gen is None:
            return []
        with gen.cond:
            gen.dropped = True
            item_ids = list(gen.items.values())
        actions: list[Any] = []
        for oid in item_ids:
            actions.extend(self.core.refs.remove_local(oid))
        return actions

    def on_generator_item(self, task_id: bytes, index: int, item: Any) -> bool:
        """Store a reported item; returns False when nobody wants items anymore."""
        core = self.core
        gen = self.generators.get(task_id)
        if gen is None or gen.dropped:
            return False
        oid = item.object_id
        if gen.items.get(index) == oid:
            return True  # a retried attempt yields it again: objects never change, keep the first
        value = item.value
        with core.lock:
            core.refs.own(oid, local=1)
            if value.nested_refs:
                nested = [(r.object_id, r.owner.SerializeToString()) for r in value.nested_refs]
                for inner_id, inner_owner in nested:
                    core.refs.registered_for_us(inner_id, inner_owner, 1)
                core.refs.set_contains(oid, nested)
            if value.format == _IN_PLASMA:
                ref = core.refs.refs[oid]
                ref.in_plasma = True
                ref.node_ids = {value.plasma_node_id}
                ref.size = value.plasma_size
                entry = Entry(None, in_plasma=True, node_id=value.plasma_node_id, size=value.plasma_size)
            else:
                entry = Entry(value.data, is_error=value.format == _ERROR)
        core.memory_store.put(oid, entry)
        with gen.cond:
            gen.items[index] = oid
            gen.cond.notify_all()
        return True


def _error_bytes(error: BaseException) -> bytes:
    try:
        return serialize(error, is_error=True).to_bytes()
    except TypeError:
        return serialize(RayError(f"{type(error).__name__}: {error}"), is_error=True).to_bytes()
