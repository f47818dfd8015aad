"""Routes of the nbray server extension under ``<base_url>/nbray/`` (Jupyter server process).

All are ``APIHandler`` subclasses with ``@tornado.web.authenticated``, so
Jupyter's token, XSRF and Host checks apply; the cluster token never
leaves this process.

    GET  nbray/clusters                  visible clusters, the selection, the connection state
    POST nbray/clusters/select           {"cluster": "auto" | "<GCS address>"}
    GET  nbray/api/<cluster|nodes|tasks|actors|objects|jobs|utilization>   relayed (query validated)
    GET  nbray/api/tasks/<task id>       relayed
    POST nbray/api/tasks/<task id>/cancel, nbray/api/actors/<actor id>/kill   relayed
    GET  nbray/events                    the dashboard's event stream, relayed; follows
                                         reconnects and cluster restarts
    nbray/api/submissions/...            the Jobs API, read and stop only (jobs.py, added by the extension's loader)
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import tornado.iostream
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbray.common import ids
from nbray.dashboard import params
from nbray.dashboard.security import RequestRefused
from nbray.dashboard.utilization import UTILIZATION_QUERY
from nbray.jupyter.server_extension.clusters import ClusterManager
from nbray.jupyter.server_extension.relay import EventStream, UpstreamUnavailable, fetch

GET_ROUTES: dict[str, dict[str, params.Validator]] = {
    "cluster": params.NO_QUERY, "nodes": params.NO_QUERY, "tasks": params.TASKS_QUERY,
    "actors": params.ACTORS_QUERY, "objects": params.OBJECTS_QUERY, "jobs": params.NO_QUERY,
    "utilization": UTILIZATION_QUERY,
}
RECONNECT_DELAY_S = 1.0
MAX_SELECT_BODY_BYTES = 4096


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class NbrayHandler(APIHandler):
    @property
    def clusters(self) -> ClusterManager:
        manager: ClusterManager = self.settings["nbray_clusters"]
        return manager

    def send_error_json(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": message}))

    async def answer_json(self, make: Any, statuses: tuple[tuple[type[Exception], int], ...]) -> None:
        """Finish with ``await make()`` as JSON, or with the status that
        ``statuses`` (checked in order) names for the error it raised."""
        try:
            data = await make()
        except tuple(kind for kind, _ in statuses) as exc:
            status = next(code for kind, code in statuses if isinstance(exc, kind))
            if isinstance(exc, LookupError):  # a KeyError's str() would quote its message
                message = str(exc.args[0]) if exc.args else "not found"
            else:
                message = str(exc)
            self.send_error_json(status, message)
            return
        self.finish(json.dumps(data))

    def begin_event_stream(self) -> None:
        """Headers of a server-sent event stream (no caching, no proxy
        buffering) and its first line: reconnect after a second."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        self.write(b"retry: 1000\n\n")

    def validated_query(self, spec: dict[str, params.Validator]) -> str | None:
        """The query string rebuilt from validated parameters, or None after answering 400.

        A bare number without a value is JupyterLab's cache buster
        (``ServerConnection`` with ``cache: "no-store"``); it is dropped.
        """
        arguments = {k: v for k, v in self.request.query_arguments.items()
                     if not (k.isdigit() and len(k) < 20 and v == [b""])}
        try:
            params.parse_query(arguments, spec)
        except RequestRefused as exc:
            self.send_error_json(exc.status, exc.reason)
            return None
        pairs = [(k, v[0].decode()) for k, v in arguments.items()]
        return urllib.parse.urlencode(pairs)

    async def relay(self, method: str, path: str, query: str = "") -> None:
        """Call the dashboard; on failure resolve the cluster again and retry once."""
        for attempt in range(2):
            up = await self.clusters.resolve()
            if up is None:
                self.send_error_json(503, self.clusters.error or "no cluster")
                return
            try:
                status, body = await fetch(up, method, path, query)
            except UpstreamUnavailable as exc:
                self.clusters.invalidate(up)
                if attempt == 1:
                    self.send_error_json(503, str(exc))
                    return
                continue
            self.set_status(status)
            self.finish(body)
            return


class ClustersHandler(NbrayHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.clusters.resolve()
        self.finish(json.dumps(self.clusters.status()))


class SelectClusterHandler(NbrayHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        if len(self.request.body) > MAX_SELECT_BODY_BYTES:
            self.send_error_json(413, "body too large")
            return
        try:
            body = json.loads(self.request.body or b"{}")
            cluster = body["cluster"]
            if not isinstance(cluster, str) or len(cluster) > 300:
                raise ValueError(cluster)
        except (ValueError, KeyError, TypeError):
            self.send_error_json(400, 'expected {"cluster": "auto" | "<GCS address>"}')
            return
        try:
            self.clusters.select(cluster)
        except KeyError:
            self.send_error_json(404, f"no visible cluster {cluster!r}")
            return
        await self.clusters.resolve()
        self.finish(json.dumps(self.clusters.status()))


class RelayGetHandler(NbrayHandler):
    @tornado.web.authenticated
    async def get(self, route: str) -> None:
        query = self.validated_query(GET_ROUTES[route])
        if query is not None:
            await self.relay("GET", f"/api/{route}", query)


class RelayTaskHandler(NbrayHandler):
    @tornado.web.authenticated
    async def get(self, task_id: str) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.relay("GET", f"/api/tasks/{task_id.lower()}")


class RelayCancelHandler(NbrayHandler):
    @tornado.web.authenticated
    async def post(self, task_id: str) -> None:
        query = self.validated_query(params.CANCEL_QUERY)
        if query is not None:
            await self.relay("POST", f"/api/tasks/{task_id.lower()}/cancel", query)


class RelayKillActorHandler(NbrayHandler):
    @tornado.web.authenticated
    async def post(self, actor_id: str) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.relay("POST", f"/api/actors/{actor_id.lower()}/kill")


class EventsHandler(NbrayHandler):
    """The event stream, kept open across dashboard restarts.

    Besides the dashboard's own events it sends ``relay`` events
    (``{"connected": bool, ...}``) when the upstream changes; after a
    reconnect the dashboard's ``hello`` tells the client to reload.
    """

    _closed = False
    _stream: EventStream | None = None

    @tornado.web.authenticated
    async def get(self) -> None:
        if self.validated_query(params.NO_QUERY) is None:
            return
        manager = self.clusters
        try:
            self.begin_event_stream()
            await self.flush()
            connected: bool | None = None
            while not self._closed:
                up = await manager.resolve()
                stream = None
                if up is not None:
                    try:
                        stream = await EventStream.open(up)
                    except UpstreamUnavailable as exc:
                        manager.invalidate(up)
                        manager.error = str(exc)
                if stream is None:
                    if connected is not False:
                        self.write(_sse("relay", {"connected": False, "error": manager.error}))
                        await self.flush()
                        connected = False
                    await manager.wait_changed(RECONNECT_DELAY_S)
                    continue
                connected = True
                self._stream = stream
                self.write(_sse("relay", {"connected": True, "cluster": up.cluster_id if up else None}))
                await self.flush()
                generation = manager.generation
                await self._pump(stream, manager, up)
                stream.close()
                self._stream = None
                if not self._closed and up is not None:
                    if manager.generation == generation:
                        manager.invalidate(up)
                    self.write(_sse("relay", {"connected": False, "error": "the dashboard went away"}))
                    await self.flush()
                    connected = False
                    await asyncio.sleep(0.2)
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            if self._stream is not None:
                self._stream.close()
        if not self._finished:
            self.finish()

    async def _pump(self, stream: EventStream, manager: ClusterManager, up: Any) -> None:
        """Copy the stream until it ends or the user chooses another cluster."""
        read = asyncio.ensure_future(stream.read())
        try:
            while not self._closed:
                changed = asyncio.ensure_future(manager.wait_changed(3600))
                done, _ = await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if read not in done:
                    if manager.selection not in ("auto", up.cluster_id):
                        return  # the user chose another cluster
                    continue
                chunk = read.result()
                if not chunk:
                    return
                self.write(chunk)
                await self.flush()
                read = asyncio.ensure_future(stream.read())
        finally:
            read.cancel()

    def on_connection_close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()
        super().on_connection_close()

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("set_content_type", "text/event-stream; charset=utf-8")
        return super().finish(*args, **kwargs)


def panel_routes(base_url: str, **handlers: type[tornado.web.RequestHandler]) -> list[tuple[str, Any]]:
    """The panel's URL patterns under ``base_url``/nbray, each paired with
    the handler given for its role: clusters, select, get, task, cancel,
    kill, submissions, events (whichever a backend serves)."""
    base = url_path_join(base_url, "nbray")
    task = f"([0-9a-fA-F]{{{2 * ids.TASK_ID_SIZE}}})"
    actor = f"([0-9a-fA-F]{{{2 * ids.ACTOR_ID_SIZE}}})"
    patterns = {
        "clusters": url_path_join(base, "clusters"),
        "select": url_path_join(base, "clusters", "select"),
        "get": url_path_join(base, "api", f"({'|'.join(GET_ROUTES)})"),
        "task": url_path_join(base, "api", "tasks", task),
        "cancel": url_path_join(base, "api", "tasks", task, "cancel"),
        "kill": url_path_join(base, "api", "actors", actor, "kill"),
        "submissions": url_path_join(base, "api", "submissions"),
        "events": url_path_join(base, "events"),
    }
    return [(patterns[role], handler) for role, handler in handlers.items()]


def setup_handlers(web_app: tornado.web.Application, manager: ClusterManager) -> None:
    web_app.settings["nbray_clusters"] = manager
    web_app.add_handlers(".*$", panel_routes(
        web_app.settings["base_url"], clusters=ClustersHandler, select=SelectClusterHandler, get=RelayGetHandler,
        task=RelayTaskHandler, cancel=RelayCancelHandler, kill=RelayKillActorHandler, events=EventsHandler))
