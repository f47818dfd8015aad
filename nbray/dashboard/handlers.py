"""HTTP routes of the dashboard API (dashboard process).

Every route is a fixed pattern of hex ids; every request first passes
``security.check_request`` (path, browser guard, token) in ``prepare``,
before routing decides anything and before the body is read. Bodies are
streamed and discarded: no route takes one, so nothing a client sends is
ever parsed beyond headers and the query string.

    GET  /api/cluster                      summary: nodes, resources, stores, task counts, jobs
    GET  /api/nodes                        nodes: resources, GPUs in use (by whom), stores
    GET  /api/tasks                        tasks in creation order; filters job_id, state, func,
                                           node_id, context_tag, actor_id; offset/limit paging;
                                           ?attempts=true adds earlier attempts of retried tasks
    GET  /api/tasks/<task_id>              one task with events, error and traceback
    POST /api/tasks/<task_id>/cancel       cancel (?force=, ?recursive=)
    GET  /api/actors                       actors
    POST /api/actors/<actor_id>/kill       kill, no restart
    GET  /api/objects                      objects, largest first (?node_id=, ?limit=)
    GET  /api/jobs                         jobs
    GET  /api/events                       Server-Sent Events: tasks, nodes, actors, jobs, status, resync
    GET  /metrics                          Prometheus text: cluster and user metrics (dashboard/metrics.py)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.iostream
import tornado.web

from nbray import __version__
from nbray.common.config import Config
from nbray.dashboard import metrics, params
from nbray.dashboard.events import EventHub, Subscriber, frame
from nbray.dashboard.security import RequestRefused, allowed_host_names, check_request
from nbray.dashboard.source import ClusterSource, GcsUnavailable
from nbray.dashboard.tasks import TaskFilter
from nbray.exceptions import RpcError

logger = logging.getLogger(__name__)

_HEX = "[0-9a-fA-F]+"


class ApiContext:
    """What every handler needs; one per server."""

    def __init__(self, token: bytes, source: ClusterSource, hub: EventHub, config: Config,
                 info: dict[str, Any], bind_host: str = "127.0.0.1") -> None:
        self.token = token
        # Host header values answered to (security.check_host).
        self.allowed_hosts = allowed_host_names(bind_host, config.dashboard_allowed_hosts)
        self.source = source
        self.hub = hub
        self.config = config  # the dashboard_* fields bound and time the handlers
        self.info = info


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    # Every method reaches prepare(), which refuses the ones not allowed (405).
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH")
    # Routes that take POST (actions) say so.
    SUPPORTED_POSTS = False

    def initialize(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._body_bytes = 0

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        try:
            check_request(self.request.method or "", self.request.path, self.request.headers, self.ctx.token,
                          self.ctx.allowed_hosts)
        except RequestRefused as exc:
            self._refuse(exc)
            return
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > self.ctx.config.dashboard_max_body_bytes:
            self._refuse(RequestRefused(413, "request bodies are not accepted"))

    def data_received(self, chunk: bytes) -> None:
        # Bodies are counted and dropped, never parsed.
        self._body_bytes += len(chunk)
        if self._body_bytes > self.ctx.config.dashboard_max_body_bytes and not self._finished:
            self._refuse(RequestRefused(413, "request bodies are not accepted"))

    def _refuse(self, exc: RequestRefused) -> None:
        self.set_status(exc.status)
        if exc.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="nbray"')
        if exc.status == 405:
            self.set_header("Allow", "GET, HEAD, OPTIONS")
        self.finish(json.dumps({"error": exc.reason}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], tornado.web.HTTPError) and exc_info[1].log_message:
            reason = exc_info[1].log_message
        self.finish(json.dumps({"error": reason}))

    def send_json(self, data: Any) -> None:
        self.finish(json.dumps(data, separators=(",", ":")))

    def query(self, spec: dict[str, params.Validator]) -> dict[str, Any] | None:
        try:
            return params.parse_query(self.request.query_arguments, spec)
        except RequestRefused as exc:
            self._refuse(exc)
            return None

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, LookupError) or (isinstance(exc, RpcError) and exc.code == "not_found"):
            self.set_status(404)
        elif isinstance(exc, GcsUnavailable):
            self.set_status(503)
        else:
            self.set_status(502)
        self.finish(json.dumps({"error": str(exc)}))

    async def act(self, action: Callable[[], Awaitable[Any]]) -> None:
        """Run an action (cancel, kill) and answer with its result or why it failed."""
        try:
            result = await action()
        except RequestRefused as exc:
            self._refuse(exc)
            return
        except (LookupError, GcsUnavailable, ConnectionError, TimeoutError, RpcError) as exc:
            self.fail(exc)
            return
        self.send_json(result)

    def options(self, *args: Any) -> None:
        # No CORS: a cross-origin page gets no Access-Control-* headers.
        self.set_status(204)
        self.set_header("Allow", "GET, HEAD, OPTIONS" + (", POST" if self.SUPPORTED_POSTS else ""))
        self.finish()

    def head(self, *args: Any) -> None:
        self.set_status(200)
        self.finish()


class NotFoundHandler(BaseHandler):
    def _not_found(self, *args: Any) -> None:
        self.set_status(404)
        self.send_json({"error": "no such route"})

    get = post = put = delete = patch = head = _not_found  # type: ignore[assignment]

    def options(self, *args: Any) -> None:
        self._not_found()


class ClusterHandler(BaseHandler):
    def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        summary = self.ctx.source.model.summary()
        summary.update(self.ctx.info)
        summary["version"] = __version__
        self.send_json(summary)


class NodesHandler(BaseHandler):
    async def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        try:
            await self.ctx.source.refresh_node_stats(max_age_ms=self.ctx.config.dashboard_node_stats_period_ms)
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError):
            pass  # the rows from the channels are still right; GPU holders may be stale
        self.send_json({"nodes": self.ctx.source.model.node_rows()})


class TasksHandler(BaseHandler):
    def get(self) -> None:
        q = self.query(params.TASKS_QUERY)
        if q is None:
            return
        flt = TaskFilter(job_id=q.get("job_id"), states=q.get("state"), func=q.get("func"),
                         node_id=q.get("node_id"), context_tag=q.get("context_tag"), actor_id=q.get("actor_id"))
        offset, limit = q.get("offset", 0), q.get("limit", 1000)
        table = self.ctx.source.model.tasks
        body, total = table.list_json(flt, offset, limit)
        earlier = b""
        if q.get("attempts", False):
            attempts, num_attempts = table.earlier_json(flt, table.max_tasks)
            earlier = b',"earlier_attempts_total":%d,"earlier_attempts":%s' % (num_attempts, attempts)
        self.finish(b'{"total":%d,"offset":%d,"limit":%d,"seq":%d,"tasks":%s%s}'
                    % (total, offset, limit, self.ctx.hub.seq, body, earlier))


class TaskHandler(BaseHandler):
    async def get(self, task_id: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        try:
            task_id = params.task_id(task_id)
            row = await self.ctx.source.task_detail(task_id)
        except RequestRefused as exc:
            self._refuse(exc)
            return
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError) as exc:
            cached = self.ctx.source.model.tasks.get(task_id)
            if cached is None:
                self.fail(exc)
                return
            row = dict(cached)
        if row is None:
            self.fail(LookupError(f"no task {task_id}"))
            return
        self.send_json(row)


class CancelTaskHandler(BaseHandler):
    SUPPORTED_POSTS = True

    async def post(self, task_id: str) -> None:
        q = self.query(params.CANCEL_QUERY)
        if q is None:
            return
        await self.act(lambda: self.ctx.source.cancel_task(params.task_id(task_id), q.get("force", False),
                                                           q.get("recursive", True)))


class ActorsHandler(BaseHandler):
    def get(self) -> None:
        q = self.query(params.ACTORS_QUERY)
        if q is None:
            return
        rows = list(self.ctx.source.model.actors.values())
        if "job_id" in q:
            rows = [r for r in rows if r["job_id"] == q["job_id"]]
        if "state" in q:
            rows = [r for r in rows if r["state"] == q["state"].upper()]
        self.send_json({"total": len(rows), "actors": rows[:q.get("limit", 10_000)]})


class KillActorHandler(BaseHandler):
    SUPPORTED_POSTS = True

    async def post(self, actor_id: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        await self.act(lambda: self.ctx.source.kill_actor(params.actor_id(actor_id)))


class ObjectsHandler(BaseHandler):
    async def get(self) -> None:
        q = self.query(params.OBJECTS_QUERY)
        if q is None:
            return
        try:
            rows = await self.ctx.source.list_objects()
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError) as exc:
            self.fail(exc)
            return
        if "node_id" in q:
            rows = [r for r in rows if any(loc["node_id"] == q["node_id"] for loc in r["locations"])]
        total_bytes = sum(r["size_bytes"] for r in rows)
        self.send_json({"total": len(rows), "total_bytes": total_bytes, "objects": rows[:q.get("limit", 100)]})


class JobsHandler(BaseHandler):
    def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        jobs = sorted(self.ctx.source.model.jobs.values(), key=lambda j: j["start_time_ms"])
        self.send_json({"jobs": jobs})


class MetricsHandler(BaseHandler):
    """Prometheus scrape target; behind the token like every route."""

    async def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        source = self.ctx.source
        try:
            await source.refresh_node_stats(max_age_ms=self.ctx.config.dashboard_node_stats_period_ms)
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError):
            pass  # object counts and workers may be stale; the rest comes from the channels
        reply = None
        try:
            reply = await source.gcs_call("GetMetrics")
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError) as exc:
            logger.info("metrics of the GCS left out of a scrape: %s", exc)
        model = source.model
        cluster = metrics.cluster_families(model.summary(), model.node_rows(), model.gcs_connected)
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.exposition(cluster, reply))


class EventsHandler(BaseHandler):
    """Server-Sent Events. Clients reconnect with Last-Event-ID to resume."""

    async def get(self) -> None:
        q = self.query(params.EVENTS_QUERY)
        if q is None:
            return
        last = self.request.headers.get("Last-Event-ID", "")
        last_id = int(last) if last.isdigit() and len(last) < 19 else None
        hub = self.ctx.hub
        sub, needs_resync = hub.subscribe(last_id, want_tasks=q.get("tasks", True))
        self._sub = sub
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        keepalive_s = self.ctx.config.dashboard_sse_keepalive_ms / 1000
        try:
            self.write(b"retry: 1000\n")
            self.write(frame(hub.seq, "hello", {"seq": hub.seq, "gcs_connected": self.ctx.source.model.gcs_connected,
                                                **self.ctx.info}))
            if needs_resync:
                self.write(frame(hub.seq, "resync", {"reason": "missed events"}))
            await self.flush()
            while True:
                try:
                    data = await asyncio.wait_for(sub.queue.get(), keepalive_s)
                except asyncio.TimeoutError:
                    data = b": keepalive\n\n"
                if not data:
                    break
                chunks = [data]
                while not sub.queue.empty() and len(chunks) < 256:
                    more = sub.queue.get_nowait()
                    if not more:
                        break
                    chunks.append(more)
                self.write(b"".join(chunks))
                await self.flush()
                if sub.overflowed and sub.queue.empty():
                    break  # it was told to reload; it reconnects
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            hub.unsubscribe(sub)
        if not self._finished:
            self.finish()

    _sub: Subscriber | None = None

    def on_connection_close(self) -> None:
        # Wake the loop above so the subscriber goes away promptly.
        sub = self._sub
        if sub is not None:
            self.ctx.hub.unsubscribe(sub)
            sub.close()
        super().on_connection_close()


def routes(ctx: ApiContext) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    kw = {"ctx": ctx}
    return [
        (r"/api/cluster", ClusterHandler, kw),
        (r"/api/nodes", NodesHandler, kw),
        (r"/api/tasks", TasksHandler, kw),
        (rf"/api/tasks/({_HEX})", TaskHandler, kw),
        (rf"/api/tasks/({_HEX})/cancel", CancelTaskHandler, kw),
        (r"/api/actors", ActorsHandler, kw),
        (rf"/api/actors/({_HEX})/kill", KillActorHandler, kw),
        (r"/api/objects", ObjectsHandler, kw),
        (r"/api/jobs", JobsHandler, kw),
        (r"/api/events", EventsHandler, kw),
        (r"/metrics", MetricsHandler, kw),
    ]
