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

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nbray.common import ids
from nbray.common.config import Config
from nbray.common.serialization import Serialized, serialize
from nbray.exceptions import ActorAlreadyExistsError, RpcError
from nbray.gcs.client import GcsClient
from nbray.object_ref import ObjectRef, _core
from nbray.object_store.client import PlasmaClient
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handler_timing import HandlerTimer
from nbray.rpc.handshake import Listener, bind_listener, connect
from nbray.rpc.pool import ConnectionPool
from nbray.util import metrics as user_metrics
from nbray.worker import context
from nbray.worker.actor_submitter import ActorTaskSubmitter
from nbray.worker.context import TaskContext
from nbray.worker.function_manager import ExportedFunction
from nbray.worker.gcs_reconnect import watch_gcs
from nbray.worker.log_output import print_logs
from nbray.worker.memory_store import Entry, MemoryStore
from nbray.worker.normal_submitter import NormalTaskSubmitter
from nbray.worker.objects import ObjectAccess
from nbray.worker.ownership import Ownership
from nbray.worker.pending_task import PendingTask
from nbray.worker.recovery import Lineage
from nbray.worker.reference_counter import ReferenceCounter
from nbray.worker.task_args import ArgumentPacking, inherits_from
from nbray.worker.task_events import TaskEventBuffer
from nbray.worker.task_manager import TaskManager

if TYPE_CHECKING:
    from nbray.worker.executor import Executor

logger = logging.getLogger(__name__)

_REGISTER = method("RayletService.RegisterWorker")
_BLOCKED = method("RayletService.NotifyBlocked")
_EXITING = method("RayletService.NotifyWorkerExiting")
_IN_PLASMA = common_pb2.VALUE_IN_PLASMA


class CoreWorker(Ownership, ArgumentPacking):
    tasks_submitted = 0
    """Tasks, actor calls and actors this process submitted (retries
    included): unchanged since a log flush, nothing new can have printed."""

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
        self.rpc_timer = HandlerTimer("worker" if is_worker else "driver", node_id.hex())
        self.dispatcher.register_service("CoreWorkerService", self, wrap=self.rpc_timer.wrap)
        self.memory_store = MemoryStore(node_id)
        self.events = TaskEventBuffer(config.task_events_max_buffer, config.task_events_report_interval_ms,
                                      config.task_events_final_report_delay_ms)
        self.events.info_parts = self._task_info_parts
        self.task_manager = TaskManager(self)
        self.normal_submitter = NormalTaskSubmitter(self)
        self.actor_submitter = ActorTaskSubmitter(self)
        self.objects = ObjectAccess(self)
        self.lineage = Lineage(self)
        self.nodes: dict[bytes, gcs_pb2.NodeInfo] = {}
        self.executor: Executor | None = None
        if is_worker:  # a driver runs no tasks: it need not import the executor (and asyncio)
            from nbray.worker.executor import Executor

            self.executor = Executor(self)
        self._init_ownership()
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
        self.gcs = GcsClient(self.loop, gcs_address, token, self.dispatcher, config, role=role, reconnect=True)
        if not is_worker:
            job = gcs_pb2.JobInfo(driver=self.address, driver_pid=os.getpid(), namespace=namespace,
                                  entrypoint=entrypoint or " ".join(sys.argv))
            if job_runtime_env and job_runtime_env.get("env_vars"):
                job.runtime_env.env_vars.update(job_runtime_env["env_vars"])
            reply = self.gcs.call("AddJob", gcs_pb2.AddJobRequest(job=job))
            self.job_id = reply.job_id
            self.namespace = reply.namespace
        watch_gcs(self.gcs, is_driver=not is_worker, job_id=self.job_id, driver=self.address)
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
        user_metrics.set_source("rpc_handler_seconds", self.rpc_timer.take_points)

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
        job_id = ctx.job_id
        task_id = task_id or ids.new_task_id(ids.nil_actor_id(job_id))
        args_pickle, top, nested = self._serialize_args(name or template.name, args, kwargs)
        n = 1 if template.streaming_generator else template.num_returns
        return_ids = [ids.return_object_id(task_id, i + 1) for i in range(n)]
        return_base_id = return_ids[0] if return_ids else ids.return_object_id(task_id, 1)
        keep_alive: list[ObjectRef] = []
        if not top and not nested and not inherits_from(ctx):
            # The common case: a compact record, its spec built when pushed.
            task = PendingTask.compact(template, task_id, job_id, ctx.task_id, ctx.context_tag,
                                       ctx.namespace or self.namespace, self.address, args_pickle,
                                       return_ids, return_base_id, name)
            task.sched_key = self._template_key(template)
        else:
            req = core_worker_pb2.PushTaskRequest()
            spec = req.spec
            spec.CopyFrom(template)
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
            arg_ids, keep_alive = self._fill_args(spec, args_pickle, top, nested)
            spec.return_base_id = return_base_id
            task = PendingTask(req, return_ids, arg_ids)
            if not inherited:
                task.sched_key = self._template_key(template)
        with self.lock:
            self.refs.own_returns(return_ids, task_id)
            if task.arg_ids:
                self.refs.add_submitted(task.arg_ids)
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
        self.tasks_submitted += 1
        if not task.template.disable_task_events:
            task.ev.append((0, gcs_pb2.PENDING_ARGS_AVAIL, time.time_ns()))
            self.events.track(task)

    def _task_info_parts(self, task: PendingTask) -> tuple[gcs_pb2.TaskInfo, Sequence[bytes], Sequence[bytes]]:
        """A tracked task's static facts: a TaskInfo shared by the tasks alike
        (without object ids), its argument ids and its return ids."""
        # From the record and its template: a queued task's spec is not built yet.
        t = task.template
        actor_id = task.actor_id if t.type != common_pb2.NORMAL_TASK else b""
        pg = t.scheduling_strategy.placement_group_id
        # An actor call's template is its own spec, so its resources join the key.
        shape = task.sched_key if task.sched_key is not None else tuple(t.resources.items()) if task.is_actor \
            else None
        key = (task.name, t.func_or_class_name, t.type, task.job_id, shape, task.parent_task_id,
               actor_id, pg, task.context_tag)
        proto = self._info_protos.get(key) if shape is not None else None
        if proto is None:
            proto = gcs_pb2.TaskInfo(type=t.type, name=task.name, func_or_class_name=t.func_or_class_name,
                                     job_id=task.job_id, caller_node_id=self.node_id,
                                     parent_task_id=task.parent_task_id, actor_id=actor_id,
                                     placement_group_id=pg, context_tag=task.context_tag or "")
            proto.caller.CopyFrom(self.address)
            proto.required_resources.update(t.resources)
            if shape is not None:
                if len(self._info_protos) > 1024:
                    self._info_protos.clear()
                self._info_protos[key] = proto
        args = task.arg_ids[:-1] if task.arg_ids and task.holds_handle else task.arg_ids
        return proto, args, task.return_ids

    def resubmit(self, task: PendingTask) -> None:
        self.tasks_submitted += 1
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
        self.tasks_submitted += 1
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
            parts = self._task_info_parts(PendingTask(core_worker_pb2.PushTaskRequest(spec=spec), [], arg_ids))
            info.CopyFrom(parts[0])
            info.arg_object_ids.extend(parts[1])
            info.return_object_ids.extend(parts[2])
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
        task_id = task_id or ids.new_task_id(actor_id)
        args_pickle, top, nested = self._serialize_args(template.name, args, kwargs)
        n = 1 if template.streaming_generator else template.num_returns
        return_ids = [ids.return_object_id(task_id, i + 1) for i in range(n)]
        return_base_id = return_ids[0] if return_ids else ids.return_object_id(task_id, 1)
        namespace = ctx.namespace or self.namespace
        call = (actor_id, sequence, self.worker_id)
        keep_alive: list[ObjectRef] = []
        eager = bool(top or nested)  # ref arguments: a spec of its own from the start
        if eager:
            req = core_worker_pb2.PushTaskRequest()
            spec = req.spec
            spec.CopyFrom(template)
            spec.task_id = task_id
            spec.job_id = ctx.job_id
            spec.actor_id, spec.sequence_number, spec.caller_handle_id = call
            spec.parent_task_id = ctx.task_id
            spec.caller.CopyFrom(self.address)
            if ctx.context_tag:
                spec.context_tag = ctx.context_tag
            spec.namespace = namespace
            arg_ids, keep_alive = self._fill_args(spec, args_pickle, top, nested)
            spec.return_base_id = return_base_id
        else:  # the common case: a compact record, its spec built only if needed
            arg_ids = []
        with self.lock:
            holds_handle = bool(handle_id) and handle_id in self.refs.refs
            if holds_handle:
                arg_ids.append(handle_id)
            if eager:
                task = PendingTask(req, return_ids, arg_ids)
            else:
                task = PendingTask.compact(template, task_id, ctx.job_id, ctx.task_id, ctx.context_tag, namespace,
                                           self.address, args_pickle, return_ids, return_base_id, "",
                                           actor_call=call, arg_ids=arg_ids)
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
        reason = "the actor was killed with nbray.kill()"
        self.gcs.call("KillActor", gcs_pb2.KillActorRequest(
            actor_id=actor_id, force_kill=True, no_restart=no_restart, reason=reason))
        if no_restart:
            # The GCS kills the worker after it replies: calls made from here
            # on must not reach it meanwhile.
            self.actor_submitter.killed(actor_id, reason)

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
            if task.parent_task_id == parent_task_id:
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

    def flush_events(self, everything: bool = False) -> None:
        req = self.events.drain(everything)
        if req is not None and not self.gcs.conn.closed:
            self.gcs.send("AddTaskEvents", req)

    # ---- output ----------------------------------------------------------------------------------------------------

    def _on_logs(self, msg: gcs_pb2.PubMessage) -> None:
        if self.config.log_to_driver:
            try:
                self.log_handler(msg.logs)
            except Exception:
                logger.exception("printing worker output failed")

    def flush_logs(self, timeout_s: float = 2.0) -> bool:
        """Wait until worker output written so far, on every node, has reached
        this driver; False when some node or the GCS did not answer in time."""
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
        complete = True
        for future in futures:
            complete = future.wait(max(0.0, deadline - time.monotonic())) and complete
        try:
            # a GCS round trip lets publishes queued behind the flushes arrive
            self.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="", key=b""), max(0.1, deadline - time.monotonic()))
        except Exception:
            return False
        return complete

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
            self.flush_events(everything=True)
            _flush_user_metrics()
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
        try:
            _flush_user_metrics()
        except Exception:
            pass
        _core[0] = None
        try:
            done = threading.Event()

            def final() -> None:
                self.flush_events(everything=True)
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


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _flush_user_metrics() -> None:
    """Send what nbray.util.metrics recorded since its last report (a process
    that never used it has nothing to send and does not import it)."""
    metrics = sys.modules.get("nbray.util.metrics")
    if metrics is not None:
        metrics.flush()
