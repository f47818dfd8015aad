"""The GCS process: tables and pubsub of the cluster, on one event loop.

Serves ``GcsService`` on TCP. The handlers here only translate messages;
membership lives in node_manager, actors in actor_manager, task events in
task_events, placement groups in placement_groups. The tables (all but
task events) are kept in storage (storage.py, persistence.py): changes of
one loop turn are written in one transaction at the end of the turn,
before that turn's replies and published messages leave, and a GCS that
starts on storage an earlier one wrote loads its tables from it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import time
from typing import Any

from nbray._version import __version__
from nbray.common.config import Config, start_daemon
from nbray.common.task_event_columns import ColumnsError
from nbray.exceptions import RpcError
from nbray.gcs.actor_manager import ActorManager
from nbray.gcs.kv import KVStore
from nbray.gcs.metrics import GcsOwnMetrics, MetricsTable
from nbray.gcs.node_manager import NodeManager
from nbray.gcs.persistence import TableWriter, load_tables, next_job_number
from nbray.gcs.placement_groups import PlacementGroupManager
from nbray.gcs.pubsub import Publisher
from nbray.gcs.storage import GcsStorage, GcsStorageError
from nbray.gcs.storage_open import open_storage
from nbray.gcs.task_events import ActorCreationEvents, TaskEventStore
from nbray.protocol import common_pb2, gcs_pb2
from nbray.raylet.scheduling import PolicyConfig, Scheduler
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handler_timing import HandlerTimer
from nbray.rpc.handshake import Listener, bind_listener
from nbray.rpc.pool import ConnectionPool
from nbray.runtime_env import package_refs
from nbray.runtime_env.package_refs import PackageCollector
from nbray.runtime_env.resolve import uris_in_env_vars

logger = logging.getLogger(__name__)

_Empty = common_pb2.Empty
# Exit status of a GCS whose storage stopped taking writes: it must not
# answer what it could not store, so it stops rather than go on.
EXIT_STORAGE_FAILED = 3


def random_uuid4() -> bytes:
    """A random (version 4) UUID's 16 bytes, as ``uuid.uuid4().bytes``: the
    uuid module (and the platform module it imports) would cost every GCS start."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


class _GcsPublisher(Publisher):
    """The publisher, with the GCS's own task-event store watching actor state
    changes and the storage writer keeping every published table record."""

    def __init__(self, on_actor: Any) -> None:
        super().__init__()
        self._on_actor = on_actor
        self.writer: TableWriter | None = None

    def publish(self, msg: gcs_pb2.PubMessage) -> int:
        if self.writer is not None:
            self.writer.on_published(msg)
        if msg.channel == gcs_pb2.ACTOR:
            self._on_actor(msg.actor)
        return super().publish(msg)


class GcsServer:
    def __init__(self, *, host: str, port: int, config: Config, token: bytes, session_dir: str,
                 listen_sock: Any = None, storage: GcsStorage | None = None) -> None:
        """Raises GcsStorageError (or ValueError for a malformed ``gcs_storage``)
        when the storage cannot be used; nothing is listening then."""
        self.config = config
        self.token = token
        self.session_dir = session_dir
        self.storage = storage if storage is not None else open_storage(config.gcs_storage, session_dir)
        try:
            self.cluster_id = self.storage.open_identity(token, random_uuid4(), __version__)
            loaded = load_tables(self.storage)
        except BaseException:
            self.storage.close()
            raise
        self.loop = EventLoop("gcs")
        self.dispatcher = Dispatcher()
        self.rpc_timer = HandlerTimer("gcs")
        self.rpc_timer.register_service(self.dispatcher, "GcsService", self)
        sock = listen_sock if listen_sock is not None else bind_listener(f"{host}:{port}")
        self.listener = Listener(
            self.loop, sock, token, self.dispatcher, self._on_connection, role="GCS",
            handshake_timeout_s=config.handshake_timeout_ms / 1000,
            max_frame_bytes=config.max_frame_bytes)
        self.address = self.listener.address
        self.publisher: Publisher = _GcsPublisher(self._on_actor_state)
        self.pool = ConnectionPool(self.loop, token, self.dispatcher, config, role="GCS")
        self.nodes = NodeManager(self.loop, config, self.publisher)
        scheduler = Scheduler(PolicyConfig(config.scheduler_spread_threshold, config.scheduler_top_k_fraction,
                                           config.scheduler_top_k_absolute))
        self.actors = ActorManager(self.loop, config, self.publisher, self.nodes, self.pool, scheduler)
        self.placement_groups = PlacementGroupManager(self.loop, config, self.publisher, self.nodes)
        self.kv = KVStore(self.storage)
        self.packages = PackageCollector(self.kv, self.loop.call_later,
                                         grace_s=config.runtime_env_package_grace_ms / 1000,
                                         unreferenced_s=config.runtime_env_unreferenced_package_ms / 1000)
        self.task_events = TaskEventStore(config.task_events_max_tasks_in_gcs)
        self.metrics = MetricsTable(config.metrics_max_series_in_gcs, self.storage)
        self.own_metrics = GcsOwnMetrics(self.task_events, self.rpc_timer)
        self.actor_creation_events = ActorCreationEvents(self.task_events)
        self.jobs: dict[bytes, gcs_pb2.JobInfo] = {j.job_id: j for j in loaded.jobs}
        # Jobs stored running whose driver has not reconnected since this GCS started.
        self._jobs_awaiting = {j.job_id for j in loaded.jobs if not j.is_dead}
        self._next_job = next_job_number(loaded.jobs)
        self._task_changes: list[gcs_pb2.TaskStateChange] = []
        self._task_flush_timer: Any = None
        self.nodes.restore(loaded.nodes)
        for info, spec, detached in loaded.actors:
            self.actors.restore(info, spec, detached)
        self.placement_groups.restore(loaded.placement_groups)
        if any(loaded.counts().values()) or len(self.kv):
            logger.info("loaded from %s: %s, %d KV entries", self.storage.location,
                        loaded.counts(), len(self.kv))
        writer = TableWriter(self.storage, self._actor_spec)
        self.placement_groups.on_forgotten.append(writer.forget_placement_group)
        assert isinstance(self.publisher, _GcsPublisher)
        self.publisher.writer = writer
        self.loop.add_end_of_iteration_hook_always(self._flush_storage)

    def _actor_spec(self, actor_id: bytes) -> tuple[common_pb2.TaskSpec, bool] | None:
        entry = self.actors.get(actor_id)
        return (entry.spec, entry.detached) if entry is not None else None

    def _flush_storage(self) -> None:
        # Runs after each turn's callbacks and before the corked sends of
        # that turn, so no reply leaves before what it reports is stored.
        if not self.storage.has_pending():
            return
        try:
            self.storage.flush()
        except GcsStorageError:
            logger.critical("the GCS storage failed; stopping the GCS before it answers what it could not "
                            "store", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_STORAGE_FAILED)

    def start(self) -> None:
        self.listener.start()
        self.loop.call_later(self.config.metrics_report_period_ms / 1000, self._store_metrics)
        self.nodes.start()
        if self.nodes.awaiting or self._jobs_awaiting:
            # Raylets and drivers of the cluster reconnect on their own; what
            # has not come back by then is handled as dead.
            self.loop.call_later(self.config.gcs_reregister_grace_ms / 1000, self._end_reregistration_grace)

    def run(self) -> None:
        try:
            self.loop.run_forever()
        finally:
            try:
                self.storage.flush()
            except GcsStorageError:
                logger.exception("the last changes could not be stored at shutdown")
            self.storage.close()

    def _on_connection(self, conn: Connection) -> None:
        pass

    # ---- nodes -------------------------------------------------------------------------------------

    def handle_RegisterNode(self, conn: Connection, req: gcs_pb2.RegisterNodeRequest, rid: int) -> Any:
        self.nodes.register(conn, req.node)
        return gcs_pb2.RegisterNodeReply(cluster_id=self.cluster_id)

    def handle_UnregisterNode(self, conn: Connection, req: gcs_pb2.UnregisterNodeRequest, rid: int) -> Any:
        self.nodes.unregister(req.node_id, req.reason)
        return _Empty()

    def handle_GetAllNodeInfo(self, conn: Connection, req: Any, rid: int) -> Any:
        return gcs_pb2.GetAllNodeInfoReply(nodes=[e.info for e in self.nodes.nodes.values()])

    def handle_ReportResources(self, conn: Connection, req: gcs_pb2.ReportResourcesRequest, rid: int) -> Any:
        self.nodes.report(req)
        return _Empty()

    def handle_GetClusterStatus(self, conn: Connection, req: Any, rid: int) -> Any:
        reply = gcs_pb2.GetClusterStatusReply(pending_actors=self.actors.pending_count())
        reply.nodes.extend(self.nodes.resource_view().nodes)
        shapes: dict[tuple, gcs_pb2.ResourceDemand] = {}
        for e in self.nodes.alive():
            for d in e.demands:
                key = (tuple(sorted(d.shape.items())), d.infeasible)
                agg = shapes.get(key)
                if agg is None:
                    agg = shapes[key] = gcs_pb2.ResourceDemand(shape=d.shape, infeasible=d.infeasible)
                agg.count += d.count
        reply.demands.extend(shapes.values())
        reply.pending_placement_groups.extend(self.placement_groups.pending())
        reply.dead_nodes.extend(e.info for e in self.nodes.nodes.values() if not e.alive)
        return reply

    # ---- jobs ----------------------------------------------------------------------------------------

    def handle_AddJob(self, conn: Connection, req: gcs_pb2.AddJobRequest, rid: int) -> Any:
        if req.job.job_id:
            return self._reattach_job(conn, req.job)
        job = gcs_pb2.JobInfo()
        job.CopyFrom(req.job)
        job.job_id = self._next_job.to_bytes(4, "big")
        self._next_job += 1
        if not job.namespace:
            h = random_uuid4().hex()  # Ray's default namespace: a random UUID's text
            job.namespace = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        job.start_time_ms = int(time.time() * 1000)
        self.jobs[job.job_id] = job
        conn.add_close_callback(functools.partial(self._on_driver_closed, job.job_id))
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.JOB, key=job.job_id, job=job))
        return gcs_pb2.AddJobReply(job_id=job.job_id, namespace=job.namespace)

    def _reattach_job(self, conn: Connection, info: gcs_pb2.JobInfo) -> Any:
        """A driver that was running when the GCS restarted says its job still
        runs: the job now ends when this connection closes."""
        job = self.jobs.get(info.job_id)
        if job is None:
            raise RpcError("not_found", f"no job with id {info.job_id.hex()}")
        if job.is_dead:
            raise RpcError("job_finished", f"job {info.job_id.hex()} already finished (its driver did not "
                                           "reconnect in time after the GCS restarted)")
        self._jobs_awaiting.discard(job.job_id)
        conn.add_close_callback(functools.partial(self._on_driver_closed, job.job_id))
        return gcs_pb2.AddJobReply(job_id=job.job_id, namespace=job.namespace)

    def _end_reregistration_grace(self) -> None:
        lost_nodes = self.nodes.end_reregistration_grace()
        lost_jobs, self._jobs_awaiting = sorted(self._jobs_awaiting), set()
        for job_id in lost_jobs:
            logger.warning("job %s finished: its driver did not reconnect after the GCS restarted", job_id.hex())
            self._finish_job(job_id)
        if lost_nodes or lost_jobs:
            logger.warning("after the restart, %d nodes and %d drivers did not come back", len(lost_nodes),
                           len(lost_jobs))

    def handle_MarkJobFinished(self, conn: Connection, req: gcs_pb2.MarkJobFinishedRequest, rid: int) -> Any:
        self._finish_job(req.job_id)
        return _Empty()

    def _on_driver_closed(self, job_id: bytes, conn: Connection) -> None:
        self._finish_job(job_id)

    def _finish_job(self, job_id: bytes) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.is_dead:
            return
        job.is_dead = True
        job.end_time_ms = int(time.time() * 1000)
        self.actors.on_job_finished(job_id)
        self.placement_groups.on_job_finished(job_id)
        self.packages.release(package_refs.job_holder(job_id))
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.JOB, key=job_id, job=job))

    def handle_GetAllJobInfo(self, conn: Connection, req: Any, rid: int) -> Any:
        return gcs_pb2.GetAllJobInfoReply(jobs=list(self.jobs.values()))

    # ---- actors ----------------------------------------------------------------------------------------

    def handle_RegisterActor(self, conn: Connection, req: gcs_pb2.RegisterActorRequest, rid: int) -> Any:
        reply = self.actors.register(req)
        if req.detached and not reply.existed:  # it outlives its job: it holds its packages itself
            self.packages.hold(package_refs.actor_holder(reply.actor.actor_id),
                               uris_in_env_vars(req.creation_spec.runtime_env.env_vars))
        return reply

    def handle_GetActorInfo(self, conn: Connection, req: gcs_pb2.GetActorInfoRequest, rid: int) -> Any:
        entry = self.actors.get(req.actor_id)
        if entry is None:
            raise RpcError("not_found", f"no actor with id {req.actor_id.hex()}")
        return gcs_pb2.GetActorInfoReply(actor=entry.info)

    def handle_GetNamedActor(self, conn: Connection, req: gcs_pb2.GetNamedActorRequest, rid: int) -> Any:
        entry = self.actors.get_named(req.name, req.namespace)
        if entry is None:
            raise RpcError("not_found", f"Failed to look up actor with name '{req.name}' in namespace "
                                        f"'{req.namespace}'")
        return gcs_pb2.GetActorInfoReply(actor=entry.info)

    def handle_ListNamedActors(self, conn: Connection, req: gcs_pb2.ListNamedActorsRequest, rid: int) -> Any:
        pairs = self.actors.list_named(req.all_namespaces, req.namespace)
        return gcs_pb2.ListNamedActorsReply(namespaces=[p[0] for p in pairs], names=[p[1] for p in pairs])

    def handle_KillActor(self, conn: Connection, req: gcs_pb2.KillActorRequest, rid: int) -> Any:
        self.actors.kill(req.actor_id, req.force_kill, req.no_restart, req.reason)
        return _Empty()

    def handle_ReportActorOutOfScope(self, conn: Connection, req: gcs_pb2.GetActorInfoRequest, rid: int) -> Any:
        self.actors.out_of_scope(req.actor_id)
        return _Empty()

    def handle_GetAllActorInfo(self, conn: Connection, req: gcs_pb2.GetAllActorInfoRequest, rid: int) -> Any:
        reply = gcs_pb2.GetAllActorInfoReply()
        limit = req.limit or self.config.state_api_max_limit
        matched = [e.info for e in self.actors.actors.values() if not req.job_id or e.info.job_id == req.job_id]
        reply.actors.extend(matched[:limit])
        reply.num_truncated = max(0, len(matched) - limit)
        return reply

    # ---- workers ------------------------------------------------------------------------------------------

    def handle_ReportWorkerFailure(self, conn: Connection, req: gcs_pb2.WorkerFailure, rid: int) -> Any:
        self.actors.on_worker_dead(req)
        self.placement_groups.on_worker_dead(req)
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.WORKER_FAILURE, worker_failure=req))
        return _Empty()

    # ---- kv ------------------------------------------------------------------------------------------------

    def handle_KVGet(self, conn: Connection, req: gcs_pb2.KVGetRequest, rid: int) -> Any:
        value = self.kv.get(req.ns, req.key)
        return gcs_pb2.KVGetReply(found=value is not None, value=value or b"")

    def handle_KVPut(self, conn: Connection, req: gcs_pb2.KVPutRequest, rid: int) -> Any:
        added = self.kv.put(req.ns, req.key, req.value, req.overwrite, req.request_id)
        self.packages.on_kv_put(req.ns, req.key)
        return gcs_pb2.KVPutReply(added=added)

    def handle_KVDel(self, conn: Connection, req: gcs_pb2.KVDelRequest, rid: int) -> Any:
        return gcs_pb2.KVDelReply(deleted=self.kv.delete(req.ns, req.key, req.by_prefix, req.request_id))

    def handle_KVKeys(self, conn: Connection, req: gcs_pb2.KVKeysRequest, rid: int) -> Any:
        return gcs_pb2.KVKeysReply(keys=self.kv.keys(req.ns, req.prefix))

    # ---- task events ------------------------------------------------------------------------------------------

    def handle_AddTaskEvents(self, conn: Connection, req: gcs_pb2.AddTaskEventsRequest, rid: int) -> Any:
        listened = self.publisher.has_subscribers(gcs_pb2.TASK)
        try:
            changes = self.task_events.add_request(req, report_changes=listened)
        except ColumnsError as exc:
            raise RpcError("invalid_argument", str(exc)) from None
        self._publish_task_changes(changes)
        return _Empty()

    def _on_actor_state(self, info: gcs_pb2.ActorInfo) -> None:
        if info.state == gcs_pb2.ActorInfo.DEAD and info.is_detached:
            self.packages.release(package_refs.actor_holder(info.actor_id))
        entry = self.actors.get(info.actor_id)
        if entry is None or entry.spec.disable_task_events:
            return
        listened = self.publisher.has_subscribers(gcs_pb2.TASK)
        self._publish_task_changes(self.actor_creation_events.on_actor(entry.spec.task_id, info,
                                                                       report_changes=listened))

    def _publish_task_changes(self, changes: list[gcs_pb2.TaskStateChange]) -> None:
        if changes and self.publisher.has_subscribers(gcs_pb2.TASK):
            self._task_changes.extend(changes)
            if self._task_flush_timer is None:
                self._task_flush_timer = self.loop.call_later(0.05, self._flush_task_changes)

    def _flush_task_changes(self) -> None:
        self._task_flush_timer = None
        changes, self._task_changes = self._task_changes, []
        if changes:
            msg = gcs_pb2.PubMessage(channel=gcs_pb2.TASK)
            msg.task_changes.changes.extend(changes)
            self.publisher.publish(msg)

    def handle_GetTaskEvents(self, conn: Connection, req: gcs_pb2.GetTaskEventsRequest, rid: int) -> Any:
        limit = min(req.limit or self.config.state_api_max_limit, self.config.state_api_max_limit)
        try:
            return self.task_events.query(
                req.filters, max(1, limit), req.since_ns, newest_first=req.newest_first, cursor=req.cursor,
                changed_after=req.changed_after if req.HasField("changed_after") else None)
        except ValueError as exc:
            raise RpcError("invalid_argument", str(exc)) from None

    # ---- metrics -------------------------------------------------------------------------------------------------

    def handle_ReportMetrics(self, conn: Connection, req: gcs_pb2.ReportMetricsRequest, rid: int) -> Any:
        self.metrics.report(req.points)
        return _Empty()

    def handle_GetMetrics(self, conn: Connection, req: Any, rid: int) -> Any:
        # Stored before the reply leaves (end of this loop turn): a total once
        # shown is never lower after a restart (nbray/gcs/metrics.py).
        self.metrics.report(self.own_metrics.take_points())
        self.metrics.persist()
        reply = gcs_pb2.GetMetricsReply(num_dropped_points=self.metrics.num_dropped)
        reply.points.extend(self.metrics.points())
        return reply

    def _store_metrics(self) -> None:
        self.metrics.report(self.own_metrics.take_points())
        self.metrics.persist()
        self.loop.call_later(self.config.metrics_report_period_ms / 1000, self._store_metrics)

    # ---- pubsub --------------------------------------------------------------------------------------------------

    def handle_Subscribe(self, conn: Connection, req: gcs_pb2.SubscribeRequest, rid: int) -> Any:
        if req.unsubscribe:
            self.publisher.unsubscribe(conn, req.channel, req.key)
        else:
            self.publisher.subscribe(conn, req.channel, req.key)
        return _Empty()

    def handle_PublishLogs(self, conn: Connection, req: gcs_pb2.LogBatch, rid: int) -> Any:
        by_job: dict[bytes, gcs_pb2.LogBatch] = {}
        for entry in req.entries:
            batch = by_job.get(entry.job_id)
            if batch is None:
                batch = by_job[entry.job_id] = gcs_pb2.LogBatch()
            batch.entries.append(entry)
        for job_id, batch in by_job.items():
            self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.LOGS, key=job_id, logs=batch))
        return _Empty()

    # ---- placement groups ---------------------------------------------------------------------------------------

    def handle_CreatePlacementGroup(self, conn: Connection, req: gcs_pb2.CreatePlacementGroupRequest, rid: int) -> Any:
        return self.placement_groups.create(req.placement_group)

    def handle_RemovePlacementGroup(self, conn: Connection, req: gcs_pb2.PlacementGroupIdRequest, rid: int) -> Any:
        self.placement_groups.remove(req.placement_group_id)
        return _Empty()

    def handle_GetPlacementGroup(self, conn: Connection, req: gcs_pb2.PlacementGroupIdRequest, rid: int) -> Any:
        pg = self.placement_groups.get(req.placement_group_id)
        if pg is None:
            return gcs_pb2.GetPlacementGroupReply(found=False)
        return gcs_pb2.GetPlacementGroupReply(placement_group=pg, found=True)

    def handle_GetNamedPlacementGroup(self, conn: Connection, req: gcs_pb2.GetNamedPlacementGroupRequest, rid: int) -> Any:
        pg = self.placement_groups.get_named(req.name, req.namespace)
        if pg is None:
            return gcs_pb2.GetPlacementGroupReply(found=False)
        return gcs_pb2.GetPlacementGroupReply(placement_group=pg, found=True)

    def handle_GetAllPlacementGroup(self, conn: Connection, req: Any, rid: int) -> Any:
        return gcs_pb2.GetAllPlacementGroupReply(placement_groups=self.placement_groups.all())

    def handle_WaitPlacementGroupReady(self, conn: Connection, req: gcs_pb2.WaitPlacementGroupReadyRequest, rid: int) -> Any:
        self.placement_groups.wait_ready(conn, rid, req)
        return None

    # ---- shutdown ------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.listener.close()
        self.pool.close()
        self.loop.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="nbray-gcs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--listen-fd", type=int, default=-1, help="an already bound listening socket")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-json", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    config, token = start_daemon("gcs", args.config_json)
    sock = None
    if args.listen_fd >= 0:
        import socket

        sock = socket.socket(fileno=args.listen_fd)
    try:
        server = GcsServer(host=args.host, port=args.port, config=config, token=token,
                           session_dir=args.session_dir, listen_sock=sock)
    except (GcsStorageError, ValueError) as exc:
        logger.error("%s", exc)
        if args.ready_fd >= 0:
            os.write(args.ready_fd, (json.dumps({"error": str(exc)}) + "\n").encode())
            os.close(args.ready_fd)
        raise SystemExit(1) from None
    signal.signal(signal.SIGTERM, lambda *_: server.loop.post(server.shutdown))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.parent_pid:
        try:
            fd = os.pidfd_open(args.parent_pid)

            def parent_exited(mask: int) -> None:
                server.loop.remove(fd)  # stays readable: watch it once
                os.close(fd)
                server.shutdown()

            server.loop.add_reader(fd, parent_exited)
        except OSError:
            return
    server.start()
    if args.ready_fd >= 0:
        os.write(args.ready_fd, (json.dumps({"address": server.address, "pid": os.getpid()}) + "\n").encode())
        os.close(args.ready_fd)
    server.run()


if __name__ == "__main__":
    main()
