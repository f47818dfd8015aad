"""Submitting actor method calls (caller side, on the I/O thread).

Calls to one actor leave this process in submission order over one
connection, so a sync actor runs them in that order. The actor's address
comes from the GCS (ACTOR channel); while it is being created or restarted
calls wait here. When the actor's process dies, calls in flight fail with
ActorDiedError unless they have retries left (``max_task_retries``), in
which case they are sent again, in order, once the actor is back.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from nbray.common.serialization import deserialize
from nbray.exceptions import ActorDiedError, TaskCancelledError
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method
from nbray.rpc.connection import Connection
from nbray.worker import push_encoding
from nbray.worker.normal_submitter import locked
from nbray.worker.pending_task import PendingTask
from nbray.worker.task_events import record_state

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

_PUSH = method("CoreWorkerService.PushTask")
_CANCEL = method("CoreWorkerService.CancelTask")
_State = gcs_pb2.ActorInfo
# How long calls cut off by a dead connection wait for the GCS to say
# whether the actor restarts or is dead, before failing anyway.
_DEATH_NOTICE_WAIT_S = 10.0


class ActorState:
    __slots__ = ("actor_id", "state", "address", "conn", "connecting", "queue", "in_flight",
                 "orphans", "death", "num_restarts", "subscribed", "known", "orphan_timer",
                 "class_name")

    def __init__(self, actor_id: bytes) -> None:
        self.actor_id = actor_id
        self.state = _State.PENDING_CREATION
        self.address: common_pb2.Address | None = None
        self.conn: Connection | None = None
        self.connecting = False
        self.queue: deque[PendingTask] = deque()
        self.in_flight: dict[bytes, PendingTask] = {}
        # Calls whose connection died before the GCS told us what happened.
        self.orphans: list[PendingTask] = []
        self.death: BaseException | None = None
        self.num_restarts = -1
        self.subscribed = False
        self.known = False
        self.orphan_timer: Any = None
        self.class_name = ""


class ActorTaskSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.actors: dict[bytes, ActorState] = {}
        # Guards actor states: the I/O thread runs the submitter; user
        # threads push directly when the actor's connection is ready.
        self._lock = threading.RLock()

    def try_push_now(self, task: PendingTask) -> bool:
        """User thread: push at once over an open connection to a live actor."""
        with self._lock:
            st = self.actors.get(task.actor_id)
            if (st is None or st.state != _State.ALIVE or st.queue or st.death is not None
                    or st.conn is None or st.conn.closed or task.cancelled):
                return False
            self._push(st, st.conn, task)
            return True

    @locked
    def track(self, actor_id: bytes, info: gcs_pb2.ActorInfo | None = None) -> None:
        """Loop thread: follow an actor's state (a handle to it exists here)."""
        st = self.actors.get(actor_id)
        if st is None:
            st = self.actors[actor_id] = ActorState(actor_id)
        if info is not None:
            self._apply(st, info)
        if not st.subscribed:
            st.subscribed = True
            self.core.gcs.subscribe(gcs_pb2.ACTOR, actor_id, self._on_publish)
            self.core.gcs.call_async(
                "GetActorInfo", gcs_pb2.GetActorInfoRequest(actor_id=actor_id),
                callback=lambda reply, err: self._on_info(st, reply, err))

    @locked
    def _on_info(self, st: ActorState, reply: Any, error: BaseException | None) -> None:
        # The reply may be newer than what we know: the actor can become
        # ALIVE between RegisterActor's reply and our subscription.
        if error is None:
            self._apply(st, reply.actor)

    @locked
    def _on_publish(self, msg: gcs_pb2.PubMessage) -> None:
        st = self.actors.get(msg.key)
        if st is not None:
            self._apply(st, msg.actor)

    def _apply(self, st: ActorState, info: gcs_pb2.ActorInfo) -> None:
        # Updates can arrive twice (reply and publish); ignore stale ones.
        if st.known and _progress(info.num_restarts, info.state) <= _progress(st.num_restarts, st.state):
            return
        st.known = True
        st.class_name = info.class_name
        prev_restarts = st.num_restarts
        st.num_restarts = info.num_restarts
        st.state = info.state
        if info.state == _State.ALIVE:
            if st.address is None or st.address.worker_id != info.address.worker_id:
                st.address = common_pb2.Address()
                st.address.CopyFrom(info.address)
                st.conn = None
            self._resolve_orphans(st, restarted=prev_restarts >= 0 and info.num_restarts > prev_restarts)
            self._flush(st)
        elif info.state == _State.RESTARTING:
            st.conn = None
            st.address = None
            self._resolve_orphans(st, restarted=True)
        elif info.state == _State.DEAD:
            st.death = _death_error(info)
            st.conn = None
            self._resolve_orphans(st, restarted=False)
            self._fail_all(st)
            self.core.release_creation_args(st.actor_id)

    # ---- submitting ---------------------------------------------------------------------------------

    @locked
    def submit(self, task: PendingTask) -> None:
        st = self.actors.get(task.actor_id)
        if st is None:
            self.track(task.actor_id)
            st = self.actors[task.actor_id]
        if task.cancelled:
            self.core.task_manager.fail(task, TaskCancelledError(task.task_id.hex()), common_pb2.TASK_CANCELLED)
            return
        if st.death is not None:
            self.core.task_manager.fail(task, st.death, common_pb2.ACTOR_DIED)
            return
        st.queue.append(task)
        self._flush(st)

    def _flush(self, st: ActorState) -> None:
        if st.state != _State.ALIVE or not st.queue:
            return
        if st.conn is None or st.conn.closed:
            if st.connecting or st.address is None:
                return
            st.connecting = True
            address = st.address
            self.core.pool.get(address, lambda conn, err: self._on_conn(st, address, conn, err))
            return
        conn = st.conn
        while st.queue:
            self._push(st, conn, st.queue.popleft())

    @locked
    def _on_conn(self, st: ActorState, address: common_pb2.Address, conn: Connection | None,
                 error: BaseException | None) -> None:
        st.connecting = False
        if st.address is None or st.address.worker_id != address.worker_id:
            self._flush(st)  # the actor moved meanwhile
            return
        if conn is None:
            # The worker is gone; the GCS will tell us whether it restarts.
            st.conn = None
            st.state = _State.RESTARTING
            self._arm_orphan_timer(st)
            while st.queue:
                st.orphans.append(st.queue.popleft())
            return
        st.conn = conn
        conn.add_close_callback(lambda c: self._on_conn_closed(st, c))
        self._flush(st)

    def _push(self, st: ActorState, conn: Connection, task: PendingTask) -> None:
        st.in_flight[task.task_id] = task
        task.pushed_to = st.address
        record_state(task, gcs_pb2.SUBMITTED_TO_WORKER)
        assert st.address is not None
        # A compact call's request goes out as bytes, never built (push_encoding.py).
        body = None if task.spec_built else push_encoding.encode(task, b"", {})
        if body is None:
            req = task.push_req
            if task.spec.nested_refs:
                req.nested_refs_registered = self.core.register_push_receiver(task.spec, st.address)
        conn.call(_PUSH, req if body is None else body,
                  callback=lambda reply, err: self._on_reply(st, task, reply, err))

    def _on_reply(self, st: ActorState, task: PendingTask, reply: Any, error: BaseException | None) -> None:
        with self._lock:  # (not @locked: a call per reply)
            self._on_reply_locked(st, task, reply, error)

    def _on_reply_locked(self, st: ActorState, task: PendingTask, reply: Any, error: BaseException | None) -> None:
        if st.in_flight.pop(task.task_id, None) is None:
            return
        if error is not None:
            st.orphans.append(task)
            self._arm_orphan_timer(st)
            return
        if reply.was_cancelled and not reply.returns:
            self.core.task_manager.fail(task, TaskCancelledError(task.task_id.hex()), common_pb2.TASK_CANCELLED)
            return
        self.core.task_manager.on_reply(task, reply)

    @locked
    def _on_conn_closed(self, st: ActorState, conn: Connection) -> None:
        if st.conn is conn:
            st.conn = None
            if st.state == _State.ALIVE:
                st.state = _State.RESTARTING  # until the GCS says otherwise
        # in-flight calls get their own callbacks with the error

    def _arm_orphan_timer(self, st: ActorState) -> None:
        if st.orphan_timer is None:
            st.orphan_timer = self.core.loop.call_later(_DEATH_NOTICE_WAIT_S, self._orphan_timeout, st)

    @locked
    def _orphan_timeout(self, st: ActorState) -> None:
        st.orphan_timer = None
        if st.orphans:
            self._resolve_orphans(st, restarted=st.death is None)

    def _resolve_orphans(self, st: ActorState, restarted: bool) -> None:
        """Calls cut off by the actor's death: retry or fail them."""
        if st.orphan_timer is not None:
            st.orphan_timer.cancel()
            st.orphan_timer = None
        orphans, st.orphans = st.orphans, []
        # in-flight calls whose replies will never come also become orphans
        retry = []
        for task in sorted(orphans, key=lambda t: t.sequence_number):
            if restarted and st.death is None and not task.cancelled and task.retries_left != 0:
                if task.retries_left > 0:
                    task.retries_left -= 1
                task.next_attempt()
                retry.append(task)
                continue
            err = st.death or ActorDiedError(
                st.actor_id.hex(),
                f"The actor {st.class_name} died unexpectedly before finishing this task "
                "(its worker process exited). Set max_task_retries to retry calls on restart.")
            self.core.task_manager.fail(task, err, common_pb2.ACTOR_DIED)
        for task in reversed(retry):
            st.queue.appendleft(task)
        self._flush(st)

    def _fail_all(self, st: ActorState) -> None:
        assert st.death is not None
        tasks = list(st.queue) + list(st.in_flight.values())
        st.queue.clear()
        st.in_flight.clear()
        for task in tasks:
            self.core.task_manager.fail(task, st.death, common_pb2.ACTOR_DIED)

    @locked
    def killed(self, actor_id: bytes, reason: str) -> None:
        """This process killed the actor for good: calls made from now on, and
        those not pushed yet, fail at once, without waiting for the GCS to
        publish the death (calls in flight end with the worker)."""
        st = self.actors.get(actor_id)
        if st is None or st.death is not None:
            return
        name = f"The actor {st.class_name}" if st.class_name else "The actor"
        st.death = ActorDiedError(actor_id.hex(), f"{name} is dead: {reason}.")
        queued, st.queue = list(st.queue), deque()
        for task in queued:
            self.core.task_manager.fail(task, st.death, common_pb2.ACTOR_DIED)

    # ---- cancel -------------------------------------------------------------------------------------

    @locked
    def cancel(self, task: PendingTask, recursive: bool) -> None:
        st = self.actors.get(task.actor_id)
        task.cancelled = True
        if st is None:
            return
        if task in st.queue:
            st.queue.remove(task)
            self.core.task_manager.fail(task, TaskCancelledError(task.task_id.hex()), common_pb2.TASK_CANCELLED)
            return
        if task.task_id in st.in_flight and st.conn is not None:
            st.conn.call(_CANCEL, core_worker_pb2.CancelTaskRequest(task_id=task.task_id, recursive=recursive))

    @locked
    def node_died(self, node_id: bytes) -> None:
        for st in self.actors.values():
            if st.address is not None and st.address.node_id == node_id and st.conn is not None:
                st.conn.close("its node died")

    def state_of(self, actor_id: bytes) -> ActorState | None:
        return self.actors.get(actor_id)


# Within one incarnation an actor goes (PENDING_CREATION | RESTARTING) ->
# ALIVE -> DEAD; each restart starts a new incarnation.
_STAGE: dict[int, int] = {_State.DEPENDENCIES_UNREADY: 0, _State.PENDING_CREATION: 0, _State.RESTARTING: 0,
          _State.ALIVE: 1, _State.DEAD: 2}


def _progress(num_restarts: int, state: int) -> tuple[int, int]:
    """Order of actor states as the GCS moves through them."""
    if state == _State.DEAD:
        return (1 << 62, 2)  # nothing comes after death
    return (num_restarts, _STAGE.get(state, 0))


def _death_error(info: gcs_pb2.ActorInfo) -> BaseException:
    cause: BaseException | None = None
    message = info.death_cause.message or f"The actor {info.class_name} is dead."
    if info.death_cause.type == common_pb2.ACTOR_UNSCHEDULABLE:
        from nbray.exceptions import ActorUnschedulableError

        return ActorUnschedulableError(message)
    if info.death_cause.type == common_pb2.RUNTIME_ENV_SETUP_FAILED:
        from nbray.exceptions import RuntimeEnvSetupError

        return RuntimeEnvSetupError(message)
    init_failed = bool(info.init_error)
    if init_failed:
        try:
            cause = deserialize(info.init_error)
        except Exception:
            cause = None
        if cause is not None:
            message = f"{message}\n{cause}"
    return ActorDiedError(info.actor_id.hex(), message, actor_init_failed=init_failed,
                          preempted=info.preempted, cause=cause)
