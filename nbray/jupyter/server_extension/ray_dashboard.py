"""The panel on a Ray 2.x cluster: its dashboard, translated (Jupyter server process).

With ``c.NbrayExtension.backend = "ray"`` (or ``NBRAY_PANEL_BACKEND=ray``)
the panel's routes are answered from a Ray head's dashboard instead of
nbray's. Reads go to Ray's HTTP API (state API ``/api/v0/...``,
``/api/cluster_status``, ``/api/jobs/``) and are translated by
``ray_rows``. Ray's dashboard has no route that kills an actor, so Kill
calls the GCS's ``ActorInfoGcsService.KillActorViaGcs`` (what ``ray.kill``
does) over gRPC; the task cancel of Ray's API (``ray.cancel``) needs the
task's owner, which Ray's dashboard does not name, so cancel answers 501.

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
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from nbray import __version__
from nbray.dashboard import params
from nbray.jupyter.server_extension import ray_rows
from nbray.jupyter.server_extension.handlers import GET_ROUTES, NbrayHandler, panel_routes
from nbray.jupyter.server_extension.relay import USER_AGENT

RAY_REQUEST_TIMEOUT_S = 30.0
RAY_POLL_PERIOD_S = 1.0
RAY_STATE_LIMIT = 10_000          # the most rows Ray's state API returns in one reply
RAY_KILL_TIMEOUT_S = 10.0
KILL_METHOD = "/ray.rpc.ActorInfoGcsService/KillActorViaGcs"


class RayConfigError(ValueError):
    """The Ray dashboard address is missing or not an http(s) URL."""


class RayUnavailable(ConnectionError):
    """The Ray dashboard (or GCS) could not be reached or refused the token."""


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
        url = self.settings.dashboard_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = HTTPRequest(url, headers=self.settings.headers(), connect_timeout=5.0,
                              request_timeout=RAY_REQUEST_TIMEOUT_S, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:  # refused, reset, no route: tornado raises these even with raise_error=False
            self.error = f"the Ray dashboard at {self.settings.dashboard_url} is not reachable: {exc}"
            raise RayUnavailable(self.error) from None
        if response.code == 599:
            self.error = f"the Ray dashboard at {self.settings.dashboard_url} is not reachable: {response.error}"
            raise RayUnavailable(self.error)
        if response.code in (401, 403):
            self.error = (f"the Ray dashboard at {self.settings.dashboard_url} refused the request: "
                          "set RAY_AUTH_TOKEN for the Jupyter server")
            raise RayUnavailable(self.error)
        if response.code != 200:
            raise RayUnavailable(f"the Ray dashboard answered {response.code} to {path}: {response.body[:300]!r}")
        self.error = None
        return json.loads(response.body or b"null")

    async def _state(self, resource: str, detail: bool = True) -> Any:
        return await self.get_json(f"/api/v0/{resource}", {"limit": RAY_STATE_LIMIT, "detail": int(detail)})

    async def nodes(self) -> list[dict[str, Any]]:
        nodes, status = await asyncio.gather(self._state("nodes"), self.get_json("/api/cluster_status"))
        return ray_rows.node_rows(nodes, status)

    async def tasks_raw(self) -> list[dict[str, Any]]:
        return ray_rows.state_result(await self._state("tasks"))

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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, kill_actor_via_gcs, self.settings, bytes.fromhex(actor_id))


def kill_request_bytes(actor_id: bytes, force_kill: bool = True, no_restart: bool = True) -> bytes:
    """A ``KillActorViaGcsRequest`` (actor_id = 1, force_kill = 2, no_restart = 3) in protobuf wire format."""
    if not 0 < len(actor_id) < 128:
        raise ValueError(f"bad actor id length {len(actor_id)}")
    return (b"\x0a" + bytes([len(actor_id)]) + actor_id + (b"\x10\x01" if force_kill else b"")
            + (b"\x18\x01" if no_restart else b""))


def gcs_status_of_reply(reply: bytes) -> tuple[int, str]:
    """(code, message) of the ``GcsStatus status = 1`` of a GCS reply; (0, "") when absent."""
    if not reply:
        return 0, ""
    if reply[0] != 0x0A or len(reply) < 2 or reply[1] >= 0x80 or len(reply) < 2 + reply[1]:
        raise ValueError("unexpected GCS reply encoding")
    inner = reply[2:2 + reply[1]]
    code, message, i = 0, "", 0
    while i < len(inner):
        tag = inner[i]
        i += 1
        if tag == 0x08:  # code: varint
            shift = 0
            code = 0
            while True:
                b = inner[i]
                i += 1
                code |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        elif tag == 0x12 and i < len(inner) and inner[i] < 0x80:  # message: short string
            n = inner[i]
            message = inner[i + 1:i + 1 + n].decode(errors="replace")
            i += 1 + n
        else:
            break
    return code, message


def kill_actor_via_gcs(settings: RaySettings, actor_id: bytes) -> None:
    """Blocking gRPC call to the Ray GCS; RayUnavailable when it fails."""
    try:
        import grpc
    except ImportError:
        raise RayUnavailable("killing actors on Ray needs grpcio in the Jupyter server's environment: "
                             "pip install 'nbray[ray-panel]'") from None
    metadata = [("authorization", f"Bearer {settings.token}")] if settings.token else []
    with grpc.insecure_channel(settings.gcs_address) as channel:
        call = channel.unary_unary(KILL_METHOD, request_serializer=None, response_deserializer=None)
        try:
            reply = call(kill_request_bytes(actor_id), timeout=RAY_KILL_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as exc:
            raise RayUnavailable(f"the Ray GCS at {settings.gcs_address} did not kill the actor: {exc}") from None
    code, message = gcs_status_of_reply(reply)
    if code != 0:
        raise RayUnavailable(f"the Ray GCS refused to kill actor {actor_id.hex()}: {message or code}")


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
        try:
            data = await make()
        except RayUnavailable as exc:
            self.send_error_json(503, str(exc))
            return
        except ray_rows.RayReplyError as exc:
            self.send_error_json(502, str(exc))
            return
        self.finish(json.dumps(data))


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
            raw = [t for t in await self.ray.tasks_raw() if t.get("task_id") == task_id]
            if not raw:
                raise LookupError(task_id)
            latest = max(raw, key=lambda t: int(t.get("attempt_number") or 0))
            return ray_rows.task_detail(ray_rows.task_row(latest), latest)
        try:
            await self.answer(detail)
        except LookupError:
            self.send_error_json(404, f"no task {task_id}")


class RayCancelHandler(RayHandler):
    @tornado.web.authenticated
    async def post(self, task_id: str) -> None:
        if self.validated_query(params.CANCEL_QUERY) is not None:
            self.send_error_json(501, "Ray's dashboard cannot cancel a task (only the task's owner can, with "
                                      "ray.cancel); cancel it from the notebook that submitted it")


class RayKillHandler(RayHandler):
    @tornado.web.authenticated
    async def post(self, actor_id: str) -> None:
        if self.validated_query(params.NO_QUERY) is None:
            return
        try:
            await self.ray.kill_actor(actor_id.lower())
        except RayUnavailable as exc:
            self.send_error_json(503, str(exc))
            return
        self.finish(json.dumps({"killed": actor_id.lower()}))


class RaySubmissionsHandler(RayHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.answer(lambda: self.ray.get_json("/api/jobs/"))


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
        task=RayTaskHandler, cancel=RayCancelHandler, kill=RayKillHandler, submissions=RaySubmissionsHandler,
        events=RayEventsHandler))
