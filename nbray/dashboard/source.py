"""Where the dashboard's data comes from: the GCS and the raylets (dashboard process).

Two threads: nbray's ``EventLoop`` thread owns the connections (GCS
channels, raylets, core workers), the asyncio loop of the HTTP server owns
the model and the event stream. Replies and published messages cross over
with ``call_soon_threadsafe``; protobuf rows are turned into dicts on the
I/O thread so a burst of 10,000 tasks does not stall HTTP requests.

Tasks: on connecting, the newest rows (up to the table's bound) are read
page by page, newest first. The TASK channel then says which tasks changed:
a new state, or a report that only added facts (node, worker, error); the
complete rows are fetched with ``GetTaskEvents(changed_after=<cursor>)``,
the GCS's change number, so nothing is missed and nothing fetched twice,
one fetch at a time with the notifications in between merged.

If the GCS connection drops, the source keeps trying to reconnect for
``dashboard_gcs_reconnect_timeout_ms``, then gives up (the server exits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.dashboard.events import EventHub
from nbray.dashboard.nodes import NodeTable, actor_row, job_row
from nbray.dashboard.summary import sum_resources
from nbray.dashboard.tasks import TaskTable, detail_from_proto, row_from_proto
from nbray.exceptions import RpcError
from nbray.gcs.client import GcsClient
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.pool import ConnectionPool

logger = logging.getLogger(__name__)

_GET_NODE_STATS = method("RayletService.GetNodeStats")
_GET_CW_STATS = method("CoreWorkerService.GetCoreWorkerStats")
_CANCEL_TASK = method("CoreWorkerService.CancelTask")
_CHANNELS = (gcs_pb2.NODE, gcs_pb2.RESOURCE_VIEW, gcs_pb2.ACTOR, gcs_pb2.JOB, gcs_pb2.TASK)


class GcsUnavailable(ConnectionError):
    """The GCS cannot be reached right now."""


class ClusterModel:
    """Everything the dashboard knows; changed only on the asyncio loop."""

    def __init__(self, config: Config) -> None:
        self.tasks = TaskTable(config.dashboard_max_tasks)
        self.nodes = NodeTable()
        self.actors: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.gcs_connected = False
        self.started_ms = int(time.time() * 1000)

    def node_rows(self) -> list[dict[str, Any]]:
        return self.nodes.rows(self.tasks, self.actors)

    def summary(self) -> dict[str, Any]:
        nodes = self.node_rows()
        alive = [n for n in nodes if n["state"] == "ALIVE"]
        total, available = sum_resources(alive)
        actor_states: dict[str, int] = {}
        for a in self.actors.values():
            actor_states[a["state"]] = actor_states.get(a["state"], 0) + 1
        return {
            "gcs_connected": self.gcs_connected,
            "nodes": {"alive": len(alive), "dead": len(nodes) - len(alive)},
            "resources_total": total,
            "resources_available": available,
            "object_store": {
                "capacity_bytes": sum(n["object_store"]["capacity_bytes"] for n in alive),
                "used_bytes": sum(n["object_store"]["used_bytes"] for n in alive),
                "spilled_bytes": sum(n["object_store"]["spilled_bytes"] for n in alive),
            },
            "tasks": {"total": len(self.tasks), "by_state": self.tasks.state_counts(),
                      "evicted": self.tasks.num_evicted},
            "actors": {"total": len(self.actors), "by_state": actor_states},
            "jobs": sorted(self.jobs.values(), key=lambda j: j["start_time_ms"]),
            "context_tags": self.tasks.distinct("context_tag"),
        }


class _Connections:
    """One generation of connections; replaced as a whole after the GCS comes back."""

    def __init__(self, address: str, token: bytes, config: Config, on_publish: Callable[[Any], None]) -> None:
        self.loop = EventLoop("nbray-dashboard-io")
        self.loop.start_thread()
        dispatcher = Dispatcher()
        try:
            self.gcs = GcsClient(self.loop, address, token, dispatcher, config, role="dashboard",
                                 retry_s=config.connect_timeout_ms / 1000)
        except BaseException:
            self.loop.post(self.loop.stop)
            raise
        self.pool = ConnectionPool(self.loop, token, dispatcher, config, role="dashboard")
        try:
            for channel in _CHANNELS:
                self.gcs.subscribe(channel, b"", on_publish, wait=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.pool.close()
        self.gcs.close()
        self.loop.post(self.loop.stop)


class ClusterSource:
    def __init__(self, gcs_address: str, token: bytes, config: Config, model: ClusterModel, hub: EventHub) -> None:
        self.gcs_address = gcs_address
        self._token = token
        self.config = config
        self.model = model
        self.hub = hub
        self._aio: asyncio.AbstractEventLoop | None = None
        self._conns: _Connections | None = None
        # GCS change number the task table is complete up to (None: not known yet)
        self._change_cursor: int | None = None
        self._changes_pending = False
        self._fetching = False
        self._stats_task: asyncio.Task[None] | None = None
        self._stats_fresh_ms = 0.0
        self._objects_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._reconnecting = False
        self._closed = False
        self.on_gone: Callable[[], None] | None = None

    # ---- connecting ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._aio = asyncio.get_running_loop()
        await self._connect()
        self.hub.on_first_subscriber = self._ensure_stats_polling

    async def _connect(self) -> None:
        assert self._aio is not None
        aio = self._aio

        def on_publish(msg: Any) -> None:
            _post(aio, self._on_publish, msg)

        conns = await aio.run_in_executor(None, _Connections, self.gcs_address, self._token, self.config, on_publish)
        if self._closed:
            conns.close()
            return
        self._conns = conns

        def on_close(conn: Connection) -> None:
            _post(aio, self._on_gcs_lost, conns)

        conns.gcs.conn.add_close_callback(on_close)
        self._change_cursor = None  # change numbers are the GCS's: start over with it
        snapshot = await asyncio.gather(
            self.gcs_call("GetAllNodeInfo"), self.gcs_call("GetClusterStatus"),
            self.gcs_call("GetAllActorInfo", gcs_pb2.GetAllActorInfoRequest()),
            self.gcs_call("GetAllJobInfo"), self._read_tasks())
        nodes, status, actors, jobs, (task_rows, change_cursor) = snapshot
        for n in nodes.nodes:
            self.model.nodes.set_info(n)
        self.model.nodes.set_resources(gcs_pb2.ResourceView(nodes=status.nodes))
        for a in actors.actors:
            row = actor_row(a)
            self.model.actors[row["actor_id"]] = row
        for j in jobs.jobs:
            row = job_row(j)
            self.model.jobs[row["job_id"]] = row
        self.model.tasks.upsert(task_rows)
        self._change_cursor = change_cursor
        self.model.gcs_connected = True
        if self._changes_pending:
            self._want_task_changes()
        await self.refresh_node_stats()

    def _on_gcs_lost(self, conns: _Connections) -> None:
        if conns is not self._conns or self._closed:
            return
        logger.warning("lost the connection to the GCS at %s", self.gcs_address)
        self.model.gcs_connected = False
        self._conns = None
        conns.close()
        self.hub.publish("status", {"gcs_connected": False})
        if not self._reconnecting:
            self._reconnecting = True
            asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        deadline = time.monotonic() + self.config.dashboard_gcs_reconnect_timeout_ms / 1000
        try:
            while not self._closed and time.monotonic() < deadline:
                await asyncio.sleep(self.config.dashboard_gcs_reconnect_period_ms / 1000)
                try:
                    await self._connect()
                except (OSError, ConnectionError, TimeoutError, RpcError) as exc:
                    logger.info("the GCS is still unreachable: %s", exc)
                    continue
                logger.info("reconnected to the GCS at %s", self.gcs_address)
                self.hub.publish("status", {"gcs_connected": True})
                self.hub.publish("resync", {"reason": "reconnected to the GCS"})
                return
            if not self._closed:
                logger.error("the GCS at %s stayed unreachable; exiting", self.gcs_address)
                if self.on_gone is not None:
                    self.on_gone()
        finally:
            self._reconnecting = False

    def close(self) -> None:
        self._closed = True
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self._conns is not None:
            self._conns.close()
            self._conns = None

    # ---- calls ----------------------------------------------------------------------------------------------

    def _bridge(self, convert: Callable[[Any], Any] | None) -> tuple[asyncio.Future[Any], Callable[[Any, Any], None]]:
        assert self._aio is not None
        aio = self._aio
        fut: asyncio.Future[Any] = aio.create_future()

        def settle(reply: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(reply)

        def callback(reply: Any, error: BaseException | None) -> None:
            # Runs on the I/O thread: convert there, then hand over.
            if error is None and convert is not None:
                try:
                    reply = convert(reply)
                except Exception as exc:  # a conversion bug must reach the caller
                    reply, error = None, exc
            _post(aio, settle, reply, error)

        return fut, callback

    async def gcs_call(self, name: str, request: Any = None, convert: Callable[[Any], Any] | None = None,
                       timeout_s: float | None = None) -> Any:
        conns = self._conns
        if conns is None:
            raise GcsUnavailable(f"the GCS at {self.gcs_address} is not reachable")
        fut, callback = self._bridge(convert)
        timeout = timeout_s if timeout_s is not None else self.config.dashboard_gcs_rpc_timeout_ms / 1000
        conns.gcs.call_async(name, request, callback=callback, timeout_s=timeout)
        return await fut

    async def peer_call(self, address: str, m: Any, request: Any, convert: Callable[[Any], Any] | None = None) -> Any:
        conns = self._conns
        if conns is None:
            raise GcsUnavailable(f"the GCS at {self.gcs_address} is not reachable")
        fut, callback = self._bridge(convert)
        timeout = self.config.dashboard_peer_rpc_timeout_ms / 1000

        def on_conn(conn: Connection | None, error: BaseException | None) -> None:
            if conn is None:
                callback(None, error or ConnectionError(f"cannot connect to {address}"))
            else:
                conn.call(m, request, callback=callback, timeout_s=timeout)

        conns.loop.post(conns.pool.get, address, on_conn)
        return await asyncio.wait_for(fut, timeout + self.config.connect_timeout_ms / 1000)

    # ---- published messages -----------------------------------------------------------------------------------

    def _on_publish(self, msg: gcs_pb2.PubMessage) -> None:
        if self._closed:
            return
        channel = msg.channel
        if channel == gcs_pb2.TASK:
            changed, _ = self.model.tasks.apply_changes(msg.task_changes.changes)
            self.hub.task_changed(changed)
            self._want_task_changes()
        elif channel == gcs_pb2.RESOURCE_VIEW:
            self.model.nodes.set_resources(msg.resource_view)
            self._publish_node_changes()
        elif channel == gcs_pb2.NODE:
            self.model.nodes.set_info(msg.node)
            self._publish_node_changes()
        elif channel == gcs_pb2.ACTOR:
            row = actor_row(msg.actor)
            self.model.actors[row["actor_id"]] = row
            self.hub.publish("actors", {"actors": [row]})
        elif channel == gcs_pb2.JOB:
            row = job_row(msg.job)
            self.model.jobs[row["job_id"]] = row
            self.hub.publish("jobs", {"jobs": [row]})

    def _publish_node_changes(self) -> None:
        changed = self.model.nodes.changed_rows(self.model.tasks, self.model.actors)
        if changed:
            self.hub.publish("nodes", {"nodes": changed})

    # ---- task rows --------------------------------------------------------------------------------------------

    async def _read_tasks(self) -> tuple[list[dict[str, Any]], int]:
        """The newest rows, up to the table's bound, oldest first, and the change cursor after them."""
        rows: list[dict[str, Any]] = []
        cursor = 0
        change_cursor = -1
        while len(rows) < self.config.dashboard_max_tasks:
            page, next_cursor, last_change = await self.gcs_call("GetTaskEvents", gcs_pb2.GetTaskEventsRequest(
                newest_first=True, cursor=cursor, limit=self.config.dashboard_max_tasks - len(rows)), convert=_task_page)
            if change_cursor < 0:
                # Rows changed after the first page was read are then fetched as changes.
                change_cursor = last_change
            rows.extend(page)
            cursor = next_cursor
            if not cursor:
                break
        rows.reverse()
        return rows, max(0, change_cursor)

    def _want_task_changes(self) -> None:
        self._changes_pending = True
        if not self._fetching and self._change_cursor is not None:
            self._fetching = True
            asyncio.ensure_future(self._fetch_task_changes())

    async def _fetch_task_changes(self) -> None:
        conns = self._conns
        reconnected = False
        try:
            while self._changes_pending and not self._closed and self._change_cursor is not None:
                self._changes_pending = False
                try:
                    rows, truncated, last_change = await self.gcs_call(
                        "GetTaskEvents", gcs_pb2.GetTaskEventsRequest(changed_after=self._change_cursor),
                        convert=_task_changes)
                except (ConnectionError, TimeoutError, RpcError) as exc:
                    logger.info("fetching task rows failed: %s", exc)
                    self._changes_pending = True  # retried on the next notification
                    return
                if self._conns is not conns:
                    # Reconnected meanwhile: this reply counts changes of the old GCS.
                    reconnected = self._changes_pending = True
                    return
                self._change_cursor = last_change
                if truncated:
                    self._changes_pending = True
                changed = self.model.tasks.upsert(rows)
                self.hub.task_changed(changed)
        finally:
            self._fetching = False
            if reconnected:
                self._want_task_changes()  # from the new snapshot's cursor, if it has one yet

    async def task_detail(self, task_id: str) -> dict[str, Any] | None:
        reply = await self.gcs_call("GetTaskEvents", gcs_pb2.GetTaskEventsRequest(
            filters=[gcs_pb2.StateFilter(key="task_id", op="=", value=task_id)]))
        if not reply.tasks:
            return None
        latest = max(reply.tasks, key=lambda t: t.attempt_number)
        row = detail_from_proto(latest)
        row["attempts"] = len(reply.tasks)
        return row

    # ---- node stats ---------------------------------------------------------------------------------------------

    def _ensure_stats_polling(self) -> None:
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.ensure_future(self._poll_stats())

    async def _poll_stats(self) -> None:
        period = self.config.dashboard_node_stats_period_ms / 1000
        while not self._closed and self.hub.num_subscribers() > 0:
            if self._conns is not None:
                await self.refresh_node_stats()
            await asyncio.sleep(period)

    async def refresh_node_stats(self, max_age_ms: float = 0) -> None:
        now_ms = time.monotonic() * 1000
        if max_age_ms and now_ms - self._stats_fresh_ms < max_age_ms:
            return
        self._stats_fresh_ms = now_ms
        alive = self.model.nodes.alive()
        request = raylet_pb2.GetNodeStatsRequest(include_workers=True)
        results = await asyncio.gather(
            *(self.peer_call(f"{n.node_ip}:{n.raylet_port}", _GET_NODE_STATS, request) for n in alive),
            return_exceptions=True)
        for n, stats in zip(alive, results):
            if isinstance(stats, raylet_pb2.GetNodeStatsReply):
                self.model.nodes.set_stats(n.node_id.hex(), stats)
        self._publish_node_changes()

    # ---- objects ------------------------------------------------------------------------------------------------

    async def list_objects(self) -> list[dict[str, Any]]:
        """One row per object: size, where it is stored, its owner and how it is referenced."""
        now = time.monotonic()
        cached = self._objects_cache
        if cached is not None and now - cached[0] < self.config.dashboard_objects_cache_ms / 1000:
            return cached[1]
        alive = self.model.nodes.alive()
        request = raylet_pb2.GetNodeStatsRequest(include_objects=True, include_workers=True)
        stats = await asyncio.gather(
            *(self.peer_call(f"{n.node_ip}:{n.raylet_port}", _GET_NODE_STATS, request) for n in alive),
            return_exceptions=True)
        objects: dict[str, dict[str, Any]] = {}
        workers = []
        for node, s in zip(alive, stats):
            if not isinstance(s, raylet_pb2.GetNodeStatsReply):
                continue
            node_id = node.node_id.hex()
            for o in s.objects:
                row = objects.setdefault(o.object_id.hex(), _object_row(o.object_id.hex()))
                row["size_bytes"] = max(row["size_bytes"], o.data_size)
                row["locations"].append({"node_id": node_id, "where": o.where, "primary": o.is_primary})
                if o.owner.port and row["owner"] is None:
                    row["owner"] = {"address": f"{o.owner.host}:{o.owner.port}",
                                    "worker_id": o.owner.worker_id.hex(), "node_id": o.owner.node_id.hex()}
            for w in s.workers:
                if w.address.port:
                    workers.append((node_id, w))
        refs = await asyncio.gather(
            *(self.peer_call(f"{w.address.host}:{w.address.port}", _GET_CW_STATS, common_pb2.Empty())
              for _, w in workers), return_exceptions=True)
        for (node_id, w), reply in zip(workers, refs):
            if not isinstance(reply, core_worker_pb2.GetCoreWorkerStatsReply):
                continue
            for r in reply.refs:
                row = objects.setdefault(r.object_id.hex(), _object_row(r.object_id.hex()))
                row["size_bytes"] = max(row["size_bytes"], r.size)
                row["in_plasma"] = row["in_plasma"] or r.in_plasma
                if r.owned:
                    row["owner"] = {"address": f"{w.address.host}:{w.address.port}",
                                    "worker_id": w.worker_id.hex(), "node_id": node_id, "pid": w.pid,
                                    "type": "DRIVER" if w.worker_type == "driver" else "WORKER"}
                    row["task_status"] = r.task_status
                    if r.call_site:
                        row["call_site"] = r.call_site
                if r.reference_type and r.reference_type not in row["reference_types"]:
                    row["reference_types"].append(r.reference_type)
                row["holders"].append({"pid": w.pid, "node_id": node_id, "reference_type": r.reference_type})
        rows = sorted(objects.values(), key=lambda r: r["size_bytes"], reverse=True)
        self._objects_cache = (time.monotonic(), rows)
        return rows

    # ---- actions ------------------------------------------------------------------------------------------------

    async def cancel_task(self, task_id: str, force: bool, recursive: bool) -> dict[str, Any]:
        row = self.model.tasks.get(task_id)
        if row is None or row["owner_address"] is None:
            row = await self.task_detail(task_id)
            if row is None:
                raise LookupError(f"no task {task_id}")
        owner = row["owner_address"]
        if row["state"] in ("FINISHED", "FAILED"):
            return {"task_id": task_id, "found": False, "state": row["state"]}
        if owner is None:
            raise LookupError(f"the owner of task {task_id} is not known yet")
        reply = await self.peer_call(owner, _CANCEL_TASK, core_worker_pb2.CancelTaskRequest(
            task_id=bytes.fromhex(task_id), force=force, recursive=recursive))
        return {"task_id": task_id, "found": reply.found, "state": row["state"]}

    async def kill_actor(self, actor_id: str) -> dict[str, Any]:
        if actor_id not in self.model.actors:
            reply = await self.gcs_call("GetActorInfo", gcs_pb2.GetActorInfoRequest(actor_id=bytes.fromhex(actor_id)))
            if not reply.actor.actor_id:
                raise LookupError(f"no actor {actor_id}")
        await self.gcs_call("KillActor", gcs_pb2.KillActorRequest(
            actor_id=bytes.fromhex(actor_id), force_kill=True, no_restart=True, reason="killed from the dashboard"))
        return {"actor_id": actor_id, "killed": True}


def _post(aio: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Hand work from the I/O thread to the asyncio loop; dropped once that loop has closed (exit)."""
    try:
        aio.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        if not aio.is_closed():
            raise


def _task_page(reply: gcs_pb2.GetTaskEventsReply) -> tuple[list[dict[str, Any]], int, int]:
    return [row_from_proto(t) for t in reply.tasks], reply.next_cursor, reply.last_change


def _task_changes(reply: gcs_pb2.GetTaskEventsReply) -> tuple[list[dict[str, Any]], bool, int]:
    return [row_from_proto(t) for t in reply.tasks], reply.num_truncated > 0, reply.last_change


def _object_row(object_id: str) -> dict[str, Any]:
    return {"object_id": object_id, "size_bytes": 0, "owner": None, "locations": [], "reference_types": [],
            "holders": [], "in_plasma": False, "task_status": None, "call_site": None}

