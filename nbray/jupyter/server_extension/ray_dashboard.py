"""The panel on a Ray 2.x cluster: its dashboard, translated (Jupyter server process).

With ``c.NbrayExtension.backend = "ray"`` (or ``NBRAY_PANEL_BACKEND=ray``)
the panel's routes are answered from a Ray head's dashboard instead of
nbray's. Reads go to Ray's HTTP API (state API ``/api/v0/...``,
``/api/cluster_status``, ``/api/jobs/``) and are translated by
``ray_rows``; the Jobs section's routes by ``ray_jobs`` from Ray's Jobs
REST API. Ray's dashboard has no route that kills an actor or cancels a
task, so both go over gRPC (``ray_actions``): Kill to the GCS as
``ray.kill`` does, Cancel to the task's owner (the driver or worker that
submitted it, whose address the GCS keeps) as ``ray.cancel`` does.

Ray has no event stream for clients: ``RayEventsHandler`` polls the head
every ``RAY_POLL_PERIOD_S`` and sends the rows that changed as the events
nbray's dashboard would send. Requests carry ``Authorization: Bearer
<token>`` when a token is configured (Ray's token authentication).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import tornado.iostream
import tornado.web
from jupyter_server.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from nbray import __version__
from nbray.dashboard import params
from nbray.jupyter.server_extension import ray_actions, ray_jobs, ray_rows, ray_wire
from nbray.jupyter.server_extension.handlers import GET_ROUTES, NbrayHandler, panel_routes
from nbray.jupyter.server_extension.ray_actions import RayActionRefused, RayUnavailable
from nbray.jupyter.server_extension.relay import USER_AGENT

RAY_REQUEST_TIMEOUT_S = 30.0
RAY_POLL_PERIOD_S = 1.0
RAY_STATE_LIMIT = 10_000          # the most rows Ray's state API returns in one reply


class RayConfigError(ValueError):
    """The Ray dashboard address is missing or not an http(s) URL."""


@dataclass
class RaySettings:
    """Where the Ray head is and how to authenticate."""

    dashboard_url: str
    gcs_address: str = ""
    token: str = field(default="", repr=False)

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h


def resolve_settings(dashboard_address: str, gcs_address: str, token_path: str,
                     environ: dict[str, str] | None = None) -> RaySettings:
    """Settings from the server's configuration, else the environment.

    Dashboard: configured, else ``RAY_DASHBOARD_ADDRESS``, else ``RAY_ADDRESS``
    when it is an http(s) URL. GCS (for Kill): configured, else ``RAY_ADDRESS``
    when it is ``host:port``, else the dashboard's host at port 6379. Token:
    ``RAY_AUTH_TOKEN``, else the file at the configured path or
    ``RAY_AUTH_TOKEN_PATH``. Raises RayConfigError without a usable dashboard.
    """
    env = dict(os.environ) if environ is None else environ
    ray_address = env.get("RAY_ADDRESS", "")
    url = dashboard_address or env.get("RAY_DASHBOARD_ADDRESS", "")
    if not url and ray_address.startswith(("http://", "https://")):
        url = ray_address
    if not url:
        raise RayConfigError("the panel's Ray backend needs the dashboard address: set "
                             "c.NbrayExtension.ray_dashboard_address or RAY_DASHBOARD_ADDRESS (http://HOST:8265)")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise RayConfigError(f"not a Ray dashboard address: {url!r} (expected http://HOST:PORT)")
    gcs = gcs_address
    if not gcs and ray_address and "://" not in ray_address and ray_address != "auto":
        gcs = ray_address
    if not gcs:
        gcs = f"{parts.hostname}:6379"
    token = env.get("RAY_AUTH_TOKEN", "").strip()
    path = token_path or env.get("RAY_AUTH_TOKEN_PATH", "")
    if not token and path:
        token = pathlib.Path(path).expanduser().read_text().strip()
    return RaySettings(dashboard_url=url.rstrip("/"), gcs_address=gcs, token=token)


class RayDashboard:
    """Calls to one Ray head; replies translated into the panel's shapes."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.error: str | None = None
        self.version: dict[str, Any] = {}

    async def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        """The decoded JSON of ``GET path``; RayUnavailable when it fails."""
        return await self.request_json("GET", path, query)

    async def request_json(self, method: str, path: str, query: dict[str, Any] | None = None,
                           missing: type[Exception] | None = None) -> Any:
        """The decoded JSON of ``method path``; RayUnavailable when it fails, ``missing`` on a 404 if given."""
        url = self.settings.dashboard_url + path + (f"?{urllib.parse.urlencode(query, doseq=True)}" if query else "")
        request = HTTPRequest(url, method=method, headers=self.settings.headers(), connect_timeout=5.0,
                              request_timeout=RAY_REQUEST_TIMEOUT_S, follow_redirects=False,
                              body=b"" if method == "POST" else None)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:  # refused, reset, no route: tornado raises these even with raise_error=False
            self.error = f"the Ray dashboard at {self.settings.dashboard_url} is not reachable: {exc}"
            raise RayUnavailable(self.error) from None
        if response.code == 599:
            self.error = f"the Ray dashboard at {self.settings.dashboard_url} is not reachable: {response.error}"
            raise RayUnavailable(self.error)
        if response.code in (401, 403):
            self.error = ray_rows.auth_refusal(self.settings.dashboard_url, response.code, response.body,
                                               bool(self.settings.token))
            raise RayUnavailable(self.error)
        if response.code == 404 and missing is not None:
            raise missing(ray_rows.reply_message(response.body) or f"{path} not found")
        if response.code != 200:
            raise RayUnavailable(f"the Ray dashboard answered {response.code} to {method} {path}: "
                                 f"{ray_rows.reply_message(response.body) or response.body[:300]!r}")
        self.error = None
        return json.loads(response.body or b"null")

    async def _state(self, resource: str, detail: bool = True) -> Any:
        return await self.get_json(f"/api/v0/{resource}", {"limit": RAY_STATE_LIMIT, "detail": int(detail)})

    async def nodes(self) -> list[dict[str, Any]]:
        nodes, status = await asyncio.gather(self._state("nodes"), self.get_json("/api/cluster_status"))
        return ray_rows.node_rows(nodes, status)

    async def tasks(self) -> list[dict[str, Any]]:
        return ray_rows.task_rows(await self._state("tasks"))

    async def actors(self) -> list[dict[str, Any]]:
        return ray_rows.actor_rows(await self._state("actors"))

    async def jobs(self) -> list[dict[str, Any]]:
        return ray_rows.job_rows(await self.get_json("/api/jobs/"))

    async def objects(self) -> list[dict[str, Any]]:
        nodes, objects = await asyncio.gather(self._state("nodes"), self._state("objects"))
        by_ip = {str(n.get("node_ip")): str(n.get("node_id")) for n in ray_rows.state_result(nodes)}
        return ray_rows.object_rows(objects, by_ip)

    async def summary(self) -> dict[str, Any]:
        nodes, tasks, actors, jobs = await asyncio.gather(self.nodes(), self.tasks(), self.actors(), self.jobs())
        if not self.version:
            self.version = await self.get_json("/api/version")
        info = {"gcs_address": self.settings.gcs_address, "dashboard_url": self.settings.dashboard_url,
                "session_name": str(self.version.get("session_name", "")),
                "version": f"Ray {self.version.get('ray_version', '?')} (nbray {__version__})"}
        return ray_rows.cluster_summary(nodes, tasks, actors, jobs, info)

    async def kill_actor(self, actor_id: str) -> None:
        """Kill without restart through the GCS, as ``ray.kill`` does."""
        await self._blocking(ray_actions.kill_actor, self.settings, bytes.fromhex(actor_id))

    async def task_attempts(self, task_id: str) -> list[dict[str, Any]]:
        """Ray's state-API rows of one task (one per attempt)."""
        reply = await self.get_json("/api/v0/tasks", {
            "limit": RAY_STATE_LIMIT, "detail": 1, "filter_keys": "task_id", "filter_predicates": "=",
            "filter_values": task_id})
        return [t for t in ray_rows.state_result(reply) if t.get("task_id") == task_id]

    async def latest_attempt(self, task_id: str) -> dict[str, Any]:
        """The state-API row of a task's latest attempt; LookupError when Ray has none."""
        attempts = await self.task_attempts(task_id)
        if not attempts:
            raise LookupError(f"no task {task_id}")
        return max(attempts, key=lambda t: int(t.get("attempt_number") or 0))

    async def cancel_task(self, task_id: str, force: bool, recursive: bool) -> dict[str, Any]:
        """Ask the task's owner to cancel it (``ray_actions``); the nbray dashboard's reply shape."""
        task = await self.latest_attempt(task_id)
        state = str(task.get("state") or "NIL")
        if not ray_actions.check_cancellable(task, force):
            return {"task_id": task_id, "found": False, "state": state}
        kind, who = ray_actions.owner_of(task)
        if kind == "driver":
            owner = await self._blocking(ray_actions.driver_address, self.settings, who)
        else:
            parent = await self.latest_attempt(who)
            worker_id = str(parent.get("worker_id") or "")
            if not worker_id:
                raise RayActionRefused(f"Ray does not say which worker ran task {who}, the owner of {task_id}")
            owner = await self._blocking(ray_actions.worker_address, self.settings, worker_id)
        await self._blocking(ray_actions.request_cancel, self.settings, owner, task_id, force, recursive)
        return {"task_id": task_id, "found": True, "state": state}

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# Kept under the names the unit tests of the Kill encoding use.
kill_request_bytes = ray_wire.kill_actor_request


def gcs_status_of_reply(reply: bytes) -> tuple[int, str]:
    """(code, message) of the ``GcsStatus status = 1`` of a GCS reply; (0, "") when absent."""
    try:
        return ray_wire.gcs_status(reply)
    except ray_wire.WireError as exc:
        raise ValueError(f"unexpected GCS reply encoding: {exc}") from None


# ---- routes --------------------------------------------------------------------------------------------------------


class RayHandler(NbrayHandler):
    @property
    def ray(self) -> RayDashboard:
        dashboard: RayDashboard = self.settings["nbray_ray"]
        return dashboard

    def query_values(self, spec: dict[str, params.Validator]) -> dict[str, Any] | None:
        if self.validated_query(spec) is None:
            return None
        arguments = {k: v for k, v in self.request.query_arguments.items()
                     if not (k.isdigit() and len(k) < 20 and v == [b""])}
        return params.parse_query(arguments, spec)

    async def answer(self, make: Any) -> None:
        await self.answer_json(make, ((RayUnavailable, 503), (ray_rows.RayReplyError, 502), (LookupError, 404),
                                      (RayActionRefused, 409)))


class RayClustersHandler(RayHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        s = self.ray.settings
        choice = {"id": s.gcs_address, "gcs_address": s.gcs_address, "origin": "ray", "started_ms": 0,
                  "description": f"Ray cluster, dashboard {s.dashboard_url}", "session_name": None,
                  "has_token": bool(s.token)}
        try:
            await self.ray.get_json("/api/version")
        except RayUnavailable:
            pass
        connected = self.ray.error is None
        self.finish(json.dumps({"selection": "auto", "connected": choice if connected else None,
                                "dashboard": "the Ray cluster's" if connected else None,
                                "error": self.ray.error, "clusters": [choice], "backend": "ray"}))


class RaySelectHandler(RayHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        self.send_error_json(409, "the panel is configured for one Ray cluster; there is nothing to choose")


class RayGetHandler(RayHandler):
    @tornado.web.authenticated
    async def get(self, route: str) -> None:
        q = self.query_values(GET_ROUTES[route])
        if q is None:
            return
        if route == "cluster":
            await self.answer(self.ray.summary)
        elif route == "nodes":
            await self.answer(lambda: _wrap("nodes", self.ray.nodes()))
        elif route == "actors":
            await self.answer(lambda: _actors(self.ray, q))
        elif route == "tasks":
            await self.answer(lambda: _tasks(self.ray, q))
        elif route == "objects":
            await self.answer(lambda: _objects(self.ray, q))
        elif route == "jobs":
            await self.answer(lambda: _wrap("jobs", self.ray.jobs()))
        else:
            self.send_error_json(501, f"{route} is not available on a Ray cluster")


async def _wrap(key: str, rows: Any) -> dict[str, Any]:
    return {key: await rows}


async def _actors(ray: RayDashboard, q: dict[str, Any]) -> dict[str, Any]:
    rows = await ray.actors()
    if "job_id" in q:
        rows = [r for r in rows if r["job_id"] == q["job_id"]]
    if "state" in q:
        rows = [r for r in rows if r["state"] == str(q["state"]).upper()]
    return {"total": len(rows), "actors": rows[:q.get("limit", RAY_STATE_LIMIT)]}


async def _tasks(ray: RayDashboard, q: dict[str, Any]) -> dict[str, Any]:
    rows = ray_rows.filter_tasks(await ray.tasks(), q)
    offset, limit = q.get("offset", 0), q.get("limit", 1000)
    return {"total": len(rows), "offset": offset, "limit": limit, "seq": 0, "tasks": rows[offset:offset + limit]}


async def _objects(ray: RayDashboard, q: dict[str, Any]) -> dict[str, Any]:
    rows = await ray.objects()
    if "node_id" in q:
        rows = [r for r in rows if any(loc["node_id"] == q["node_id"] for loc in r["locations"])]
    return {"total": len(rows), "total_bytes": sum(r["size_bytes"] for r in rows),
            "objects": rows[:q.get("limit", 100)]}


class RayTaskHandler(RayHandler):
    @tornado.web.authenticated
    async def get(self, task_id: str) -> None:
        if self.validated_query(params.NO_QUERY) is None:
            return
        task_id = task_id.lower()

        async def detail() -> dict[str, Any]:
            latest = await self.ray.latest_attempt(task_id)
            return ray_rows.task_detail(ray_rows.task_row(latest), latest)
        await self.answer(detail)


class RayCancelHandler(RayHandler):
    @tornado.web.authenticated
    async def post(self, task_id: str) -> None:
        q = self.query_values(params.CANCEL_QUERY)
        if q is not None:
            await self.answer(lambda: self.ray.cancel_task(task_id.lower(), q.get("force", False),
                                                           q.get("recursive", True)))


class RayKillHandler(RayHandler):
    @tornado.web.authenticated
    async def post(self, actor_id: str) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.answer(lambda: _killed(self.ray, actor_id.lower()))


async def _killed(ray: RayDashboard, actor_id: str) -> dict[str, Any]:
    await ray.kill_actor(actor_id)
    return {"killed": actor_id}


class RayEventsHandler(RayHandler):
    """nbray's event stream, made by polling the Ray head: ``hello``, then changed rows."""

    _closed = False

    @tornado.web.authenticated
    async def get(self) -> None:
        if self.validated_query(params.NO_QUERY) is None:
            return
        seen: dict[str, dict[str, str]] = {"tasks": {}, "nodes": {}, "actors": {}}
        keys = {"tasks": "task_id", "nodes": "node_id", "actors": "actor_id"}
        connected: bool | None = None
        try:
            self.begin_event_stream()
            while not self._closed:
                started = time.monotonic()
                try:
                    tasks, nodes, actors = await asyncio.gather(self.ray.tasks(), self.ray.nodes(),
                                                                self.ray.actors())
                except (RayUnavailable, ray_rows.RayReplyError) as exc:
                    if connected is not False:
                        self.write(_sse("relay", {"connected": False, "error": str(exc)}))
                        connected = False
                else:
                    if connected is not True:
                        for table in seen.values():
                            table.clear()
                        self.write(_sse("relay", {"connected": True, "cluster": self.ray.settings.gcs_address}))
                        self.write(_sse("hello", {"backend": "ray", "seq": 0}))
                        connected = True
                    for name, rows in (("tasks", tasks), ("nodes", nodes), ("actors", actors)):
                        changed = ray_rows.changed_rows(seen[name], rows, keys[name], _encode)
                        if changed:
                            self.write(_sse(name, {name: changed}))
                await self.flush()
                await asyncio.sleep(max(0.0, RAY_POLL_PERIOD_S - (time.monotonic() - started)))
        except tornado.iostream.StreamClosedError:
            pass
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        self._closed = True
        super().on_connection_close()


def _encode(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def setup_ray_handlers(web_app: tornado.web.Application, dashboard: RayDashboard) -> None:
    web_app.settings["nbray_ray"] = dashboard
    web_app.add_handlers(".*$", panel_routes(
        web_app.settings["base_url"], clusters=RayClustersHandler, select=RaySelectHandler, get=RayGetHandler,
        task=RayTaskHandler, cancel=RayCancelHandler, kill=RayKillHandler, events=RayEventsHandler))
    web_app.add_handlers(".*$", ray_jobs.routes(url_path_join(web_app.settings["base_url"], "nbray")))
