"""Ownership and borrowing in the core worker (driver or worker process).

The glue between the pure ReferenceCounter and the network: dropped refs,
borrower registrations sent to owners (and acknowledged), object status
requests served as an owner and made as a borrower, object locations, and
what the death of another worker means for the refs held here. CoreWorker
inherits it; shared state is guarded by the worker's ``lock``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nbray.common.serialization import serialize
from nbray.exceptions import ObjectFreedError, OwnerDiedError
from nbray.object_ref import ObjectRef
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.worker import call_sites
from nbray.worker.gc_policy import TRIM_DELAY_S, HeapTrimPolicy
from nbray.worker.memory_store import Entry, prepare_heap_trim, return_free_heap, shrunk

if TYPE_CHECKING:
    from collections.abc import Callable

    from nbray.common.config import Config
    from nbray.gcs.client import GcsClient
    from nbray.rpc.eventloop import EventLoop
    from nbray.rpc.pool import ConnectionPool
    from nbray.worker.actor_submitter import ActorTaskSubmitter
    from nbray.worker.executor import Executor
    from nbray.worker.memory_store import MemoryStore
    from nbray.worker.normal_submitter import NormalTaskSubmitter
    from nbray.worker.recovery import Lineage
    from nbray.worker.reference_counter import ReferenceCounter
    from nbray.worker.task_manager import TaskManager

logger = logging.getLogger(__name__)

_GET_STATUS = method("CoreWorkerService.GetObjectStatus")
_UPDATE_BORROWERS = method("CoreWorkerService.UpdateBorrowers")
_FREE = method("RayletService.FreeObjects")
_Status = core_worker_pb2.GetObjectStatusReply
_IN_PLASMA = common_pb2.VALUE_IN_PLASMA


class Ownership:
    """Reference counting, borrowing and object status of one process."""

    if TYPE_CHECKING:  # provided by CoreWorker
        config: Config
        lock: threading.Lock
        loop: EventLoop
        pool: ConnectionPool
        gcs: GcsClient
        raylet: Connection
        refs: ReferenceCounter
        memory_store: MemoryStore
        lineage: Lineage
        task_manager: TaskManager
        normal_submitter: NormalTaskSubmitter
        actor_submitter: ActorTaskSubmitter
        executor: Executor | None
        nodes: dict[bytes, gcs_pb2.NodeInfo]
        address: common_pb2.Address
        address_bytes: bytes
        node_id: bytes
        job_id: bytes
        is_worker: bool
        _shutdown: bool
        _owner_cache: dict[bytes, common_pb2.Address]

        def post(self, fn: Callable[..., Any], *args: Any) -> None: ...

    def _init_ownership(self) -> None:
        self._releases: deque[bytes] = deque()
        self._release_scheduled = False
        # The drain timer runs only while releases wait (an idle process must
        # not wake up on a period); the lock keeps it to one armed timer.
        self._release_timer_armed = True  # the first tick is posted at start
        self._release_timer_lock = threading.RLock()
        self._heap_trim = HeapTrimPolicy()
        prepare_heap_trim()
        self._deltas: dict[bytes, list[tuple[bytes, bytes, int, Any]]] = {}
        self._deltas_scheduled = False
        self._status_requests: set[bytes] = set()
        # Borrower registrations sent to other owners and not yet
        # acknowledged: a task's reply waits for them (see below).
        self._registrations_in_flight = 0
        self._registrations_acked = threading.Condition()

    def await_borrower_registrations(self, timeout_s: float) -> bool:
        """Block (not on the I/O thread) until every borrower registration
        sent so far has reached its owner; False if `timeout_s` passed.

        A task that hands borrowed refs on registers the receivers with the
        owners; its reply must not overtake those registrations, or its
        caller could see it finish, kill it (or drop its own refs) and the
        owner would free objects the receivers still use."""
        deadline = time.monotonic() + timeout_s
        with self._registrations_acked:
            while self._registrations_in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._registrations_acked.wait(left)
        return True

    # ---- reference counting glue ------------------------------------------------------------------

    def release_ref(self, object_id: bytes) -> None:
        """From ObjectRef.__del__ on any thread: no locks, no I/O.

        Releases are drained by the I/O thread on its next pass or tick
        (waking it for every dropped ref would cost a thread switch each);
        a large backlog wakes it at once. The tick is armed by the first
        release queued while none is armed."""
        releases = self._releases
        releases.append(object_id)
        if not self._release_timer_armed:
            self._arm_release_timer()
        if len(releases) > 512 and not self._release_scheduled:
            self._release_scheduled = True
            self.loop.post(self._drain_releases)

    def _arm_release_timer(self) -> None:
        with self._release_timer_lock:
            if self._release_timer_armed or self._shutdown:
                return
            self._release_timer_armed = True
        delay_s = self.config.release_drain_interval_ms / 1000
        if self.loop.in_loop_thread():
            self.loop.call_later(delay_s, self._release_tick)
        else:
            self.loop.call_later_threadsafe(delay_s, self._release_tick)

    def _release_tick(self) -> None:
        """Drain what waits, then stay armed only if more was queued since.

        The flag drops before the queue is looked at again: a release queued
        after that look sees the flag down and arms the timer itself."""
        if self._releases:
            self._drain_releases()
        with self._release_timer_lock:
            self._release_timer_armed = False
        if self._releases:
            self._arm_release_timer()

    def _drain_releases(self) -> None:
        self._release_scheduled = False
        releases = self._releases
        actions: list[Any] = []
        with self.lock:
            while releases:
                actions.extend(self.refs.remove_local(releases.popleft()))
        if actions:
            self.apply_actions(actions)
            if self._heap_trim.on_released(len(actions)):
                self._arm_heap_trim()

    def _arm_heap_trim(self) -> None:
        if self.loop.in_loop_thread():
            self.loop.call_later(TRIM_DELAY_S, self._trim_heap)
        else:
            self.loop.call_later_threadsafe(TRIM_DELAY_S, self._trim_heap)

    def _trim_heap(self) -> None:
        """Many refs went (a large batch dropped): give back the room the
        tables keep after deletions, then the heap pages glibc keeps."""
        decision = self._heap_trim.on_fired()
        if decision == "wait" and not self._shutdown:
            self._arm_heap_trim()
        if decision != "trim" or self._shutdown:
            return
        with self.lock:
            self.refs.refs = shrunk(self.refs.refs)
            tm = self.task_manager
            if not tm.backlog_gc.frozen:
                tm.pending = shrunk(tm.pending)
        self.memory_store.shrink()
        return_free_heap()

    def deserialize_ref(self, object_id: bytes, owner: bytes) -> ObjectRef:
        """An ObjectRef came out of a pickle in this process."""
        from nbray.common.serialization import context as ser_context

        with self.lock:
            needs_registration = self.refs.add_local(object_id, owner)
        ref = ObjectRef(object_id, owner, _counted=True)
        hook = ser_context.on_ref_deserialized
        if hook is not None:
            hook(ref)
        elif needs_registration:
            self.self_register(None, [ref])
        return ref

    def self_register(self, container_id: bytes | None, refs: Iterable[ObjectRef]) -> None:
        """Register this process with the owners of refs read from shared
        memory, keeping the container pinned until each owner has it."""
        todo = []
        with self.lock:
            for ref in refs:
                if self.refs.begin_self_registration(ref._id):
                    if container_id is not None:
                        self.refs.add_local(container_id, self.address_bytes)
                    todo.append(ref)
        for ref in todo:
            self._queue_delta(ref._owner, ref._id, self.address_bytes, 1, container_id)

    def register_push_receiver(self, spec: common_pb2.TaskSpec, receiver: common_pb2.Address) -> bool:
        """Before pushing a task, register its worker as a borrower of the refs
        nested in its arguments (the receiver then counts them as registered)."""
        if not spec.nested_refs:
            return False
        receiver_bytes = receiver.SerializeToString()
        actions: list[Any] = []
        with self.lock:
            for r in spec.nested_refs:
                actions.extend(self.refs.register_receiver(r.object_id, r.owner.SerializeToString(),
                                                           receiver.worker_id, receiver_bytes))
        if actions:
            self.apply_actions(actions)
        return True

    def receive_nested(self, nested: Iterable[common_pb2.ObjectReference]) -> None:
        """Refs inside a task's arguments were registered for us by the sender."""
        with self.lock:
            for r in nested:
                self.refs.registered_for_us(r.object_id, r.owner.SerializeToString(), 1)

    def release_if_unused(self, object_ids: Iterable[bytes]) -> None:
        actions: list[Any] = []
        with self.lock:
            for oid in object_ids:
                actions.extend(self.refs.check_release(oid))
        if actions:
            self.apply_actions(actions)

    def apply_actions(self, actions: list[Any]) -> None:
        """Carry out reference counting decisions (never under self.lock)."""
        gone = [action[1] for action in actions if action[0] in _DELETES]
        if gone:
            self.memory_store.delete_many(gone)
        freed_lineage: list[bytes] = []
        for action in actions:
            kind = action[0]
            if kind == "free" or kind == "free_value":
                oid, ref = action[1], action[2]
                if ref.in_plasma and ref.node_ids:
                    for node_id in ref.node_ids:
                        self.free_plasma([oid], node_id)
                    if kind == "free_value":
                        ref.node_ids = set()
                if kind == "free":
                    if ref.actor_id:
                        self.gcs.call_async("ReportActorOutOfScope",
                                            gcs_pb2.GetActorInfoRequest(actor_id=ref.actor_id))
                    if ref.lineage:
                        freed_lineage.append(ref.lineage)
            elif kind == "delta":
                _, owner, oid, borrower, n = action
                self._queue_delta(owner, oid, borrower, n, None)
        if freed_lineage:
            # One lock for the whole batch (a task's many returns go together).
            more: list[Any] = []
            with self.lock:
                on_return_freed = self.lineage.on_return_freed
                for task_id in freed_lineage:
                    more.extend(on_return_freed(task_id))
            if more:
                self.apply_actions(more)

    def _queue_delta(self, owner: bytes, object_id: bytes, borrower: bytes, n: int,
                     container_id: bytes | None) -> None:
        if n > 0 and owner != self.address_bytes:
            with self._registrations_acked:
                self._registrations_in_flight += 1
        self._deltas.setdefault(owner, []).append((object_id, borrower, n, container_id))
        if not self._deltas_scheduled:
            self._deltas_scheduled = True
            self.loop.post(self._flush_deltas)

    def _flush_deltas(self) -> None:
        self._deltas_scheduled = False
        deltas, self._deltas = self._deltas, {}
        for owner, items in deltas.items():
            if owner == self.address_bytes:
                actions: list[Any] = []
                with self.lock:
                    for oid, borrower, n, _ in items:
                        actions.extend(self.refs.borrower_delta(oid, _worker_id_of(borrower), n))
                self.apply_actions(actions)
                continue
            req = core_worker_pb2.UpdateBorrowersRequest()
            containers = [c for _, _, _, c in items if c is not None]
            registrations = sum(1 for _, _, n, _ in items if n > 0)
            for oid, borrower, n, _ in items:
                req.deltas.add(object_id=oid, borrower=self.parse_address(borrower), delta=n)
            self.pool.get(self.parse_address(owner),
                          functools.partial(self._send_deltas_to, req, containers, registrations))

    def _send_deltas_to(self, req: Any, containers: list[Any], registrations: int, conn: Connection | None,
                        error: BaseException | None) -> None:
        self._send_deltas(conn, error, req, containers, registrations)

    def _send_deltas(self, conn: Connection | None, error: BaseException | None, req: Any,
                     containers: list[bytes], registrations: int = 0) -> None:
        def unpin(*_: Any) -> None:
            for container_id in containers:
                self.release_ref(container_id)
            if registrations:
                with self._registrations_acked:
                    self._registrations_in_flight -= registrations
                    if self._registrations_in_flight <= 0:
                        self._registrations_acked.notify_all()

        if conn is None:
            unpin()  # the owner is gone; nothing to keep alive
            return
        conn.call(_UPDATE_BORROWERS, req, callback=unpin)

    def handle_UpdateBorrowers(self, conn: Connection, req: Any, rid: int) -> common_pb2.Empty:
        actions: list[Any] = []
        with self.lock:
            for d in req.deltas:
                actions.extend(self.refs.borrower_delta(d.object_id, d.borrower.worker_id, d.delta))
        if actions:
            self.apply_actions(actions)
        return common_pb2.Empty()

    def free_plasma(self, object_ids: list[bytes], node_id: bytes) -> None:
        if node_id == self.node_id or not node_id:
            self.raylet.send_oneway(_FREE, raylet_pb2.ObjectIdsRequest(object_ids=object_ids))
        else:
            self.free_remote_plasma(object_ids, node_id)

    def free_remote_plasma(self, object_ids: list[bytes], node_id: bytes) -> None:
        """Free copies on another node (multi-node); resolved through the GCS node table."""
        node = self.node_address(node_id)
        if node is None:
            return
        req = raylet_pb2.ObjectIdsRequest(object_ids=object_ids)
        self.pool.get(node, lambda conn, err: conn.send_oneway(_FREE, req) if conn is not None else None)

    def node_address(self, node_id: bytes) -> str | None:
        node = self.nodes.get(node_id)
        if node is None or node.state != gcs_pb2.NodeInfo.ALIVE:
            return None
        return f"{node.node_ip}:{node.raylet_port}"

    def node_alive(self, node_id: bytes) -> bool:
        node = self.nodes.get(node_id)
        return node is None or node.state == gcs_pb2.NodeInfo.ALIVE

    def _on_node_change(self, msg: gcs_pb2.PubMessage) -> None:
        node = msg.node
        self.nodes[node.node_id] = node
        if node.state != gcs_pb2.NodeInfo.DEAD:
            return
        dead = node.node_id
        # work running there fails over (its connections may hang on a real network)
        self.normal_submitter.node_died(dead)
        self.actor_submitter.node_died(dead)
        # copies there are gone; lost objects are rebuilt when someone needs them
        with self.lock:
            for ref in self.refs.refs.values():
                if ref.owned and ref.node_ids and dead in ref.node_ids:
                    ref.node_ids.discard(dead)

    # ---- object locations (owner side) -------------------------------------------------------------

    def handle_GetObjectLocations(self, conn: Connection, req: Any, rid: int) -> Any:
        reply = core_worker_pb2.GetObjectLocationsReply()
        for oid in req.object_ids:
            info = reply.objects.add(object_id=oid)
            ref = self.refs.get(oid)
            if ref is None or not ref.owned:
                info.out_of_scope = True
                continue
            entry = self.memory_store.get(oid)
            if entry is None:
                if ref.value_freed:
                    self.lineage.rebuild(oid)
                continue  # being computed or rebuilt: ask again later
            if entry.is_error:
                info.error_value.format = common_pb2.VALUE_ERROR
                info.error_value.data = entry.data or b""
                continue
            if not entry.in_plasma:
                info.error_value.format = common_pb2.VALUE_PICKLE
                info.error_value.data = entry.data or b""
                continue
            live = [n for n in (ref.node_ids or ()) if self.node_alive(n)]
            if not live:
                self.lineage.rebuild(oid)
                continue
            info.node_ids.extend(live)
            info.size = ref.size or entry.size
        return reply

    def handle_UpdateObjectLocations(self, conn: Connection, req: Any, rid: int) -> None:
        with self.lock:
            for u in req.updates:
                ref = self.refs.get(u.object_id)
                if ref is None or not ref.owned:
                    continue
                if ref.node_ids is None:
                    ref.node_ids = set()
                if u.added:
                    ref.node_ids.add(u.node_id)
                else:
                    ref.node_ids.discard(u.node_id)
        return None

    def parse_address(self, data: bytes) -> common_pb2.Address:
        addr = self._owner_cache.get(data)
        if addr is None:
            addr = common_pb2.Address()
            addr.ParseFromString(data)
            self._owner_cache[data] = addr
        return addr

    # ---- object status (owner side and borrower side) -------------------------------------------------

    def handle_GetObjectStatus(self, conn: Connection, req: Any, rid: int) -> Any:
        oid = req.object_id
        if not self.refs.is_owned(oid):
            return _Status(status=_Status.OUT_OF_SCOPE)
        entry = self.memory_store.get(oid)
        if entry is not None:
            return self._status_reply(oid, entry, req.requester)
        if req.no_wait:
            return _Status(status=_Status.PENDING)
        requester = common_pb2.Address()
        requester.CopyFrom(req.requester)
        self.memory_store.on_ready(oid, lambda e: self.post(self._reply_status, conn, rid, oid, requester))
        return None

    def _reply_status(self, conn: Connection, rid: int, oid: bytes, requester: common_pb2.Address) -> None:
        entry = self.memory_store.get(oid)
        if conn.closed:
            return
        if entry is None:
            conn.reply(rid, _GET_STATUS, _Status(status=_Status.OUT_OF_SCOPE))
        else:
            conn.reply(rid, _GET_STATUS, self._status_reply(oid, entry, requester))

    def _status_reply(self, oid: bytes, entry: Entry, requester: common_pb2.Address) -> Any:
        reply = _Status(status=_Status.READY, size=entry.size)
        value = reply.value
        if entry.in_plasma:
            value.format = _IN_PLASMA
            value.plasma_node_id = entry.node_id
            value.plasma_size = entry.size
            reply.node_ids.append(entry.node_id)
        else:
            value.format = common_pb2.VALUE_ERROR if entry.is_error else common_pb2.VALUE_PICKLE
            value.data = entry.data or b""
        actions: list[Any] = []
        with self.lock:
            ref = self.refs.get(oid)
            nested = ref.contains if ref is not None else ()
            requester_bytes = requester.SerializeToString()
            for inner_id, inner_owner in nested:
                actions.extend(self.refs.register_receiver(inner_id, inner_owner, requester.worker_id,
                                                           requester_bytes))
                value.nested_refs.add(object_id=inner_id, owner=self.parse_address(inner_owner))
        if actions:
            self.apply_actions(actions)
        return reply

    def ensure_status(self, object_id: bytes, owner: bytes) -> None:
        """Loop thread: make a borrowed object's value (or location) known here."""
        if self.memory_store.contains(object_id) or object_id in self._status_requests:
            return
        if not owner or owner == self.address_bytes:
            return
        self._status_requests.add(object_id)
        addr = self.parse_address(owner)
        req = core_worker_pb2.GetObjectStatusRequest(object_id=object_id, requester=self.address)

        def on_conn(conn: Connection | None, error: BaseException | None) -> None:
            if conn is None:
                self._status_failed(object_id, addr, error)
                return
            conn.call(_GET_STATUS, req, callback=lambda reply, err: self._on_status(object_id, addr, reply, err))

        self.pool.get(addr, on_conn)

    def _status_failed(self, object_id: bytes, owner: common_pb2.Address, error: Any) -> None:
        self._status_requests.discard(object_id)
        err = OwnerDiedError(object_id.hex(), f"{owner.host}:{owner.port}", message=(
            f"Object {object_id.hex()} is lost because its owner (worker {owner.worker_id.hex()[:12]} "
            f"on node {owner.node_id.hex()[:12]} at {owner.host}:{owner.port}) died or is unreachable"
            f" ({error}). Objects are owned by the process that created them."))
        self.memory_store.put(object_id, Entry(serialize(err, is_error=True).to_bytes(), is_error=True))

    def _on_status(self, object_id: bytes, owner: common_pb2.Address, reply: Any, error: Any) -> None:
        if error is not None:
            self._status_failed(object_id, owner, error)
            return
        self._status_requests.discard(object_id)
        if reply.status == _Status.OUT_OF_SCOPE:
            err = ObjectFreedError(object_id.hex(), message=(
                f"Object {object_id.hex()} was already freed by its owner; it was released before "
                "this reference was used."))
            self.memory_store.put(object_id, Entry(serialize(err, is_error=True).to_bytes(), is_error=True))
            return
        value = reply.value
        actions: list[Any] = []
        if value.nested_refs:
            nested = [(r.object_id, r.owner.SerializeToString()) for r in value.nested_refs]
            with self.lock:
                for inner_id, inner_owner in nested:
                    self.refs.registered_for_us(inner_id, inner_owner, 1)
                if object_id in self.refs.refs:
                    self.refs.set_contains(object_id, nested)
                else:
                    for inner_id, _ in nested:
                        actions.extend(self.refs.check_release(inner_id))
        if value.format == _IN_PLASMA:
            entry = Entry(None, in_plasma=True, node_id=value.plasma_node_id, size=value.plasma_size)
        else:
            entry = Entry(value.data, is_error=value.format == common_pb2.VALUE_ERROR)
        self.memory_store.put(object_id, entry)
        if actions:
            self.apply_actions(actions)

    # ---- workers dying ---------------------------------------------------------------------------------

    def _on_worker_failure(self, msg: gcs_pb2.PubMessage) -> None:
        failure = msg.worker_failure
        wid = failure.address.worker_id
        with self.lock:
            actions = self.refs.borrower_died(wid)
            owner_bytes = failure.address.SerializeToString()
            lost = [oid for oid, ref in self.refs.refs.items()
                    if not ref.owned and self.parse_address(ref.owner).worker_id == wid]
        if actions:
            self.apply_actions(actions)
        for oid in lost:
            if not self.memory_store.contains(oid):
                self._status_failed(oid, failure.address, "the owner died")
        del owner_bytes

    # ---- memory report -----------------------------------------------------------------------------

    def handle_GetCoreWorkerStats(self, conn: Connection, req: Any, rid: int) -> Any:
        reply = core_worker_pb2.GetCoreWorkerStatsReply(
            address=self.address, pid=os.getpid(), job_id=self.job_id,
            worker_type="worker" if self.is_worker else "driver",
            num_pending_tasks=len(self.task_manager.pending),
            num_running_tasks=self.executor.num_running if self.executor is not None else 0)
        with self.lock:
            items = list(self.refs.refs.items())
        for oid, ref in items:
            entry = self.memory_store.get(oid)
            if ref.actor_id:
                kind = "ACTOR_HANDLE"
            elif ref.submitted:
                kind = "USED_BY_PENDING_TASK"
            elif ref.local:
                kind = "LOCAL_REFERENCE"
            elif ref.contained:
                kind = "CAPTURED_IN_OBJECT"
            else:
                kind = "PINNED_IN_MEMORY"
            status = "PENDING" if entry is None else ("FAILED" if entry.is_error else "FINISHED")
            row = reply.refs.add(object_id=oid, owned=ref.owned, local_refs=ref.local,
                                 submitted_task_refs=ref.submitted, contained_refs=ref.contained,
                                 borrowers=sum(1 for c in (ref.borrowers or {}).values() if c > 0),
                                 size=ref.size or (entry.size if entry is not None else 0), in_plasma=ref.in_plasma,
                                 task_status=status, reference_type=kind, call_site=call_sites.lookup(self, oid))
            row.owner.CopyFrom(self.parse_address(ref.owner))
            if ref.node_ids:
                row.node_id = next(iter(ref.node_ids))
        return reply


# The actions that delete the object's entry here.
_DELETES = frozenset({"free", "free_value", "forget"})


def _worker_id_of(address_bytes: bytes) -> bytes:
    addr = common_pb2.Address()
    addr.ParseFromString(address_bytes)
    return addr.worker_id


