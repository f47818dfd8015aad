"""HTTP routes of the Jobs API, with Ray's paths (dashboard process).

    GET    /api/version                         versions (Ray's ``get_version``)
    POST   /api/jobs/                           submit: JSON {entrypoint, submission_id?, runtime_env?,
                                                metadata?, entrypoint_num_cpus?, ...} -> {submission_id}
    GET    /api/jobs/                           every submitted job (JobDetails as JSON)
    GET    /api/jobs/<id>                       one job
    DELETE /api/jobs/<id>                       forget a finished job (409 while it runs)
    POST   /api/jobs/<id>/stop                  stop -> {stopped}
    GET    /api/jobs/<id>/logs                  the whole log (up to 1 MiB from ?offset=)
    GET    /api/jobs/<id>/logs/tail             long poll: ?offset=N&wait_ms=M -> {logs, offset, done}
    GET    /api/packages/<protocol>/<name>      200 if the package was uploaded, else 404
    PUT    /api/packages/<protocol>/<name>      upload a working_dir or py_modules zip (100 MiB at most), named
                                                by its content (``gcs/_nbray_pkg_<hash>.zip``, see
                                                ``nbray.runtime_env.packaging``) and stored where drivers
                                                store theirs; a name or content that does not match -> 400

The same checks as every dashboard route run first, in the same order
(``security``: path, Host, then the browser guard, then the token); the only
difference is the method allow-list, which here also has PUT and DELETE
(still refused to anything that looks like a browser). Ids are matched
by the route pattern (letters, digits, ``_``, ``-``) and checked again.
Bodies are read only after those checks, up to a per-route limit.
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from nbray import __version__
from nbray.common.text import whole_chars
from nbray.dashboard import params
from nbray.dashboard.handlers import ApiContext, BaseHandler
from nbray.dashboard.job_manager import MAX_PACKAGE_BYTES, JobConflict, JobManager, JobNotFound
from nbray.dashboard.security import (
    BROWSER_METHODS,
    RequestRefused,
    check_host,
    check_path,
    check_token,
    is_browser_request,
)
from nbray.dashboard.source import GcsUnavailable
from nbray.exceptions import RpcError
from nbray.job_submission.common import InvalidJobId

_ID = r"[A-Za-z0-9_\-]+"
_JOB_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE"})
MAX_SUBMIT_BODY_BYTES = 1024 * 1024
MAX_TAIL_WAIT_MS = 30_000
LOGS_QUERY: dict[str, params.Validator] = {"offset": params.int_in(0, 2**62)}
TAIL_QUERY: dict[str, params.Validator] = {"offset": params.int_in(0, 2**62),
                                           "wait_ms": params.int_in(0, MAX_TAIL_WAIT_MS)}


class JobsBaseHandler(BaseHandler):
    MAX_BODY_BYTES = 0

    def initialize(self, ctx: ApiContext, jobs: JobManager) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.jobs = jobs
        self._chunks: list[bytes] = []

    def prepare(self) -> None:
        method = self.request.method or ""
        try:
            check_path(self.request.path)
            check_host(self.request.headers.get("Host"), self.ctx.allowed_hosts)
            if method not in _JOB_METHODS:
                raise RequestRefused(405, f"method {method} is not allowed")
            if method not in BROWSER_METHODS and is_browser_request(self.request.headers):
                raise RequestRefused(405, f"browsers may only use {', '.join(sorted(BROWSER_METHODS))}")
            check_token(self.request.headers.get("Authorization"), self.ctx.token)
        except RequestRefused as exc:
            self._refuse(exc)
            return
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > self.MAX_BODY_BYTES:
            self._refuse(RequestRefused(413, f"request bodies here are limited to {self.MAX_BODY_BYTES} bytes"))
            return
        self.request.connection.set_max_body_size(self.MAX_BODY_BYTES)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self.MAX_BODY_BYTES:
            if not self._finished:
                self._refuse(RequestRefused(413, f"request bodies here are limited to {self.MAX_BODY_BYTES} bytes"))
            return
        self._chunks.append(chunk)

    def body(self) -> bytes:
        return b"".join(self._chunks)

    async def run(self, action: Any) -> Any:
        """Await ``action``; on an operating error answer with its status and return None."""
        try:
            return await action
        except RequestRefused as exc:
            self._refuse(exc)
        except (JobNotFound, InvalidJobId, JobConflict, ValueError) as exc:
            status = 404 if isinstance(exc, JobNotFound) else 409 if isinstance(exc, JobConflict) else 400
            self.set_status(status)
            self.finish(json.dumps({"error": str(exc)}))
        except (GcsUnavailable, ConnectionError, TimeoutError, RpcError) as exc:
            self.fail(exc)
        except Exception as exc:  # e.g. the supervisor actor could not be created: say why
            self.set_status(500)
            self.finish(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return None


class VersionHandler(JobsBaseHandler):
    def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        self.send_json({"version": "4", "nbray_version": __version__, "ray_version": __version__,
                        "ray_commit": ""})


class JobCollectionHandler(JobsBaseHandler):
    MAX_BODY_BYTES = MAX_SUBMIT_BODY_BYTES

    async def get(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        rows = await self.run(self.jobs.list())
        if rows is not None:
            self.send_json([d.to_json() for d in rows])

    async def post(self) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        try:
            body = json.loads(self.body() or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.set_status(400)
            self.finish(json.dumps({"error": f"the request body is not JSON: {exc}"}))
            return
        sid = await self.run(self.jobs.submit(body))
        if sid is not None:
            self.send_json({"submission_id": sid, "job_id": sid})


class JobHandler(JobsBaseHandler):
    async def get(self, submission_id: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        details = await self.run(self.jobs.get(submission_id))
        if details is not None:
            self.send_json(details.to_json())

    async def delete(self, submission_id: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        deleted = await self.run(self.jobs.delete(submission_id))
        if deleted is not None:
            self.send_json({"deleted": deleted})


class StopJobHandler(JobsBaseHandler):
    async def post(self, submission_id: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        stopped = await self.run(self.jobs.stop(submission_id))
        if stopped is not None:
            self.send_json({"stopped": stopped})


class JobLogsHandler(JobsBaseHandler):
    async def get(self, submission_id: str) -> None:
        q = self.query(LOGS_QUERY)
        if q is None:
            return
        result = await self.run(self.jobs.read_logs(submission_id, q.get("offset", 0)))
        if result is not None:
            self.send_json({"logs": result[0].decode("utf-8", "replace")})


class TailJobLogsHandler(JobsBaseHandler):
    async def get(self, submission_id: str) -> None:
        q = self.query(TAIL_QUERY)
        if q is None:
            return
        offset = q.get("offset", 0)
        result = await self.run(self.jobs.tail(submission_id, offset, q.get("wait_ms", 10_000) / 1000))
        if result is not None:
            data, done = result
            # Split at a whole UTF-8 character so a multi-byte one is never cut in two.
            text = data.decode("utf-8", "ignore") if done else whole_chars(data)
            self.send_json({"logs": text, "offset": offset + len(text.encode()), "done": done})


class PackageHandler(JobsBaseHandler):
    MAX_BODY_BYTES = MAX_PACKAGE_BYTES

    async def get(self, protocol: str, name: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        exists = await self.run(self.jobs.package_exists(protocol, name))
        if exists is None:
            return
        if not exists:
            self.set_status(404)
        self.send_json({"exists": exists})

    async def put(self, protocol: str, name: str) -> None:
        if self.query(params.NO_QUERY) is None:
            return
        data = self.body()
        done = await self.run(self.jobs.put_package(protocol, name, data))
        if not self._finished and done is None:
            self.send_json({"uploaded": len(data)})




def routes(ctx: ApiContext, jobs: JobManager) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    kw = {"ctx": ctx, "jobs": jobs}
    return [
        (r"/api/version", VersionHandler, kw),
        (r"/api/jobs/", JobCollectionHandler, kw),
        (rf"/api/jobs/({_ID})", JobHandler, kw),
        (rf"/api/jobs/({_ID})/stop", StopJobHandler, kw),
        (rf"/api/jobs/({_ID})/logs", JobLogsHandler, kw),
        (rf"/api/jobs/({_ID})/logs/tail", TailJobLogsHandler, kw),
        (rf"/api/packages/([a-z0-9]+)/({_ID}(?:\.[A-Za-z0-9_\-]+)*)", PackageHandler, kw),
    ]
