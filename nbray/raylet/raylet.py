"""The raylet process: one per node.

Serves ``RayletService`` on a Unix socket (local drivers and workers) and
on TCP (other raylets, remote owners, and requests the GCS sends back over
the raylet's own GCS connection). Composes the worker pool, lease manager,
object store, object manager and log router; the decision logic lives in
those modules, this one only carries messages.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from nbray._version import __version__
from nbray.common.child_process import ChildProcess
from nbray.common.config import Config
from nbray.common.resources import NodeResources, bundle_resources, to_fixed, to_float
from nbray.exceptions import ConnectionLostError
from nbray.gcs.client import GcsClient
from nbray.node import detect, session
from nbray.object_store.store import ObjectStore
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.raylet import zygote_process
from nbray.raylet.lease_manager import LeaseManager
from nbray.raylet.log_router import LogRouter
from nbray.raylet.memory_monitor import MemoryMonitor
from nbray.raylet.metrics import RayletMetrics
from nbray.raylet.object_manager import ObjectManager
from nbray.raylet.puller import Puller
from nbray.raylet.scheduling import ClusterView, NodeView, PolicyConfig, Scheduler
from nbray.raylet.worker_pool import Worker, WorkerPool
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handler_timing import HandlerTimer
from nbray.rpc.handshake import Listener, bind_listener
from nbray.rpc.pool import ConnectionPool
from nbray.runtime_env.node_agent import RuntimeEnvAgent

logger = logging.getLogger(__name__)

_CW_EXIT = method("CoreWorkerService.Exit")
_CW_UPDATE_LOCATIONS = method("CoreWorkerService.UpdateObjectLocations")
_FLUSH_LOGS_GCS_TIMEOUT_S = 5.0  # a FlushLogs caller waits less than this (it has its own deadline)


class Raylet:
    def __init__(
        self,
        *,
        node_id: bytes,
        gcs_address: str,
        node_ip: str,
        port: int,
        session_dir: str,
        resources: dict[str, float],
        gpu_ids: list[str],
        object_store_bytes: int,
        config: Config,
        token: bytes,
        is_head: bool,
        node_name: str = "",
        labels: dict[str, str] | None = None,
    ) -> None:
        self.node_id = node_id
        self.gcs_address = gcs_address
        self.node_ip = node_ip
        self.session_dir = session_dir
        self.config = config
        self.token = token
        self.is_head = is_head
        self.node_name = node_name or node_ip
        self.labels = labels or {}
        self.gpu_ids = gpu_ids
        self.loop = EventLoop("raylet")
        self.dispatcher = Dispatcher()
        self.rpc_timer = HandlerTimer("raylet", node_id.hex())
        self.dispatcher.register_service("RayletService", self, wrap=self.rpc_timer.wrap)
        self.dispatcher.register_service("ZygoteEventsService", self, wrap=self.rpc_timer.wrap)
        self.metrics = RayletMetrics(node_id.hex(), self.rpc_timer)
        short = node_id.hex()[:8]
        self.socket_path = session.socket_path(session_dir, f"raylet-{short}.sock")
        self.host_key = detect.host_key()
        # Raylets on this host, by node id: their Unix socket paths.
        self.same_host_sockets: dict[bytes, str] = {}
        self.log_dir = os.path.join(session_dir, "logs")
        spill_dir = config.object_spilling_directory or os.path.join(session_dir, "spill", short)
        self.store = ObjectStore(
            object_store_bytes, spill_dir,
            spilling_enabled=config.object_spilling_enabled,
            full_timeout_s=config.object_store_full_timeout_ms / 1000,
            fallback_enabled=config.object_store_fallback_enabled,
        )
        self.store.on_location_change = self._on_location_change
        self.peers = ConnectionPool(self.loop, token, self.dispatcher, config, role="raylet", local_node_id=node_id)
        self.object_manager = ObjectManager(self.loop, self.store)
        self.puller = Puller(self.loop, self.store, self.peers, config, node_id, self._node_address,
                             self.object_manager.fail)
        self.object_manager.fetch_remote = self.puller.fetch
        total = dict(resources)
        total.setdefault(f"node:{node_ip}", 1.0)
        if is_head:
            total.setdefault("node:__internal_head__", 1.0)
        self.view = ClusterView(node_id)
        self.view.nodes[node_id] = NodeView(node_id, NodeResources(total), node_ip, 0)
        self.scheduler = Scheduler(PolicyConfig(
            config.scheduler_spread_threshold, config.scheduler_top_k_fraction,
            config.scheduler_top_k_absolute))
        self.unix_listener = Listener(
            self.loop, bind_listener("unix:" + self.socket_path), token, self.dispatcher,
            self._on_connection, role="raylet", handshake_timeout_s=config.handshake_timeout_ms / 1000,
            max_frame_bytes=config.max_frame_bytes, max_trailer_bytes=config.max_trailer_bytes)
        self.tcp_listener = Listener(
            self.loop, bind_listener(f"{node_ip}:{port}"), token, self.dispatcher,
            self._on_connection, role="raylet", handshake_timeout_s=config.handshake_timeout_ms / 1000,
            max_frame_bytes=config.max_frame_bytes, max_trailer_bytes=config.max_trailer_bytes)
        self.port = int(self.tcp_listener.address.rsplit(":", 1)[1])
        self.view.local.port = self.port
        self.gcs: GcsClient | None = None
        self.cluster_id = b""
        self.log_router = LogRouter(
            self.loop, session.socket_path(session_dir, f"logs-{short}.sock"), token,
            self.log_dir, node_ip, self._publish_logs, self._pid_of_token,
            flush_interval_s=config.log_flush_interval_ms / 1000,
            batch_max_bytes=config.log_batch_max_bytes)
        self.zygote_proc: ChildProcess | None = None
        self.pool: WorkerPool | None = None
        self.leases: LeaseManager | None = None
        self.memory_monitor: MemoryMonitor | None = None
        self._report_timer: Any = None
        self._report_version = 0
        self._shutting_down = False
        self._started_at_ms = int(time.time() * 1000)
        # placement group id -> bundle index -> [BundleSpec, committed]
        self._bundles: dict[bytes, dict[int, list[Any]]] = {}

    # ---- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        self.unix_listener.start()
        self.tcp_listener.start()
        self.log_router.start()
        zygote_conn = self._start_zygote()
        num_cpus = int(self.view.local.resources.total.get("CPU", 0) // 10_000)
        self.pool = WorkerPool(
            self.loop, self.config, zygote_conn, self.log_dir,
            on_idle=lambda w: self.leases.schedule() if self.leases else None,
            on_dead=self._on_worker_dead,
            num_prestart=num_cpus,
            runtime_envs=RuntimeEnvAgent(
                os.path.join(self.session_dir, "runtime_resources", self.node_id.hex()[:8]),
                lambda: self.gcs, self.loop.post, self.config.runtime_env_max_unused),
            on_env_failed=lambda key, error: self.leases.fail_runtime_env(key, (
                f"The runtime_env could not be set up on node {self.node_ip} "
                f"({self.node_id.hex()[:8]}): {error}")) if self.leases else None,
        )
        self.leases = LeaseManager(
            self.config, self.view, self.pool, self.scheduler, self.gpu_ids,
            on_resources_changed=self._schedule_report, warn_job=self._warn_job)
        self.memory_monitor = MemoryMonitor(self.loop, self.config, self.node_id, self.node_ip, self.leases, self.pool)
        self.gcs = GcsClient(self.loop, self.gcs_address, self.token, self.dispatcher, self.config,
                             role="raylet", reconnect=True)
        self.gcs.on_gave_up.append(self._on_gcs_gave_up)
        self.gcs.on_reconnected.append(self._register_again)
        timeout_s = self.config.rpc_timeout_ms / 1000
        reply = self.loop.run_until_done(
            self.gcs.call_async("RegisterNode", gcs_pb2.RegisterNodeRequest(node=self.node_info())),
            timeout_s)
        self.cluster_id = reply.cluster_id  # type: ignore[attr-defined]
        self.gcs.subscribe(gcs_pb2.RESOURCE_VIEW, b"", self._on_resource_view)
        self.gcs.subscribe(gcs_pb2.NODE, b"", self._on_node_change)
        self.gcs.subscribe(gcs_pb2.WORKER_FAILURE, b"", self._on_worker_failure)
        self.pool.prestart()
        self.memory_monitor.start()
        self.loop.call_later(1.0, self._periodic)
        self._schedule_report()
        self.loop.call_later(self.config.metrics_report_period_ms / 1000, self._report_metrics)

    def _start_zygote(self) -> Connection:
        args = zygote_process.zygote_args(
            log_socket=self.log_router.socket_path, raylet_socket=self.socket_path, node_id=self.node_id,
            node_ip=self.node_ip, gcs_address=self.gcs_address, session_dir=self.session_dir)
        # Started by ``python -m nbray.raylet`` while this process imported its modules, if it could.
        zygote = zygote_process.take_early(args, self.config) or zygote_process.spawn(
            args, self.token, self.config.to_json(), zygote_process.log_path(self.session_dir, self.node_id))
        self.zygote_proc = zygote.proc
        conn = Connection(self.loop, zygote.control, self.dispatcher, name="zygote")
        conn.add_close_callback(lambda c: self._on_zygote_lost())
        conn.start()
        return conn

    def node_info(self) -> gcs_pb2.NodeInfo:
        info = gcs_pb2.NodeInfo(
            node_id=self.node_id, node_ip=self.node_ip, hostname=socket.gethostname(),
            raylet_port=self.port, raylet_socket=self.socket_path, is_head=self.is_head,
            start_time_ms=self._started_at_ms, object_store_bytes=self.store.capacity,
            nbray_version=__version__, session_dir=self.session_dir, node_name=self.node_name,
            raylet_pid=os.getpid(), host_key=self.host_key,
        )
        info.resources_total.update(self.view.local.resources.total_float())
        info.labels.update(self.labels)
        return info

    def run(self) -> None:
        self.loop.run_forever()

    # ---- connections ------------------------------------------------------------------------

    def _on_connection(self, conn: Connection) -> None:
        conn.add_close_callback(self._on_client_closed)

    def _on_client_closed(self, conn: Connection) -> None:
        self.store.release_client(conn)
        if self.leases is not None:
            self.leases.drop_requests_of(conn)

    # ---- registration -----------------------------------------------------------------------

    def handle_RegisterWorker(self, conn: Connection, req: raylet_pb2.RegisterWorkerRequest,
                              rid: int) -> raylet_pb2.RegisterWorkerReply:
        assert self.pool is not None
        if req.worker_type == "driver":
            worker = self.pool.register_driver(conn, req)
        else:
            found = self.pool.register_worker(conn, req)
            if found is None:
                from nbray.exceptions import RpcError

                raise RpcError("unknown_worker", f"no worker was started with token {req.startup_token}")
            worker = found
        conn.context = worker
        return raylet_pb2.RegisterWorkerReply(
            node_id=self.node_id, node_ip=self.node_ip, gcs_address=self.gcs_address,
            session_dir=self.session_dir, raylet_pid=os.getpid(), store_fd=self.store.fd,
            store_capacity_bytes=self.store.capacity, raylet_port=self.port,
            config_json=self.config.to_json(),
        )

    # ---- leases ---------------------------------------------------------------------------------

    def handle_RequestWorkerLease(self, conn: Connection, req: raylet_pb2.RequestWorkerLeaseRequest,
                                  rid: int) -> None:
        assert self.leases is not None
        self.leases.request(conn, req, rid, method("RayletService.RequestWorkerLease").id)
        return None

    def handle_CancelWorkerLease(self, conn: Connection, req: raylet_pb2.CancelWorkerLeaseRequest,
                                 rid: int) -> raylet_pb2.CancelWorkerLeaseReply:
        assert self.leases is not None
        return raylet_pb2.CancelWorkerLeaseReply(
            success=self.leases.cancel(req.owner_worker_id, req.lease_request_id))

    def handle_ReturnWorker(self, conn: Connection, req: raylet_pb2.ReturnWorkerRequest,
                            rid: int) -> common_pb2.Empty:
        assert self.leases is not None
        self.leases.return_lease(req.lease_id, req.disconnect_worker, req.reason)
        return common_pb2.Empty()

    def handle_NotifyBlocked(self, conn: Connection, req: raylet_pb2.NotifyBlockedRequest, rid: int) -> None:
        worker = conn.context
        if isinstance(worker, Worker) and self.leases is not None:
            self.leases.set_blocked(worker, req.blocked)
        return None

    def handle_NotifyWorkerExiting(self, conn: Connection, req: raylet_pb2.WorkerExitingRequest,
                                   rid: int) -> None:
        worker = conn.context
        if isinstance(worker, Worker):
            worker.killed_reason = "exit requested"
        return None

    # ---- objects ---------------------------------------------------------------------------------

    def handle_CreateObject(self, conn: Connection, req: raylet_pb2.CreateObjectRequest, rid: int) -> None:
        mid = method("RayletService.CreateObject").id

        def done(offset: int | None, error: str) -> None:
            if conn.closed:
                if offset is not None and offset >= 0:
                    self.store.abort(req.object_id)
                return
            if offset is None:
                conn.reply(rid, mid, raylet_pb2.CreateObjectReply(error=error))
            elif offset < 0:
                conn.reply(rid, mid, raylet_pb2.CreateObjectReply(already_exists=True))
            else:
                conn.reply(rid, mid, raylet_pb2.CreateObjectReply(
                    offset=offset, fallback_path=self.store.fallback_path(req.object_id)))

        owner = common_pb2.Address()
        owner.CopyFrom(req.owner)
        self.store.create(req.object_id, req.data_size, owner, conn, done)
        if self.store.has_pending():
            self.loop.call_later(self.config.object_store_full_timeout_ms / 1000 + 0.01,
                                 self.store.expire_pending)
        return None

    def handle_SealObject(self, conn: Connection, req: raylet_pb2.SealObjectRequest, rid: int) -> None:
        self.store.seal(req.object_id)
        if req.keep_pinned:
            self.store.pin(req.object_id, conn)
        return None

    def handle_GetObjects(self, conn: Connection, req: raylet_pb2.GetObjectsRequest, rid: int) -> None:
        self.object_manager.handle_get(conn, req, rid, method("RayletService.GetObjects").id)
        return None

    def handle_ReleaseObjects(self, conn: Connection, req: raylet_pb2.ObjectIdsRequest, rid: int) -> None:
        for oid in req.object_ids:
            self.store.release(oid, conn)
        return None

    def handle_FreeObjects(self, conn: Connection, req: raylet_pb2.ObjectIdsRequest, rid: int) -> None:
        for oid in req.object_ids:
            self.store.free(oid)
        return None

    def handle_PullChunk(self, conn: Connection, req: raylet_pb2.PullChunkRequest, rid: int) -> None:
        mid = method("RayletService.PullChunk").id
        obj = self.store.pin(req.object_id, conn)
        if obj is None:
            conn.reply(rid, mid, raylet_pb2.PullChunkReply(missing=True))
            return None
        end = min(obj.size, req.offset + req.length)
        # Send straight from the store; the pin holds the bytes in place until
        # the socket has taken them.
        conn.reply(rid, mid, raylet_pb2.PullChunkReply(total_size=obj.size),
                   trailer=self.store.view(obj)[req.offset:end],
                   on_sent=lambda: self.store.release(req.object_id, conn))
        return None

    def _node_address(self, node_id: bytes) -> str | None:
        view = self.view.nodes.get(node_id)
        if view is None or not view.alive or not view.port:
            return None
        path = self.same_host_sockets.get(node_id)
        if path is not None:
            return "unix:" + path  # same host: skip the TCP stack (about 3x the bandwidth)
        return f"{view.host}:{view.port}"

    def _on_location_change(self, obj: Any, added: bool) -> None:
        """Tell owners about copies they did not create (pulled here, or evicted)."""
        if obj.is_primary or obj.owner is None or not obj.owner.worker_id:
            return
        update = core_worker_pb2.UpdateObjectLocationsRequest()
        update.updates.add(object_id=obj.object_id, node_id=self.node_id, added=added, size=obj.size)
        self.peers.get(obj.owner, lambda conn, err: conn.send_oneway(_CW_UPDATE_LOCATIONS, update)
                       if conn is not None else None)

    # ---- stats and control ------------------------------------------------------------------------

    def handle_GetNodeStats(self, conn: Connection, req: raylet_pb2.GetNodeStatsRequest,
                            rid: int) -> raylet_pb2.GetNodeStatsReply:
        assert self.pool is not None and self.leases is not None
        res = self.view.local.resources
        reply = raylet_pb2.GetNodeStatsReply(
            node_id=self.node_id, store_capacity_bytes=self.store.capacity,
            store_used_bytes=self.store.used_bytes, store_spilled_bytes=self.store.spilled_bytes,
            num_objects=len(self.store.objects),
            spilled_objects_total=self.store.spilled_objects_total,
            restored_objects_total=self.store.restored_objects_total,
            bytes_pulled=self.puller.bytes_pulled,
            store_fallback_bytes=self.store.fallback_bytes, fallback_objects=self.store.fallback_objects,
            fallback_objects_total=self.store.fallback_objects_total,
        )
        reply.total.update(res.total_float())
        reply.available.update(res.available_float())
        reply.demands.extend(self.leases.demands())
        for lease in self.leases.leases.values():
            for name, picks in lease.allocation.instances.items():
                if name == "GPU":
                    for idx, _ in picks:
                        gid = self.gpu_ids[idx] if idx < len(self.gpu_ids) else str(idx)
                        reply.gpu_holders[gid] = lease.worker.worker_id
        if req.include_objects:
            for obj in self.store.objects.values():
                s = reply.objects.add(object_id=obj.object_id, data_size=obj.size,
                                      where=obj.where,
                                      pin_count=obj.pin_count, is_primary=obj.is_primary)
                if obj.owner is not None:
                    s.owner.CopyFrom(obj.owner)
        if req.include_workers:
            for w in self.pool.all_workers():
                ws = reply.workers.add(worker_id=w.worker_id, pid=w.pid,
                                       worker_type="driver" if w.is_driver else "worker",
                                       is_idle=w.state == "IDLE", job_id=w.job_id, actor_id=w.actor_id)
                if w.address is not None:
                    ws.address.CopyFrom(w.address)
                if w.lease is not None:
                    ws.lease_id = w.lease.lease_id
                    ws.blocked = w.lease.blocked
                    ws.resources.update(to_float(w.lease.allocation.amounts))
        return reply

    def handle_KillWorker(self, conn: Connection, req: raylet_pb2.KillWorkerRequest, rid: int) -> common_pb2.Empty:
        assert self.pool is not None
        worker = self.pool.by_id.get(req.worker_id)
        if worker is not None:
            if req.force:
                self.pool.kill(worker, req.reason or "killed")
            elif worker.conn is not None:
                worker.killed_reason = "exit requested"
                worker.conn.call(_CW_EXIT, core_worker_pb2.ExitRequest(force=False))
                self.loop.call_later(self.config.kill_worker_timeout_ms / 1000,
                                     self.pool.kill, worker, req.reason or "killed")
        return common_pb2.Empty()

    def handle_ShutdownRaylet(self, conn: Connection, req: raylet_pb2.ShutdownRayletRequest,
                              rid: int) -> common_pb2.Empty:
        self.loop.post(self.shutdown, "requested by " + (conn.peer_role or "peer"))
        return common_pb2.Empty()

    def handle_HealthCheck(self, conn: Connection, req: common_pb2.Empty, rid: int) -> common_pb2.Empty:
        return common_pb2.Empty()

    def handle_FlushLogs(self, conn: Connection, req: common_pb2.Empty, rid: int) -> None:
        """Publish what the workers wrote so far; answer once the GCS has passed it on."""
        self.log_router.drain()
        mid = method("RayletService.FlushLogs").id

        def done(reply: Any, error: BaseException | None) -> None:
            if not conn.closed:
                conn.reply(rid, mid, common_pb2.Empty())

        if self.gcs is None or self.gcs.gave_up_reason:
            done(None, None)
            return None
        # The GCS handles this connection's messages in order: its answer to an
        # empty batch comes after it forwarded the batches published before.
        self.gcs.call_async("PublishLogs", gcs_pb2.LogBatch(), callback=done, timeout_s=_FLUSH_LOGS_GCS_TIMEOUT_S)
        return None

    def handle_WorkerExited(self, conn: Connection, req: raylet_pb2.WorkerExitedRequest, rid: int) -> None:
        assert self.pool is not None
        self.pool.on_process_exit(req.pid, req.status)
        return None

    # ---- placement group bundles -----------------------------------------------------------------------

    def handle_PrepareBundles(self, conn: Connection, req: raylet_pb2.PrepareBundlesRequest,
                              rid: int) -> raylet_pb2.PrepareBundlesReply:
        res = self.view.local.resources
        # A resent prepare (the GCS retries a group) holds each bundle once.
        fresh = [b for b in req.bundles if b.bundle_index not in self._bundles.get(b.placement_group_id, {})]
        need: dict[str, int] = {}
        for b in fresh:
            for name, amount in to_fixed(b.resources).items():
                need[name] = need.get(name, 0) + amount
        if not res.is_available(need):
            return raylet_pb2.PrepareBundlesReply(success=False)
        res.take(need)
        for b in fresh:
            self._bundles.setdefault(b.placement_group_id, {})[b.bundle_index] = [b, False]
        if req.commit:
            self._commit_bundles(req.bundles)
        else:
            self._schedule_report()
        return raylet_pb2.PrepareBundlesReply(success=True)

    def handle_CommitBundles(self, conn: Connection, req: raylet_pb2.BundlesRequest, rid: int) -> common_pb2.Empty:
        self._commit_bundles(req.bundles)
        return common_pb2.Empty()

    def _commit_bundles(self, bundles: Any) -> None:
        res = self.view.local.resources
        for b in bundles:
            state = self._bundles.get(b.placement_group_id, {}).get(b.bundle_index)
            if state is None or state[1]:
                continue
            state[1] = True
            res.add_capacity(to_fixed(bundle_resources(b.placement_group_id, b.bundle_index, dict(b.resources))))
        self._schedule_report()
        if self.leases is not None:
            self.leases.schedule()

    def handle_CancelBundles(self, conn: Connection, req: raylet_pb2.CancelBundlesRequest,
                             rid: int) -> common_pb2.Empty:
        bundles = self._bundles.pop(req.placement_group_id, {})
        if not bundles:
            return common_pb2.Empty()
        marker = "_group_"
        suffix = req.placement_group_id.hex()
        if self.leases is not None:
            for lease in list(self.leases.leases.values()):
                if any(marker in name and name.endswith(suffix) for name in lease.allocation.amounts):
                    self.leases.return_lease(lease.lease_id, disconnect=True,
                                             reason="its placement group was removed")
        res = self.view.local.resources
        for index, (b, committed) in bundles.items():
            if committed:
                res.remove_capacity(to_fixed(bundle_resources(req.placement_group_id, index, dict(b.resources))))
            res.give(to_fixed(b.resources))
        self._schedule_report()
        if self.leases is not None:
            self.leases.schedule()
        return common_pb2.Empty()

    # ---- worker deaths ------------------------------------------------------------------------------

    def _on_worker_dead(self, worker: Worker, reason: str, intended: bool) -> None:
        assert self.leases is not None
        if worker.is_driver:
            self.leases.on_owner_dead(worker.worker_id)
        else:
            self.leases.on_worker_dead(worker)
            self.leases.on_owner_dead(worker.worker_id)
        if worker.worker_id:
            self._free_objects_owned_by(worker.worker_id)
            if self.gcs is not None and not self._shutting_down:
                failure = gcs_pb2.WorkerFailure(pid=worker.pid, intended=intended, message=reason,
                                                is_driver=worker.is_driver)
                if worker.address is not None:
                    failure.address.CopyFrom(worker.address)
                self.gcs.send("ReportWorkerFailure", failure)

    def handle_GetWorkerFailureCause(self, conn: Connection, req: raylet_pb2.GetWorkerFailureCauseRequest,
                                     rid: int) -> raylet_pb2.GetWorkerFailureCauseReply:
        assert self.memory_monitor is not None
        return self.memory_monitor.failure_cause(req.worker_id)

    def _free_objects_owned_by(self, worker_id: bytes) -> None:
        self._owners_died(lambda owner: owner is not None and owner.worker_id == worker_id)

    def _owners_died(self, matches: Any) -> None:
        """Owners died: free their objects here, fail readers waiting on them,
        and stop the workers they leased."""
        self.store.free_owned_by(matches)
        for refs in self.object_manager.waiting_owners().values():
            for ref in refs:
                if matches(ref.owner):
                    self.puller.cancel(ref.object_id)
                    self.object_manager.fail(ref.object_id, common_pb2.ErrorInfo(
                        type=common_pb2.OWNER_DIED, message="the owner of the object died"))
        if self.leases is not None:
            for lease in list(self.leases.leases.values()):
                if not lease.is_actor and matches(lease.owner):
                    self.leases.return_lease(lease.lease_id, disconnect=True, reason="its owner died")

    def _on_worker_failure(self, msg: gcs_pb2.PubMessage) -> None:
        failure = msg.worker_failure
        wid = failure.address.worker_id
        if failure.address.node_id != self.node_id and wid:
            # an owner elsewhere died: its objects here and its leases go
            self._free_objects_owned_by(wid)
            if self.leases is not None:
                self.leases.on_owner_dead(wid)

    # ---- resource view ----------------------------------------------------------------------------

    def _schedule_report(self) -> None:
        if self._report_timer is None and self.gcs is not None:
            self._report_timer = self.loop.call_later(self.config.resource_report_period_ms / 1000,
                                                      self._report_resources)

    def _report_resources(self) -> None:
        self._report_timer = None
        if self.gcs is None or self.leases is None or self._shutting_down:
            return
        res = self.view.local.resources
        self._report_version += 1
        req = gcs_pb2.ReportResourcesRequest(
            node_id=self.node_id, object_store_used_bytes=self.store.used_bytes,
            object_store_spilled_bytes=self.store.spilled_bytes, version=self._report_version)
        req.available.update(res.available_float())
        req.total.update(res.total_float())
        req.demands.extend(self.leases.demands())
        self.gcs.send("ReportResources", req)

    def _on_resource_view(self, msg: gcs_pb2.PubMessage) -> None:
        from nbray.common.resources import to_fixed

        # Only the nodes that changed are listed (all of them in the first
        # view after subscribing); the ones that left are named.
        for node_id in msg.resource_view.removed_node_ids:
            gone = self.view.nodes.get(node_id)
            if gone is not None and node_id != self.node_id:
                gone.alive = False
        for n in msg.resource_view.nodes:
            if n.node_id == self.node_id:
                continue
            view = self.view.nodes.get(n.node_id)
            if view is None:
                view = NodeView(n.node_id, NodeResources(dict(n.total)), n.node_ip, n.raylet_port)
                self.view.nodes[n.node_id] = view
            view.resources.total = to_fixed(n.total)
            view.resources.available = to_fixed(n.available)
            view.pending = n.pending
            view.alive = True
        if self.leases is not None:
            self.leases.schedule()

    def _on_node_change(self, msg: gcs_pb2.PubMessage) -> None:
        node = msg.node
        if node.node_id == self.node_id:
            if node.state == gcs_pb2.NodeInfo.DEAD and not self._shutting_down:
                logger.error("the GCS declared this node dead; exiting")
                self.shutdown("declared dead by the GCS")
            return
        view = self.view.nodes.get(node.node_id)
        if node.state == gcs_pb2.NodeInfo.DEAD:
            if view is not None:
                view.alive = False
            self._owners_died(lambda owner: owner is not None and owner.node_id == node.node_id)
            self.same_host_sockets.pop(node.node_id, None)
        else:
            if view is None:
                self.view.nodes[node.node_id] = NodeView(node.node_id, NodeResources(dict(node.resources_total)),
                                                         node.node_ip, node.raylet_port)
            if (node.host_key and node.host_key == self.host_key and node.raylet_socket
                    and self.config.same_host_object_transfer_over_unix):
                self.same_host_sockets[node.node_id] = node.raylet_socket
        if self.leases is not None:
            self.leases.schedule()

    # ---- periodic -----------------------------------------------------------------------------------

    def _periodic(self) -> None:
        if self._shutting_down:
            return
        if self.pool is not None:
            self.pool.reap_idle()
        self.store.expire_pending()
        self._report_resources()
        self.loop.call_later(1.0, self._periodic)

    def _report_metrics(self, final: bool = False) -> None:
        """Send the increase of this node's RPC timings and lease counters (GcsClient queues it
        while the GCS is away), then come back after ``metrics_report_period_ms``."""
        if self.gcs is None or (self._shutting_down and not final):
            return
        points = self.metrics.take_points(self.leases)
        if points and not self.gcs.gave_up_reason:
            self.gcs.send("ReportMetrics", gcs_pb2.ReportMetricsRequest(points=points))
        if not final:
            self.loop.call_later(self.config.metrics_report_period_ms / 1000, self._report_metrics)

    # ---- output -------------------------------------------------------------------------------------

    def _publish_logs(self, batch: gcs_pb2.LogBatch) -> None:
        if self.gcs is not None and not self.gcs.gave_up_reason:
            self.gcs.send("PublishLogs", batch)

    def _warn_job(self, job_id: bytes, text: str) -> None:
        logger.warning("%s", text)
        batch = gcs_pb2.LogBatch()
        batch.entries.add(job_id=job_id, is_err=True, text=text + "\n", node_ip=self.node_ip,
                          task_name="nbray")
        self._publish_logs(batch)

    def _pid_of_token(self, token: int) -> int:
        return self.pool.pid_of_token(token) if self.pool is not None else 0

    # ---- shutdown ---------------------------------------------------------------------------------

    def _on_gcs_gave_up(self, reason: str) -> None:
        if not self._shutting_down:
            logger.error("exiting: %s", reason)
            self.shutdown(f"GCS unreachable: {reason}")

    def _register_again(self) -> None:
        """The GCS came back (restarted from its storage): register this node
        again with its id and resources, then report its load at once."""
        assert self.gcs is not None
        self.gcs.call_async("RegisterNode", gcs_pb2.RegisterNodeRequest(node=self.node_info()),
                            callback=self._on_registered_again)
        self._report_resources()

    def _on_registered_again(self, reply: Any, error: BaseException | None) -> None:
        if self._shutting_down:
            return
        if error is not None:
            if isinstance(error, ConnectionLostError):
                return  # the GCS went away again; the next reconnection registers again
            logger.error("the restarted GCS refused this node (%s); exiting", error)
            self.shutdown(f"refused by the restarted GCS: {error}")
        elif self.cluster_id and reply.cluster_id != self.cluster_id:
            logger.error("the GCS at %s now belongs to another cluster (its state was not kept); exiting",
                         self.gcs_address)
            self.shutdown("the GCS restarted without its state")
        else:
            logger.info("registered again with the restarted GCS")

    def _on_zygote_lost(self) -> None:
        if not self._shutting_down:
            logger.error("the worker factory exited; exiting")
            self.shutdown("worker factory exited")

    def shutdown(self, reason: str) -> None:
        """Stop workers and services; every step runs even if an earlier one fails."""
        if self._shutting_down:
            return
        self._shutting_down = True
        logger.info("raylet shutting down: %s", reason)

        def stop_zygote() -> None:
            if self.zygote_proc is not None:
                self.zygote_proc.kill()
                self.zygote_proc.wait(5)

        def unregister() -> None:
            if self.gcs is not None:
                self._report_metrics(final=True)
                self.gcs.send("UnregisterNode", gcs_pb2.UnregisterNodeRequest(node_id=self.node_id, reason=reason))
                self.gcs.conn.flush()

        steps = [
            ("memory monitor", lambda: self.memory_monitor.stop() if self.memory_monitor else None),
            ("workers", lambda: self.pool.shutdown() if self.pool is not None else None),
            ("worker factory", stop_zygote),
            ("log router", self.log_router.close),
            ("unregister", unregister),
            ("unix listener", self.unix_listener.close),
            ("tcp listener", self.tcp_listener.close),
            ("peers", self.peers.close),
            ("object store", self.store.close),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                logger.exception("shutting down the %s failed", name)
        self.loop.stop()

