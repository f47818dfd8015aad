"""The core worker: one per driver or worker process.

Owns the process's connections (raylet, GCS, peers), its listener, the
memory store, the reference counter and the task machinery, and serves
``CoreWorkerService``. Threads: an I/O thread runs the event loop; user
code runs on the main thread (and any threads it starts). Shared state is
guarded by ``self.lock``, held only for short bookkeeping, never across
I/O or user code; memory-store callbacks and ObjectRef finalizers never
take it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from nbray.common import ids
from nbray.common.config import Config
from nbray.common.serialization import Serialized, serialize
from nbray.exceptions import (
    ActorAlreadyExistsError,
    ObjectFreedError,
    OwnerDiedError,
    RpcError,
)
from nbray.gcs.client import GcsClient
from nbray.object_ref import ObjectRef, _core
from nbray.object_store.client import PlasmaClient
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handshake import Listener, bind_listener, connect
from nbray.rpc.pool import ConnectionPool
from nbray.worker import context
from nbray.worker.actor_submitter import ActorTaskSubmitter
from nbray.worker.context import TaskContext
from nbray.worker.executor import Executor
from nbray.worker.function_manager import ExportedFunction
from nbray.worker.memory_store import Entry, MemoryStore
from nbray.worker.normal_submitter import NormalTaskSubmitter
from nbray.worker.objects import ObjectAccess
from nbray.worker.recovery import Lineage
from nbray.worker.reference_counter import ReferenceCounter
from nbray.worker.task_events import TaskEventBuffer
from nbray.worker.task_manager import PendingTask, TaskManager

logger = logging.getLogger(__name__)

_GET_STATUS = method("CoreWorkerService.GetObjectStatus")
_UPDATE_BORROWERS = method("CoreWorkerService.UpdateBorrowers")
_REGISTER = method("RayletService.RegisterWorker")
_BLOCKED = method("RayletService.NotifyBlocked")
_EXITING = method("RayletService.NotifyWorkerExiting")
_FREE = method("RayletService.FreeObjects")
_Status = core_worker_pb2.GetObjectStatusReply
_IN_PLASMA = common_pb2.VALUE_IN_PLASMA


class CoreWorker:
    def __init__(
        self,
        *,
        is_worker: bool,
        config: Config,
        token: bytes,
        gcs_address: str,
        raylet_socket: str,
        node_id: bytes,
        node_ip: str,
        session_dir: str,
        namespace: str = "",
        startup_token: int = 0,
        job_runtime_env: dict[str, Any] | None = None,
        entrypoint: str = "",
    ) -> None:
        self.is_worker = is_worker
        self.config = config
        self.token = token
        self.gcs_address = gcs_address
        self.node_id = node_id
        self.node_ip = node_ip
        self.session_dir = session_dir
        self.worker_id = os.urandom(ids.UNIQUE_ID_SIZE)
        self.lock = threading.Lock()
        self.loop = EventLoop("nbray-io")
        self.dispatcher = Dispatcher()
        self.dispatcher.register_service("CoreWorkerService", self)
        self.memory_store = MemoryStore(node_id)
        self.events = TaskEventBuffer(config.task_events_max_buffer, config.task_events_report_interval_ms,
                                      config.task_events_final_report_delay_ms)
        self.events.info_builder = self._build_task_info
        self.task_manager = TaskManager(self)
        self.normal_submitter = NormalTaskSubmitter(self)
        self.actor_submitter = ActorTaskSubmitter(self)
        self.objects = ObjectAccess(self)
        self.lineage = Lineage(self)
        self.nodes: dict[bytes, gcs_pb2.NodeInfo] = {}
        self.executor: Executor | None = Executor(self) if is_worker else None
        self._releases: deque[bytes] = deque()
        self._release_scheduled = False
        self._deltas: dict[bytes, list[tuple[bytes, bytes, int, Any]]] = {}
        self._deltas_scheduled = False
        self._status_requests: set[bytes] = set()
        self._function_bodies: dict[bytes, bytes] = {}
        self._owner_cache: dict[bytes, common_pb2.Address] = {}
        self._actor_creation_args: dict[bytes, list[bytes]] = {}
        self._template_keys: dict[int, Any] = {}
        self._info_protos: dict[Any, gcs_pb2.TaskInfo] = {}
        self._shutdown = False
        self.actor_id = b""
        self.actor_spec: Any = None
        self.log_handler: Callable[[gcs_pb2.LogBatch], None] = print_logs
        self.job_id = b""
        self.namespace = namespace

        self.loop.start_thread()
        short = self.worker_id.hex()[:12]
        self.listener = Listener(self.loop, bind_listener(f"{node_ip}:0"), token, self.dispatcher,
                                 self._on_inbound, role="worker" if is_worker else "driver",
                                 handshake_timeout_s=config.handshake_timeout_ms / 1000,
                                 max_frame_bytes=config.max_frame_bytes,
                                 max_trailer_bytes=config.max_trailer_bytes)
        from nbray.node.session import socket_path

        unix_path = socket_path(session_dir, f"w-{short}.sock")
        self.unix_listener = Listener(self.loop, bind_listener("unix:" + unix_path), token, self.dispatcher,
                                      self._on_inbound, role="worker" if is_worker else "driver",
                                      handshake_timeout_s=config.handshake_timeout_ms / 1000,
                                      max_frame_bytes=config.max_frame_bytes,
                                      max_trailer_bytes=config.max_trailer_bytes)
        host, port = self.listener.address.rsplit(":", 1)
        self.address = common_pb2.Address(worker_id=self.worker_id, node_id=node_id, host=host,
                                          port=int(port), unix_path=unix_path)
        self.address_bytes = self.address.SerializeToString()
        self._owner_cache[self.address_bytes] = self.address
        self.refs = ReferenceCounter(self.worker_id, self.address_bytes)
        self.pool = ConnectionPool(self.loop, token, self.dispatcher, config,
                                   role="worker" if is_worker else "driver", local_node_id=node_id)
        self.loop.post(self.listener.start)
        self.loop.post(self.unix_listener.start)
        role = "worker" if is_worker else "driver"
        self.gcs = GcsClient(self.loop, gcs_address, token, self.dispatcher, config, role=role)
        if not is_worker:
            job = gcs_pb2.JobInfo(driver=self.address, driver_pid=os.getpid(), namespace=namespace,
                                  entrypoint=entrypoint or " ".join(sys.argv))
            if job_runtime_env and job_runtime_env.get("env_vars"):
                job.runtime_env.env_vars.update(job_runtime_env["env_vars"])
            reply = self.gcs.call("AddJob", gcs_pb2.AddJobRequest(job=job))
            self.job_id = reply.job_id
            self.namespace = reply.namespace
        self.raylet = connect(self.loop, "unix:" + raylet_socket, token, self.dispatcher, role=role,
                              timeout_s=config.connect_timeout_ms / 1000, name="raylet",
                              max_frame_bytes=config.max_frame_bytes)
        reg = self.raylet.call_sync(_REGISTER, raylet_pb2.RegisterWorkerRequest(
            address=self.address, worker_type=role, pid=os.getpid(), job_id=self.job_id,
            startup_token=startup_token), config.rpc_timeout_ms / 1000)
        self.raylet.add_close_callback(self._on_raylet_lost)
        self.plasma = PlasmaClient(self.raylet, reg.raylet_pid, reg.store_fd, reg.store_capacity_bytes,
                                   self.loop.post)
        if not is_worker:
            context.set_root(TaskContext(ids.driver_task_id(self.job_id), self.job_id, name="driver",
                                         namespace=self.namespace,
                                         runtime_env=job_runtime_env or None))
            self.gcs.subscribe(gcs_pb2.LOGS, self.job_id, self._on_logs)
        self.gcs.subscribe(gcs_pb2.WORKER_FAILURE, b"", self._on_worker_failure)
        self.gcs.subscribe(gcs_pb2.NODE, b"", self._on_node_change)
        for node in self.gcs.call("GetAllNodeInfo").nodes:
            self.nodes.setdefault(node.node_id, node)
        self.events.start(self.loop.call_later_threadsafe, self.flush_events)
        self.loop.post(self._release_tick)
        self.loop.add_end_of_iteration_hook_always(self._drain_if_pending)
        _core[0] = self

    def _drain_if_pending(self) -> None:
        if self._releases:
            self._drain_releases()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.post(fn, *args)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def _on_inbound(self, conn: Connection) -> None:
        pass

    # ---- reference counting glue ------------------------------------------------------------------

    def release_ref(self, object_id: bytes) -> None:
        """From ObjectRef.__del__ on any thread: no locks, no I/O.

        Releases are drained by the I/O thread on its next pass or tick
        (waking it for every dropped ref would cost a thread switch each);
        a large backlog wakes it at once."""
        releases = self._releases
        releases.append(object_id)
        if len(releases) > 512 and not self._release_scheduled:
            self._release_scheduled = True
            self.loop.post(self._drain_releases)

    def _release_tick(self) -> None:
        if self._releases:
            self._drain_releases()
        if not self._shutdown:
            self.loop.call_later(self.config.release_drain_interval_ms / 1000, self._release_tick)

    def _drain_releases(self) -> None:
        self._release_scheduled = False
        releases = self._releases
        actions: list[Any] = []
        with self.lock:
            while releases:
                actions.extend(self.refs.remove_local(releases.popleft()))
        if actions:
            self.apply_actions(actions)

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
        for action in actions:
            kind = action[0]
            if kind == "free" or kind == "free_value":
                oid, ref = action[1], action[2]
                self.memory_store.delete(oid)
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
                        with self.lock:
                            more = self.lineage.on_return_freed(ref.lineage)
                        if more:
                            self.apply_actions(more)
            elif kind == "forget":
                self.memory_store.delete(action[1])
            elif kind == "delta":
                _, owner, oid, borrower, n = action
                self._queue_delta(owner, oid, borrower, n, None)

    def _queue_delta(self, owner: bytes, object_id: bytes, borrower: bytes, n: int,
                     container_id: bytes | None) -> None:
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
            for oid, borrower, n, _ in items:
                req.deltas.add(object_id=oid, borrower=self.parse_address(borrower), delta=n)
            self.pool.get(self.parse_address(owner),
                          functools.partial(self._send_deltas_to, req, containers))

    def _send_deltas_to(self, req: Any, containers: list[Any], conn: Connection | None,
                        error: BaseException | None) -> None:
        self._send_deltas(conn, error, req, containers)

    def _send_deltas(self, conn: Connection | None, error: BaseException | None, req: Any,
                     containers: list[bytes]) -> None:
        def unpin(*_: Any) -> None:
            for container_id in containers:
                self.release_ref(container_id)

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

    def _on_raylet_lost(self, conn: Connection) -> None:
        if self._shutdown:
            return
        if self.is_worker:
            os._exit(1)  # fate-share with the node
        logger.error("lost the connection to the local raylet: %s", conn.close_reason)

    # ---- task submission --------------------------------------------------------------------------------

    def register_function(self, exported: ExportedFunction) -> None:
        self._function_bodies[exported.function_id] = exported.pickled

    def function_body(self, function_id: bytes) -> bytes:
        return self._function_bodies.get(function_id, b"")

    def submit_task(self, template: common_pb2.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any],
                    name: str = "", task_id: bytes | None = None) -> list[ObjectRef]:
        """Submit a task; `task_id` is given by notebook clients, which pick
        it (and so the return ids) themselves to submit without waiting."""
        ctx = context.current()
        req = core_worker_pb2.PushTaskRequest()
        spec = req.spec
        spec.CopyFrom(template)
        job_id = ctx.job_id
        task_id = task_id or ids.new_task_id(ids.nil_actor_id(job_id))
        spec.task_id = task_id
        spec.job_id = job_id
        spec.parent_task_id = ctx.task_id
        spec.caller.CopyFrom(self.address)
        if ctx.context_tag:
            spec.context_tag = ctx.context_tag
        spec.namespace = ctx.namespace or self.namespace
        if name:
            spec.name = name
        inherited = self._inherit(spec, ctx)
        arg_ids, keep_alive = self._pack_args(spec, args, kwargs)
        if spec.streaming_generator:
            return_ids = [ids.return_object_id(task_id, 1)]
        else:
            return_ids = [ids.return_object_id(task_id, i + 1) for i in range(spec.num_returns)]
        spec.return_base_id = return_ids[0] if return_ids else ids.return_object_id(task_id, 1)
        task = PendingTask(req, return_ids, arg_ids)
        if not inherited:
            task.sched_key = self._template_key(template)
        with self.lock:
            for oid in return_ids:
                self.refs.own(oid, lineage=task_id)
            if arg_ids:
                self.refs.add_submitted(arg_ids)
            self.task_manager.add(task)
        del keep_alive
        self._track(task)
        if not self.normal_submitter.try_push_now(task):
            self.loop.post(self.normal_submitter.submit, task)
        address = self.address_bytes
        return [ObjectRef(oid, address, True) for oid in return_ids]

    def _template_key(self, template: common_pb2.TaskSpec) -> Any:
        key = self._template_keys.get(id(template))
        if key is None or key[0] is not template:
            from nbray.worker.normal_submitter import scheduling_key

            key = (template, scheduling_key(template))
            self._template_keys[id(template)] = key
        return key[1]

    def _track(self, task: PendingTask) -> None:
        if not task.spec.disable_task_events:
            task.ev.append((0, gcs_pb2.PENDING_ARGS_AVAIL, time.time_ns()))
            self.events.track(task)

    def _build_task_info(self, task: PendingTask, info: gcs_pb2.TaskInfo) -> None:
        spec = task.spec
        key = (spec.name, spec.func_or_class_name, spec.type, spec.job_id, task.sched_key)
        proto = self._info_protos.get(key) if task.sched_key is not None else None
        if proto is None:
            proto = gcs_pb2.TaskInfo(type=spec.type, name=spec.name, func_or_class_name=spec.func_or_class_name,
                                     job_id=spec.job_id, caller_node_id=self.node_id)
            proto.caller.CopyFrom(self.address)
            proto.required_resources.update(spec.resources)
            if task.sched_key is not None:
                if len(self._info_protos) > 1024:
                    self._info_protos.clear()
                self._info_protos[key] = proto
        info.CopyFrom(proto)
        info.parent_task_id = spec.parent_task_id
        if spec.type != common_pb2.NORMAL_TASK:
            info.actor_id = spec.actor_id
        if spec.scheduling_strategy.placement_group_id:
            info.placement_group_id = spec.scheduling_strategy.placement_group_id
        if task.arg_ids:
            info.arg_object_ids.extend(task.arg_ids[:-1] if task.holds_handle else task.arg_ids)
        info.return_object_ids.extend(task.return_ids)
        if spec.context_tag:
            info.context_tag = spec.context_tag

    def _inherit(self, spec: common_pb2.TaskSpec, ctx: TaskContext) -> bool:
        """Child tasks inherit the parent's placement group (when it captures
        them) and runtime environment. Returns True if the spec changed."""
        changed = False
        if ctx.runtime_env and ctx.runtime_env.get("env_vars"):
            for k, v in ctx.runtime_env["env_vars"].items():
                if k not in spec.runtime_env.env_vars:
                    spec.runtime_env.env_vars[k] = v
                    changed = True
        s = spec.scheduling_strategy
        if not (ctx.capture_child_tasks and ctx.placement_group_id):
            return changed
        if (s.kind == common_pb2.SchedulingStrategy.DEFAULT
                and not spec.runtime_env.env_vars.get("__nbray_no_capture__")):
            from nbray.common.resources import placement_group_demand

            demand = placement_group_demand(ctx.placement_group_id, -1, dict(spec.resources))
            spec.resources.clear()
            spec.resources.update(demand)
            s.kind = common_pb2.SchedulingStrategy.PLACEMENT_GROUP
            s.placement_group_id = ctx.placement_group_id
            s.bundle_index = -1
            s.capture_child_tasks = True
            changed = True
        return changed

    def _pack_args(self, spec: common_pb2.TaskSpec, args: tuple[Any, ...] | list[Any],
                   kwargs: dict[str, Any]) -> tuple[list[bytes], list[ObjectRef]]:
        """Fill args_pickle, ref_args and nested_refs.

        Returns the ids of the objects the task holds while pending, and the
        refs to keep alive until those holds are registered.
        """
        if not args and not kwargs:
            spec.args_pickle = _EMPTY_ARGS
            return [], []
        top: list[tuple[int, str, ObjectRef]] = []
        if any(type(a) is ObjectRef for a in args):
            top.extend((i, "", a) for i, a in enumerate(args) if type(a) is ObjectRef)
            args = tuple(None if type(a) is ObjectRef else a for a in args)
        if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
            top.extend((-1, k, v) for k, v in kwargs.items() if type(v) is ObjectRef)
            kwargs = {k: (None if type(v) is ObjectRef else v) for k, v in kwargs.items()}
        try:
            s = serialize((args, kwargs))
        except TypeError:
            raise TypeError(_bad_argument_message(spec.name, args, kwargs)) from None
        if s.total_bytes > self.config.max_inline_object_bytes:
            args, kwargs, promoted = self._promote_large_args(list(args), dict(kwargs))
            top.extend(promoted)
            s = serialize((tuple(args), kwargs))
        spec.args_pickle = s.to_bytes()
        arg_ids: list[bytes] = []
        for position, keyword, ref in top:
            ra = spec.ref_args.add(position=position, keyword=keyword)
            ra.ref.object_id = ref._id
            ra.ref.owner.CopyFrom(self.parse_address(ref._owner) if ref._owner else self.address)
            arg_ids.append(ref._id)
        for oid, owner in s.nested_refs:
            spec.nested_refs.add(object_id=oid, owner=self.parse_address(owner))
            arg_ids.append(oid)
        return arg_ids, [ref for _, _, ref in top]

    def _promote_large_args(self, args: list[Any], kwargs: dict[str, Any]
                            ) -> tuple[list[Any], dict[str, Any], list[tuple[int, str, ObjectRef]]]:
        """Arguments too big to inline become objects in the store."""
        promoted: list[tuple[int, str, ObjectRef]] = []
        limit = self.config.max_inline_object_bytes
        for i, a in enumerate(args):
            if a is None:
                continue
            part = serialize(a)
            if part.total_bytes > limit // 4:
                promoted.append((i, "", self.objects.put_serialized(part)))
                args[i] = None
        for k, v in list(kwargs.items()):
            if v is None:
                continue
            part = serialize(v)
            if part.total_bytes > limit // 4:
                promoted.append((-1, k, self.objects.put_serialized(part)))
                kwargs[k] = None
        return args, kwargs, promoted

    def resubmit(self, task: PendingTask) -> None:
        if task.is_actor:
            self.loop.post(self.actor_submitter.submit, task)
        else:
            self.loop.post(self.normal_submitter.resubmit, task)

    # ---- actors --------------------------------------------------------------------------------------------

    def create_actor(self, template: common_pb2.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                     name: str, namespace: str | None, detached: bool, max_restarts: int,
                     get_if_exists: bool, class_name: str, handle_metadata: bytes
                     ) -> tuple[bytes, gcs_pb2.ActorInfo, ObjectRef | None]:
        """Register an actor with the GCS.

        Returns (actor id, info, handle ref). The handle ref keeps a
        non-detached actor alive; it is None for a detached actor or when
        an existing actor was returned (get_if_exists)."""
        ctx = context.current()
        spec = common_pb2.TaskSpec()
        spec.CopyFrom(template)
        job_id = ctx.job_id
        actor_id = ids.ActorID.of(job_id).binary()
        task_id = ids.new_task_id(actor_id)
        spec.task_id = task_id
        spec.job_id = job_id
        spec.actor_id = actor_id
        spec.parent_task_id = ctx.task_id
        spec.caller.CopyFrom(self.address)
        spec.context_tag = ctx.context_tag
        ns = namespace if namespace is not None else (ctx.namespace or self.namespace)
        spec.namespace = ns
        spec.actor_name = name
        self._inherit(spec, ctx)
        arg_ids, keep_alive = self._pack_args(spec, args, kwargs)
        handle_id = ids.return_object_id(task_id, 1)
        with self.lock:
            self.refs.add_submitted(arg_ids)
        del keep_alive
        req = gcs_pb2.RegisterActorRequest(creation_spec=spec, detached=detached, name=name, namespace=ns,
                                           max_restarts=max_restarts, get_if_exists=get_if_exists,
                                           class_name=class_name, handle_metadata=handle_metadata)
        try:
            reply = self.gcs.call("RegisterActor", req)
        except RpcError as exc:
            self._release_args(arg_ids)
            if exc.code == "already_exists":
                raise ActorAlreadyExistsError(str(exc).split("] ", 1)[-1]) from None
            raise
        if reply.existed:
            self._release_args(arg_ids)
            self.loop.post(self.actor_submitter.track, reply.actor.actor_id, reply.actor)
            return reply.actor.actor_id, reply.actor, None
        handle_ref = None
        if not detached:
            with self.lock:
                self.refs.own(handle_id)
                self.refs.refs[handle_id].actor_id = actor_id
            handle_ref = ObjectRef(handle_id, self.address_bytes, _counted=True)
        # Creation arguments stay pinned while the actor may (re)start.
        self._actor_creation_args[actor_id] = arg_ids
        if not spec.disable_task_events:
            info = gcs_pb2.TaskInfo()
            creation = PendingTask(core_worker_pb2.PushTaskRequest(spec=spec), [], arg_ids)
            self._build_task_info(creation, info)
            self.events.info(spec.task_id, 0, info)
            self.events.state(spec.task_id, 0, gcs_pb2.PENDING_ARGS_AVAIL)
        self.loop.post(self.actor_submitter.track, actor_id, reply.actor)
        return actor_id, reply.actor, handle_ref

    def _release_args(self, arg_ids: list[bytes]) -> None:
        with self.lock:
            actions = self.refs.remove_submitted(arg_ids)
        self.apply_actions(actions)

    def release_creation_args(self, actor_id: bytes) -> None:
        arg_ids = self._actor_creation_args.pop(actor_id, None)
        if arg_ids:
            self._release_args(arg_ids)

    def submit_actor_task(self, actor_id: bytes, template: common_pb2.TaskSpec, args: tuple[Any, ...],
                          kwargs: dict[str, Any], sequence: int, task_id: bytes | None = None,
                          handle_id: bytes = b"") -> list[ObjectRef]:
        """Submit a call to an actor; `handle_id` (the handle's ref) stays
        referenced until the call is done, as Ray keeps an actor alive for
        calls made through a handle that is already gone."""
        ctx = context.current()
        req = core_worker_pb2.PushTaskRequest()
        spec = req.spec
        spec.CopyFrom(template)
        task_id = task_id or ids.new_task_id(actor_id)
        spec.task_id = task_id
        spec.job_id = ctx.job_id
        spec.actor_id = actor_id
        spec.parent_task_id = ctx.task_id
        spec.caller.CopyFrom(self.address)
        spec.caller_handle_id = self.worker_id
        spec.sequence_number = sequence
        if ctx.context_tag:
            spec.context_tag = ctx.context_tag
        spec.namespace = ctx.namespace or self.namespace
        arg_ids, keep_alive = self._pack_args(spec, args, kwargs)
        if spec.streaming_generator:
            return_ids = [ids.return_object_id(task_id, 1)]
        else:
            return_ids = [ids.return_object_id(task_id, i + 1) for i in range(spec.num_returns)]
        spec.return_base_id = return_ids[0] if return_ids else ids.return_object_id(task_id, 1)
        with self.lock:
            if handle_id and handle_id in self.refs.refs:
                arg_ids.append(handle_id)
                holds_handle = True
            else:
                holds_handle = False
            task = PendingTask(req, return_ids, arg_ids)
            task.holds_handle = holds_handle
            for oid in return_ids:
                self.refs.own(oid, lineage=task_id)
            if arg_ids:
                self.refs.add_submitted(arg_ids)
            self.task_manager.add(task)
        del keep_alive
        self._track(task)
        if not self.actor_submitter.try_push_now(task):
            self.loop.post(self.actor_submitter.submit, task)
        address = self.address_bytes
        return [ObjectRef(oid, address, True) for oid in return_ids]

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        self.gcs.call("KillActor", gcs_pb2.KillActorRequest(
            actor_id=actor_id, force_kill=True, no_restart=no_restart,
            reason="the actor was killed with nbray.kill()"))

    # ---- cancellation ---------------------------------------------------------------------------------------

    def cancel(self, object_id: bytes, force: bool, recursive: bool) -> None:
        task = self.task_manager.get(ids.task_id_of(object_id))
        if task is None:
            return  # finished already, or not owned here
        if task.is_actor:
            if force:
                raise ValueError("force=True is not supported for actor tasks; use nbray.kill() on the actor")
            self.loop.post(self.actor_submitter.cancel, task, recursive)
        else:
            self.loop.post(self.normal_submitter.cancel, task, force, recursive)

    def cancel_children(self, parent_task_id: bytes) -> None:
        for task in list(self.task_manager.pending.values()):
            if task.spec.parent_task_id == parent_task_id:
                self.cancel(task.return_ids[0] if task.return_ids else ids.return_object_id(task.task_id, 1),
                            force=False, recursive=True)

    def handle_CancelTask(self, conn: Connection, req: Any, rid: int) -> Any:
        found = False
        if self.executor is not None:
            found = self.executor.cancel(req.task_id, req.force, req.recursive)
        task = self.task_manager.get(req.task_id)
        if task is not None and not found:
            self.cancel(ids.return_object_id(req.task_id, 1), req.force, req.recursive)
            found = True
        return core_worker_pb2.CancelTaskReply(found=found)

    def handle_KillActor(self, conn: Connection, req: Any, rid: int) -> Any:
        if self.executor is not None:
            self.executor.kill_actor(req.force)
        return common_pb2.Empty()

    def handle_PushTask(self, conn: Connection, req: Any, rid: int) -> None:
        if self.executor is None:
            raise RpcError("not_a_worker", "drivers do not run tasks")
        self.executor.handle_push(conn, req, rid)
        return None

    # ---- generators ---------------------------------------------------------------------------------------------

    def handle_ReportGeneratorItem(self, conn: Connection, req: Any, rid: int) -> Any:
        ok = self.task_manager.on_generator_item(req.task_id, req.index, req.item)
        return core_worker_pb2.GeneratorItemReply(stop=not ok)

    def generator_next(self, task_id: bytes, index: int, timeout_s: float | None) -> ObjectRef | None:
        gen = self.task_manager.generators.get(task_id)
        if gen is None:
            return None
        with self.objects.blocked() if not self._generator_ready(gen, index) else _nullcontext(), gen.cond:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while index not in gen.items and (gen.total is None or index < gen.total):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    from nbray.exceptions import GetTimeoutError

                    raise GetTimeoutError("timed out waiting for the next generator item")
                gen.cond.wait(left)
            oid = gen.items.get(index)
        if oid is None:
            return None
        gen.consumed = index + 1
        # The generator's hold on the item moves to the ref handed out.
        return ObjectRef(oid, self.address_bytes, _counted=True)

    @staticmethod
    def _generator_ready(gen: Any, index: int) -> bool:
        return index in gen.items or (gen.total is not None and index >= gen.total)

    def generator_item_ready(self, task_id: bytes, index: int) -> bool:
        gen = self.task_manager.generators.get(task_id)
        return gen is None or self._generator_ready(gen, index)

    def generator_finished(self, task_id: bytes, index: int) -> bool:
        gen = self.task_manager.generators.get(task_id)
        return gen is None or (gen.total is not None and index >= gen.total)

    def generator_dropped(self, task_id: bytes, consumed: int) -> None:
        gen = self.task_manager.generators.pop(task_id, None)
        if gen is None:
            return
        gen.dropped = True
        with gen.cond:
            unconsumed = [oid for i, oid in gen.items.items() if i >= consumed]
        for oid in unconsumed:
            self.release_ref(oid)

    # ---- returns (executor side) ---------------------------------------------------------------------------

    def make_return(self, object_id: bytes, value: Any, caller: common_pb2.Address) -> Any:
        s = serialize(value)
        return self.store_serialized(object_id, s, caller)

    def store_serialized(self, object_id: bytes, s: Serialized, caller: common_pb2.Address) -> Any:
        ret = core_worker_pb2.ReturnObject(object_id=object_id)
        value = ret.value
        if s.nested_refs:
            caller_bytes = caller.SerializeToString()
            actions: list[Any] = []
            with self.lock:
                for inner_id, inner_owner in s.nested_refs:
                    actions.extend(self.refs.register_receiver(inner_id, inner_owner, caller.worker_id,
                                                               caller_bytes))
                    value.nested_refs.add(object_id=inner_id, owner=self.parse_address(inner_owner))
            if actions:
                self.apply_actions(actions)
        if s.total_bytes <= self.config.max_inline_object_bytes:
            value.format = common_pb2.VALUE_ERROR if s.is_error else common_pb2.VALUE_PICKLE
            value.data = s.to_bytes()
        else:
            self.plasma.put(object_id, s, caller)
            value.format = _IN_PLASMA
            value.plasma_node_id = self.node_id
            value.plasma_size = s.total_bytes
        return ret

    def read_args(self, refs: list[common_pb2.ObjectReference], node_ids: list[bytes]) -> list[Any]:
        """Values of top-level arguments that live in a shared-memory store."""
        obj_refs = [ObjectRef(r.object_id, r.owner.SerializeToString()) for r in refs]
        missing = [r for r, node in zip(obj_refs, node_ids) if not node]
        if missing:
            # location unknown to the submitter: ask the owners first
            return self.objects.get(obj_refs, None)
        values: dict[bytes, Any] = {}
        self.objects._get_plasma(obj_refs, values, None)
        return [values[r._id] for r in obj_refs]

    # ---- blocking -----------------------------------------------------------------------------------------------

    def notify_blocked(self, blocked: bool) -> None:
        if blocked and self.executor is not None:
            self.executor.on_blocked()
        self.raylet.send_oneway(_BLOCKED, raylet_pb2.NotifyBlockedRequest(blocked=blocked))

    # ---- task events --------------------------------------------------------------------------------------------

    def flush_events(self) -> None:
        req = self.events.drain()
        if req is not None and not self.gcs.conn.closed:
            self.gcs.send("AddTaskEvents", req)

    # ---- output ----------------------------------------------------------------------------------------------------

    def _on_logs(self, msg: gcs_pb2.PubMessage) -> None:
        if self.config.log_to_driver:
            try:
                self.log_handler(msg.logs)
            except Exception:
                logger.exception("printing worker output failed")

    def flush_logs(self, timeout_s: float = 2.0) -> None:
        """Wait until worker output written so far, on every node, has reached this driver."""
        flush = method("RayletService.FlushLogs")
        deadline = time.monotonic() + timeout_s
        futures = []
        try:
            futures.append(self.raylet.call(flush, common_pb2.Empty()))
        except Exception:
            pass
        for node in list(self.nodes.values()):
            if node.node_id == self.node_id or node.state != gcs_pb2.NodeInfo.ALIVE or not node.raylet_port:
                continue
            try:
                conn = self.pool.get_blocking(f"{node.node_ip}:{node.raylet_port}")
                futures.append(conn.call(flush, common_pb2.Empty()))
            except Exception:
                continue  # a node going away has no output left to wait for
        for future in futures:
            future.wait(max(0.0, deadline - time.monotonic()))
        try:
            # a GCS round trip lets publishes queued behind the flushes arrive
            self.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="", key=b""), max(0.1, deadline - time.monotonic()))
        except Exception:
            pass

    # ---- misc ----------------------------------------------------------------------------------------------------------

    def future_object(self, start: Callable[[Callable[[Any, bool], None]], None]) -> ObjectRef:
        """An owned object whose value some later event provides.

        ``start(fulfill)`` runs on the I/O thread; ``fulfill(value, is_error)``
        stores the value."""
        ctx = context.current()
        oid = ids.put_object_id(ctx.task_id, ctx.next_put_index())
        with self.lock:
            self.refs.own(oid)

        def fulfill(value: Any, is_error: bool) -> None:
            self.memory_store.put(oid, Entry(serialize(value, is_error=is_error).to_bytes(), is_error=is_error))

        self.loop.post(start, fulfill)
        return ObjectRef(oid, self.address_bytes, _counted=True)

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
                                 size=ref.size or (entry.size if entry is not None else 0),
                                 task_status=status, reference_type=kind, in_plasma=ref.in_plasma)
            row.owner.CopyFrom(self.parse_address(ref.owner))
            if ref.node_ids:
                row.node_id = next(iter(ref.node_ids))
        return reply

    def object_size(self, object_id: bytes) -> int:
        entry = self.memory_store.get(object_id)
        return entry.size if entry is not None else 0

    def ref_future(self, ref: ObjectRef) -> Any:
        return self.objects.future(ref)

    def set_actor(self, actor_id: bytes, spec: Any) -> None:
        self.actor_id = actor_id
        self.actor_spec = spec

    def exit_worker(self, reason: str, intended: bool, code: int = 0) -> None:
        """Leave the cluster now (exit_actor, kill, out of scope)."""
        try:
            self.raylet.send_oneway(_EXITING, raylet_pb2.WorkerExitingRequest(reason=reason))
            self.raylet.flush()
            self.flush_events()
            self.gcs.conn.flush()
        except Exception:
            pass
        if intended:
            from nbray.worker.executor import run_exit_hooks

            run_exit_hooks()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)

    def handle_Exit(self, conn: Connection, req: Any, rid: int) -> Any:
        if self.executor is not None and (self.executor.num_running or self.refs.refs) and not req.force:
            return core_worker_pb2.ExitReply(success=False)
        self.loop.call_later(0.01, self.exit_worker, "idle", True)
        return core_worker_pb2.ExitReply(success=True)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        _core[0] = None
        try:
            done = threading.Event()

            def final() -> None:
                self.flush_events()
                self.normal_submitter.shutdown()
                done.set()

            self.loop.post(final)
            done.wait(2.0)
            if not self.is_worker and self.job_id:
                self.flush_logs()
                try:
                    self.gcs.call("MarkJobFinished", gcs_pb2.MarkJobFinishedRequest(job_id=self.job_id),
                                  timeout_s=5.0)
                except Exception:
                    pass
        finally:
            self.objects.shutdown()
            self.loop.post(self._close_all)
            self.loop.join(5.0)
            self.loop.close()
            self.plasma.close()
            context.set_root(None)

    def _close_all(self) -> None:
        self.listener.close()
        self.unix_listener.close()
        self.pool.close()
        self.raylet.close("shutdown")
        self.gcs.close()
        self.loop.stop()


_EMPTY_ARGS = serialize(((), {})).to_bytes()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _worker_id_of(address_bytes: bytes) -> bytes:
    addr = common_pb2.Address()
    addr.ParseFromString(address_bytes)
    return addr.worker_id


def print_logs(batch: gcs_pb2.LogBatch) -> None:
    """Default output of worker logs on a driver: "(name pid=123) line"."""
    for entry in batch.entries:
        stream = sys.stderr if entry.is_err else sys.stdout
        if entry.task_name == "nbray":
            stream.write(entry.text)
            continue
        prefix = f"({entry.task_name or 'worker'} pid={entry.pid}"
        if entry.node_ip and entry.node_ip not in ("127.0.0.1", "localhost"):
            prefix += f", ip={entry.node_ip}"
        prefix += ") "
        text = entry.text
        lines = text.splitlines()
        stream.write("".join(prefix + line + "\n" for line in lines))
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


def _bad_argument_message(task_name: str, args: Any, kwargs: dict[str, Any]) -> str:
    from nbray.common.serialization import find_unserializable

    for i, a in enumerate(args):
        try:
            serialize(a)
        except TypeError:
            return (f"Could not serialize argument {i} of {task_name}(): "
                    f"{find_unserializable(a)}. Arguments must be picklable (cloudpickle); "
                    "create such objects inside the task instead of passing them.")
    for k, v in kwargs.items():
        try:
            serialize(v)
        except TypeError:
            return (f"Could not serialize keyword argument {k!r} of {task_name}(): "
                    f"{find_unserializable(v)}. Arguments must be picklable (cloudpickle); "
                    "create such objects inside the task instead of passing them.")
    return f"Could not serialize the arguments of {task_name}()"
