"""Submitting normal tasks: dependencies, leases, direct pushes (owner side).

Runs on the core worker's I/O thread. A task waits until its top-level
ObjectRef arguments exist; small ones are then inlined into the spec. Tasks
are queued by scheduling class (resource shape, environment, strategy);
for each class the submitter asks the raylet for worker leases, follows
spillbacks to other nodes, and pushes tasks straight to the leased
workers. Short tasks are pipelined several deep on a worker; a lease is
reused while its class has work and returned after a short idle time.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from nbray.common.serialization import deserialize
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.worker import push_encoding
from nbray.worker.memory_store import Entry
from nbray.worker.pending_task import PendingTask
from nbray.worker.task_events import record_state

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

_PUSH = method("CoreWorkerService.PushTask")
_CANCEL = method("CoreWorkerService.CancelTask")
_LEASE = method("RayletService.RequestWorkerLease")
_RETURN = method("RayletService.ReturnWorker")
_KILL = method("RayletService.KillWorker")
_FAILURE_CAUSE = method("RayletService.GetWorkerFailureCause")
_LeaseReply = raylet_pb2.RequestWorkerLeaseReply
_F = TypeVar("_F", bound=Callable[..., Any])


def locked(fn: _F) -> _F:
    """Run a submitter entry point under its lock (I/O thread and user threads)."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class LeasedWorker:
    __slots__ = ("lease_id", "address", "conn", "raylet", "resource_ids", "in_flight", "idle_timer",
                 "node_id", "dead", "worker_id", "tasks", "last_used")

    def __init__(self, lease_id: int, address: common_pb2.Address, raylet: Connection,
                 resource_ids: dict[str, str], node_id: bytes) -> None:
        self.lease_id = lease_id
        self.address = address
        self.worker_id = address.worker_id
        self.conn: Connection | None = None
        self.raylet = raylet
        self.resource_ids = resource_ids
        self.in_flight = 0
        self.idle_timer: Any = None
        self.node_id = node_id
        self.dead = False
        self.tasks: dict[bytes, PendingTask] = {}
        # monotonic time of the last push (the idle timer re-arms until the
        # lease has been idle long enough)
        self.last_used = 0.0


class ClassQueue:
    __slots__ = ("key", "template", "tasks", "workers", "pending_leases", "ewma_us", "retry_timer",
                 "locality", "spread")

    def __init__(self, key: tuple[Any, ...], template: common_pb2.TaskSpec) -> None:
        self.key = key
        self.template = template
        self.tasks: deque[PendingTask] = deque()
        self.workers: list[LeasedWorker] = []
        self.pending_leases = 0
        # Average execution time; unknown until the first reply.
        self.ewma_us = -1.0
        self.retry_timer: Any = None
        # node whose raylet to ask first (it holds most argument bytes)
        self.locality = b""
        self.spread = template.scheduling_strategy.kind == common_pb2.SchedulingStrategy.SPREAD


def scheduling_key(spec: common_pb2.TaskSpec) -> tuple[Any, ...]:
    s = spec.scheduling_strategy
    return (
        tuple(sorted(spec.resources.items())),
        tuple(sorted(spec.runtime_env.env_vars.items())),
        s.kind, s.node_id, s.soft, s.placement_group_id, s.bundle_index,
    )


class NormalTaskSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.queues: dict[tuple[Any, ...], ClassQueue] = {}
        self._lease_seq = 0
        self._waiting_deps: dict[bytes, PendingTask] = {}
        self._pushed: dict[bytes, LeasedWorker] = {}
        # Guards the queues and leases: the I/O thread runs the submitter, and
        # user threads push directly to an idle leased worker (fast path).
        self._lock = threading.RLock()
        config = core.config
        self._pipelining_limit_us = config.pipelining_max_task_duration_us
        self._max_in_flight = config.max_tasks_in_flight_per_worker

    def try_push_now(self, task: PendingTask) -> bool:
        """User thread: push at once if a leased worker is free and the task
        needs nothing else first. False means: take the normal path."""
        key = task.sched_key
        if key is None or task.has_ref_args:
            return False
        with self._lock:
            cq = self.queues.get(key)
            if cq is None or cq.tasks:
                return False
            depth = self._depth(cq)
            for lw in cq.workers:
                if lw.conn is not None and not lw.dead and lw.in_flight < depth:
                    record_state(task, gcs_pb2.PENDING_NODE_ASSIGNMENT)
                    self._push(cq, lw, task)
                    return True
        return False

    # ---- dependencies ---------------------------------------------------------------------------

    @locked
    def submit(self, task: PendingTask) -> None:
        """Resolve arguments, then queue the task."""
        if task.cancelled:
            self.core.task_manager.fail(task, _cancelled(task))
            return
        missing = self._resolve(task)
        if missing:
            self._waiting_deps[task.task_id] = task
            remaining = {"n": len(missing)}

            def on_ready(_entry: Entry) -> None:
                remaining["n"] -= 1
                if remaining["n"] == 0:
                    self.core.post(self._deps_ready, task)

            for oid, owner in missing:
                self.core.post(self.core.ensure_status, oid, owner)
                self.core.memory_store.on_ready(oid, on_ready)
            return
        self._enqueue(task)

    @locked
    def _deps_ready(self, task: PendingTask) -> None:
        if self._waiting_deps.pop(task.task_id, None) is None:
            return  # cancelled while waiting
        self.submit(task)

    def _resolve(self, task: PendingTask) -> list[tuple[bytes, bytes]]:
        """Inline small ready arguments; return the (id, owner) still missing."""
        missing: list[tuple[bytes, bytes]] = []
        if not task.has_ref_args:
            return missing
        store = self.core.memory_store
        for arg in task.spec.ref_args:
            if arg.has_inline_value:
                continue
            oid = arg.ref.object_id
            entry = store.get(oid)
            if entry is None:
                missing.append((oid, arg.ref.owner.SerializeToString()))
            elif entry.is_error:
                # A failed argument fails the task with the same error.
                self.core.task_manager.fail(task, _stored_error(entry))
                return []
            elif not entry.in_plasma:
                arg.inline_value.data = entry.data
                arg.has_inline_value = True
            else:
                # a location hint: the executor reads it from its store (pulled if remote)
                value = arg.inline_value
                value.format = common_pb2.VALUE_IN_PLASMA
                value.plasma_node_id = entry.node_id
                value.plasma_size = entry.size
                arg.has_inline_value = True
        return missing

    def _locality_node(self, task: PendingTask) -> bytes:
        """The node holding most argument bytes, if that is worth moving for."""
        if not task.has_ref_args:
            return b""
        spec = task.spec
        if spec.scheduling_strategy.kind != common_pb2.SchedulingStrategy.DEFAULT:
            return b""
        by_node: dict[bytes, int] = {}
        for arg in spec.ref_args:
            v = arg.inline_value
            if arg.has_inline_value and v.format == common_pb2.VALUE_IN_PLASMA:
                by_node[v.plasma_node_id] = by_node.get(v.plasma_node_id, 0) + v.plasma_size
        if not by_node:
            return b""
        node, size = max(by_node.items(), key=lambda kv: kv[1])
        if size < self.core.config.locality_min_arg_bytes or node == self.core.node_id:
            return b""
        return node if self.core.node_address(node) is not None else b""

    # ---- queues and leases --------------------------------------------------------------------------

    def _enqueue(self, task: PendingTask, front: bool = False) -> None:
        if task.task_id not in self.core.task_manager.pending:
            return
        key = task.sched_key
        if key is None:
            key = task.sched_key = scheduling_key(task.template)
        locality = self._locality_node(task)
        if locality:
            key = key + (locality,)
        cq = self.queues.get(key)
        if cq is None:
            cq = self.queues[key] = ClassQueue(key, task.template)
            cq.locality = locality
        if front:
            cq.tasks.appendleft(task)
        else:
            cq.tasks.append(task)
        record_state(task, gcs_pb2.PENDING_NODE_ASSIGNMENT)
        self._dispatch(cq)

    @locked
    def resubmit(self, task: PendingTask) -> None:
        task.next_attempt()
        if task.has_ref_args:
            for arg in task.spec.ref_args:
                # values may have moved (e.g. reconstructed elsewhere); resolve again
                if arg.has_inline_value and arg.inline_value.format == common_pb2.VALUE_IN_PLASMA:
                    arg.has_inline_value = False
        task.sched_key = None
        record_state(task, gcs_pb2.PENDING_ARGS_AVAIL)
        self.submit(task)

    def _depth(self, cq: ClassQueue) -> int:
        if cq.spread:
            return 1  # one task per worker at a time, so leases on every node share the work
        if 0 <= cq.ewma_us < self._pipelining_limit_us:
            return self._max_in_flight
        return 1

    def _dispatch(self, cq: ClassQueue) -> None:
        depth = self._depth(cq)
        tasks = cq.tasks
        if tasks:
            for lw in cq.workers:
                if lw.conn is None or lw.dead:
                    continue
                while tasks and lw.in_flight < depth:
                    self._push(cq, lw, tasks.popleft())
                if not tasks:
                    break
        if tasks:
            busy_capacity = sum(1 for lw in cq.workers if lw.conn is None)
            want = min(len(tasks) - busy_capacity, self.core.config.max_pending_lease_requests_per_class)
            while cq.pending_leases < want:
                self._lease_from_best_raylet(cq)
        for lw in cq.workers:
            if lw.in_flight == 0 and lw.conn is not None and not tasks:
                self._arm_idle(cq, lw)

    def _lease_from_best_raylet(self, cq: ClassQueue) -> None:
        address = self.core.node_address(cq.locality) if cq.locality else None
        if address is None:
            self._request_lease(cq, self.core.raylet, grant_or_reject=False)
            return
        conn = self.core.pool.cached(address)
        if conn is not None:
            self._request_lease(cq, conn, grant_or_reject=False)
            return
        cq.pending_leases += 1

        def on_conn(conn: Connection | None, err: BaseException | None) -> None:
            with self._lock:
                cq.pending_leases -= 1
                self._request_lease(cq, conn if conn is not None else self.core.raylet, grant_or_reject=False)

        self.core.pool.get(address, on_conn)

    def _request_lease(self, cq: ClassQueue, raylet: Connection, grant_or_reject: bool) -> None:
        core = self.core
        self._lease_seq += 1
        spec = cq.template
        req = raylet_pb2.RequestWorkerLeaseRequest(
            lease_request_id=self._lease_seq, job_id=core.job_id, task_name=spec.name,
            backlog_size=len(cq.tasks), grant_or_reject=grant_or_reject,
            prefer_local=bool(cq.locality) and raylet is not core.raylet, is_retriable=spec.max_retries != 0)
        req.resources.update(spec.resources)
        req.scheduling_strategy.CopyFrom(spec.scheduling_strategy)
        req.runtime_env.CopyFrom(spec.runtime_env)
        req.owner.CopyFrom(core.address)
        cq.pending_leases += 1
        raylet.call(_LEASE, req, callback=lambda reply, err: self._on_lease(cq, raylet, reply, err))

    @locked
    def _on_lease(self, cq: ClassQueue, raylet: Connection, reply: Any, error: BaseException | None) -> None:
        cq.pending_leases -= 1
        if error is not None:
            if raylet is self.core.raylet:
                self._fail_queue(cq, common_pb2.SYSTEM_ERROR, f"the local raylet is unreachable: {error}")
            else:  # a remote raylet went away; try again from the local one
                self._dispatch(cq)
            return
        status = reply.status
        if status == _LeaseReply.GRANTED:
            if not cq.tasks:
                raylet.call(_RETURN, raylet_pb2.ReturnWorkerRequest(lease_id=reply.lease_id))
                return
            lw = LeasedWorker(reply.lease_id, reply.worker_address, raylet, dict(reply.resource_ids),
                              reply.node_id)
            cq.workers.append(lw)
            self.core.pool.get(reply.worker_address, lambda conn, err: self._on_worker_conn(cq, lw, conn, err))
        elif status == _LeaseReply.SPILLBACK:
            target = f"{reply.retry_at_host}:{reply.retry_at_port}"
            cq.pending_leases += 1

            def on_raylet(conn: Connection | None, err: BaseException | None) -> None:
                with self._lock:
                    cq.pending_leases -= 1
                    if conn is None:
                        self._retry_later(cq)
                    else:
                        self._request_lease(cq, conn, grant_or_reject=True)

            self.core.pool.get(target, on_raylet)
        elif status == _LeaseReply.UNSCHEDULABLE:
            self._fail_queue(cq, common_pb2.TASK_UNSCHEDULABLE, reply.message)
        elif status == _LeaseReply.RUNTIME_ENV_SETUP_FAILED:
            self._fail_queue(cq, common_pb2.RUNTIME_ENV_SETUP_FAILED, reply.message)
        else:  # rejected (resources vanished) or cancelled
            self._retry_later(cq)

    def _retry_later(self, cq: ClassQueue) -> None:
        if cq.retry_timer is None and cq.tasks:
            def retry() -> None:
                with self._lock:
                    cq.retry_timer = None
                    self._dispatch(cq)

            cq.retry_timer = True
            self.core.loop.call_later_threadsafe(0.01, retry)

    @locked
    def _on_worker_conn(self, cq: ClassQueue, lw: LeasedWorker, conn: Connection | None,
                        error: BaseException | None) -> None:
        if conn is None:
            lw.dead = True
            cq.workers.remove(lw)
            lw.raylet.call(_RETURN, raylet_pb2.ReturnWorkerRequest(
                lease_id=lw.lease_id, disconnect_worker=True, reason=f"owner could not connect: {error}"))
            self._dispatch(cq)
            return
        lw.conn = conn
        self._dispatch(cq)

    def _fail_queue(self, cq: ClassQueue, error_type: int, message: str) -> None:
        while cq.tasks:
            task = cq.tasks.popleft()
            self.core.task_manager.on_system_failure(task, error_type, message, retryable=False)

    # ---- pushing --------------------------------------------------------------------------------------

    def _push(self, cq: ClassQueue, lw: LeasedWorker, task: PendingTask) -> None:
        lw.last_used = time.monotonic()
        core = self.core
        conn = lw.conn
        assert conn is not None
        lw.in_flight += 1
        lw.tasks[task.task_id] = task
        self._pushed[task.task_id] = lw
        task.pushed_to = lw.address
        sent = conn.context
        if sent is None:
            sent = conn.context = set()
        fid = task.template.function.function_id
        with_body = fid not in sent
        # A compact task's request goes out as bytes, never built (push_encoding.py).
        body = None if with_body or task.spec_built else push_encoding.encode(task, lw.worker_id, lw.resource_ids)
        if body is None:
            spec = task.spec
            req = task.push_req
            req.intended_worker_id = lw.worker_id
            if with_body:
                spec.function.pickled = core.function_body(fid)
                sent.add(fid)
            if lw.resource_ids:
                req.resource_ids.clear()
                req.resource_ids.update(lw.resource_ids)
            elif req.resource_ids:
                req.resource_ids.clear()
            if spec.nested_refs:
                req.nested_refs_registered = core.register_push_receiver(spec, lw.address)
        record_state(task, gcs_pb2.SUBMITTED_TO_WORKER)
        conn.call(_PUSH, req if body is None else body,
                  callback=lambda reply, err: self._on_pushed(cq, lw, task, reply, err))
        if with_body:
            spec.function.pickled = b""  # sent once per connection

    def _on_pushed(self, cq: ClassQueue, lw: LeasedWorker, task: PendingTask, reply: Any,
                   error: BaseException | None) -> None:
        with self._lock:  # (not @locked: a call per reply)
            self._on_pushed_locked(cq, lw, task, reply, error)

    def _on_pushed_locked(self, cq: ClassQueue, lw: LeasedWorker, task: PendingTask, reply: Any,
                          error: BaseException | None) -> None:
        lw.in_flight -= 1
        lw.tasks.pop(task.task_id, None)
        self._pushed.pop(task.task_id, None)
        tm = self.core.task_manager
        if error is not None:
            self._drop_worker(cq, lw)
            if task.cancelled:
                tm.fail(task, _cancelled(task), common_pb2.TASK_CANCELLED)
            else:
                self._on_worker_lost(lw, task)
        elif reply.requeued:
            # The worker is busy with a slow (or blocked) task: stop
            # pipelining this class and run the task elsewhere.
            cq.ewma_us = max(cq.ewma_us, float(self.core.config.pipelining_max_task_duration_us))
            cq.tasks.appendleft(task)
        else:
            us = reply.exec_duration_us
            cq.ewma_us = us if cq.ewma_us < 0 else 0.8 * cq.ewma_us + 0.2 * us
            if reply.was_cancelled and not reply.returns:
                tm.fail(task, _cancelled(task), common_pb2.TASK_CANCELLED)
            else:
                tm.on_reply(task, reply)
            if reply.worker_exiting:
                self._drop_worker(cq, lw)
        self._dispatch(cq)

    def _on_worker_lost(self, lw: LeasedWorker, task: PendingTask) -> None:
        """Ask the worker's raylet why it died (its memory monitor may have
        killed it), then retry the task or fail it with that cause."""
        tm = self.core.task_manager

        def on_cause(reply: Any, error: BaseException | None) -> None:
            with self._lock:
                if error is None and reply.failure.type != common_pb2.ERROR_NONE:
                    tm.on_system_failure(task, reply.failure.type, reply.failure.message)
                else:
                    tm.on_system_failure(task, common_pb2.WORKER_DIED,
                                         f"its worker (node {lw.node_id.hex()[:8]}) exited unexpectedly")

        lw.raylet.call(_FAILURE_CAUSE, raylet_pb2.GetWorkerFailureCauseRequest(worker_id=lw.worker_id),
                       callback=on_cause, timeout_s=self.core.config.worker_failure_cause_timeout_ms / 1000)

    def _drop_worker(self, cq: ClassQueue, lw: LeasedWorker) -> None:
        if lw.dead:
            return
        lw.dead = True
        if lw in cq.workers:
            cq.workers.remove(lw)
        # Tasks still in flight there fail with the connection; the raylet
        # frees the lease when it sees the worker die.

    def _arm_idle(self, cq: ClassQueue, lw: LeasedWorker, delay_s: float | None = None) -> None:
        if lw.idle_timer is None:
            lw.idle_timer = True
            self.core.loop.call_later_threadsafe(
                self.core.config.idle_lease_return_ms / 1000 if delay_s is None else delay_s,
                self._return_if_idle, cq, lw)

    @locked
    def _return_if_idle(self, cq: ClassQueue, lw: LeasedWorker) -> None:
        lw.idle_timer = None
        if lw.dead:
            return
        if lw.in_flight or cq.tasks:
            return  # busy again; the next idle moment re-arms
        idle_for = time.monotonic() - lw.last_used
        limit = self.core.config.idle_lease_return_ms / 1000
        if idle_for < limit:
            self._arm_idle(cq, lw, limit - idle_for)
            return
        lw.dead = True
        cq.workers.remove(lw)
        lw.raylet.call(_RETURN, raylet_pb2.ReturnWorkerRequest(lease_id=lw.lease_id))
        if not cq.workers and not cq.tasks and not cq.pending_leases:
            self.queues.pop(cq.key, None)

    # ---- cancellation ------------------------------------------------------------------------------------

    @locked
    def cancel(self, task: PendingTask, force: bool, recursive: bool) -> None:
        task.cancelled = True
        if self._waiting_deps.pop(task.task_id, None) is not None:
            self.core.task_manager.fail(task, _cancelled(task), common_pb2.TASK_CANCELLED)
            return
        for cq in self.queues.values():
            if task in cq.tasks:
                cq.tasks.remove(task)
                self.core.task_manager.fail(task, _cancelled(task), common_pb2.TASK_CANCELLED)
                return
        lw = self._pushed.get(task.task_id)
        if lw is None or lw.conn is None:
            return
        if force:
            task.force_cancelled = True
            lw.raylet.call(_KILL, raylet_pb2.KillWorkerRequest(
                worker_id=lw.worker_id, force=True, reason=f"task {task.name} was cancelled with force=True"))
        else:
            lw.conn.call(_CANCEL, core_worker_pb2.CancelTaskRequest(
                task_id=task.task_id, force=False, recursive=recursive))

    @locked
    def node_died(self, node_id: bytes) -> None:
        """Leased workers on a dead node: fail their tasks over now."""
        for cq in list(self.queues.values()):
            for lw in list(cq.workers):
                if lw.node_id == node_id and lw.conn is not None:
                    lw.conn.close("its node died")

    def num_queued(self) -> int:
        return sum(len(cq.tasks) for cq in self.queues.values()) + len(self._waiting_deps)

    def shutdown(self) -> None:
        with self._lock:
            for cq in self.queues.values():
                for lw in cq.workers:
                    lw.dead = True


def _cancelled(task: PendingTask) -> BaseException:
    from nbray.exceptions import TaskCancelledError

    return TaskCancelledError(task.task_id.hex())


def _stored_error(entry: Entry) -> BaseException:
    try:
        err = deserialize(entry.data)
    except Exception as exc:  # pragma: no cover - defensive
        from nbray.exceptions import RaySystemError

        return RaySystemError(f"could not read an argument's error: {exc}")
    return err if isinstance(err, BaseException) else RuntimeError(str(err))


def now_ms() -> float:
    return time.monotonic() * 1000
