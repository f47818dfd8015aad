"""The panel's Jobs routes on a Ray 2.x cluster, from Ray's Jobs REST API (Jupyter server process).

Same routes and shapes as ``jobs.py`` (the nbray backend), answered from
the Ray dashboard::

    GET  nbray/api/submissions              Ray's ``GET /api/jobs/``, submitted jobs only
    GET  nbray/api/submissions/<id>         ``GET /api/jobs/<id>``
    GET  nbray/api/submissions/<id>/logs    ?offset=N -> {logs, offset, done}
    POST nbray/api/submissions/<id>/stop    ``POST /api/jobs/<id>/stop`` -> {stopped}

Ray serves a job's whole log at ``/api/jobs/<id>/logs`` (its tail route is
a WebSocket), so the byte offset the panel polls with is applied here; a
log is ``done`` once the job had ended before it was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import tornado.web
from jupyter_server.utils import url_path_join

from nbray.common.text import whole_chars
from nbray.dashboard import params
from nbray.job_submission.common import InvalidJobId, validate_submission_id
from nbray.jupyter.server_extension.handlers import NbrayHandler
from nbray.jupyter.server_extension.jobs import LOGS_QUERY, SUBMISSION_ID
from nbray.jupyter.server_extension.ray_actions import RayUnavailable

MAX_LOG_CHUNK_BYTES = 1 << 20
TERMINAL_JOB_STATES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
JOB_FIELDS = ("submission_id", "job_id", "type", "entrypoint", "status", "message", "error_type", "start_time",
              "end_time", "driver_exit_code", "metadata", "runtime_env", "entrypoint_num_cpus",
              "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources", "driver_agent_http_address",
              "driver_node_id", "driver_info")


class JobNotFound(LookupError):
    """Ray's Jobs API knows no such submission."""


class RayJobsReplyError(ValueError):
    """A Jobs API reply does not have the shape of Ray 2.x's."""


class JsonRequester(Protocol):
    async def request_json(self, method: str, path: str, query: dict[str, Any] | None = None,
                           missing: type[Exception] | None = None) -> Any: ...


# ---- pure translation ---------------------------------------------------------------------------------------------


def submission_row(job: Mapping[str, Any]) -> dict[str, Any]:
    """One Ray ``JobDetails`` as the panel's job row (Ray's field names, the ones the panel reads)."""
    out = {k: job.get(k) for k in JOB_FIELDS}
    out["status"] = str(job.get("status") or "PENDING")
    out["entrypoint"] = str(job.get("entrypoint") or "")
    out["metadata"] = dict(job.get("metadata") or {})
    return out


def submission_rows(reply: Any) -> list[dict[str, Any]]:
    """The submitted jobs of a ``GET /api/jobs/`` reply, oldest first.

    Ray lists drivers (``type: DRIVER``, no submission id) beside submitted
    jobs; the panel keys jobs by submission id, so drivers are left out
    (they are in ``nbray/api/jobs``).
    """
    if not isinstance(reply, list):
        raise RayJobsReplyError("expected a list of jobs from /api/jobs/")
    rows = [submission_row(j) for j in reply if isinstance(j, Mapping) and j.get("submission_id")]
    return sorted(rows, key=lambda j: (j["start_time"] or 0, j["submission_id"]))


def log_chunk(logs: str, offset: int, ended: bool, max_bytes: int = MAX_LOG_CHUNK_BYTES) -> dict[str, Any]:
    """The panel's ``{logs, offset, done}`` from a job's whole log and the byte offset already shown.

    ``ended``: the job had ended before the log was read, so the log is
    complete. At most ``max_bytes`` per chunk; an offset past the end
    (a log that shrank) starts again from the end.
    """
    data = logs.encode()
    offset = min(offset, len(data))
    rest = data[offset:]
    text = whole_chars(rest[:max_bytes])
    new_offset = offset + len(text.encode())
    return {"logs": text, "offset": new_offset, "done": ended and new_offset >= len(data)}


def stopped_of(reply: Any) -> bool:
    if not isinstance(reply, Mapping) or not isinstance(reply.get("stopped"), bool):
        raise RayJobsReplyError("expected {\"stopped\": bool} from the Ray job stop route")
    return bool(reply["stopped"])


# ---- calls --------------------------------------------------------------------------------------------------------


async def list_submissions(ray: JsonRequester) -> list[dict[str, Any]]:
    return submission_rows(await ray.request_json("GET", "/api/jobs/"))


async def get_submission(ray: JsonRequester, submission_id: str) -> dict[str, Any]:
    reply = await ray.request_json("GET", f"/api/jobs/{submission_id}", missing=JobNotFound)
    if not isinstance(reply, Mapping):
        raise RayJobsReplyError(f"expected a job from /api/jobs/{submission_id}")
    return submission_row(reply)


async def read_logs(ray: JsonRequester, submission_id: str, offset: int) -> dict[str, Any]:
    job = await get_submission(ray, submission_id)   # first: a job that had ended has its whole log
    reply = await ray.request_json("GET", f"/api/jobs/{submission_id}/logs", missing=JobNotFound)
    if not isinstance(reply, Mapping) or not isinstance(reply.get("logs"), str):
        raise RayJobsReplyError("expected {\"logs\": str} from the Ray job logs route")
    return log_chunk(reply["logs"], offset, job["status"] in TERMINAL_JOB_STATES)


async def stop_submission(ray: JsonRequester, submission_id: str) -> dict[str, Any]:
    reply = await ray.request_json("POST", f"/api/jobs/{submission_id}/stop", missing=JobNotFound)
    return {"stopped": stopped_of(reply)}


# ---- routes -------------------------------------------------------------------------------------------------------


class RayJobsHandler(NbrayHandler):
    @property
    def ray(self) -> JsonRequester:
        dashboard: JsonRequester = self.settings["nbray_ray"]
        return dashboard

    def checked_id(self, submission_id: str) -> str | None:
        try:
            return validate_submission_id(submission_id)
        except InvalidJobId as exc:
            self.send_error_json(400, str(exc))
            return None

    async def answer(self, make: Any) -> None:
        await self.answer_json(make, ((RayUnavailable, 503), (JobNotFound, 404), (RayJobsReplyError, 502)))


class RaySubmissionsHandler(RayJobsHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.answer(lambda: list_submissions(self.ray))


class RaySubmissionHandler(RayJobsHandler):
    @tornado.web.authenticated
    async def get(self, submission_id: str) -> None:
        sid = self.checked_id(submission_id)
        if sid is not None and self.validated_query(params.NO_QUERY) is not None:
            await self.answer(lambda: get_submission(self.ray, sid))


class RaySubmissionLogsHandler(RayJobsHandler):
    @tornado.web.authenticated
    async def get(self, submission_id: str) -> None:
        sid = self.checked_id(submission_id)
        if sid is None or self.validated_query(LOGS_QUERY) is None:
            return
        offset = int(self.get_query_argument("offset", "0"))
        await self.answer(lambda: read_logs(self.ray, sid, offset))


class RaySubmissionStopHandler(RayJobsHandler):
    @tornado.web.authenticated
    async def post(self, submission_id: str) -> None:
        sid = self.checked_id(submission_id)
        if sid is not None and self.validated_query(params.NO_QUERY) is not None:
            await self.answer(lambda: stop_submission(self.ray, sid))


def routes(base: str) -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """``base`` is ``<base_url>/nbray``."""
    out: list[Any] = [
        (url_path_join(base, "api", "submissions"), RaySubmissionsHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID), RaySubmissionHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID, "logs"), RaySubmissionLogsHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID, "stop"), RaySubmissionStopHandler),
    ]
    return out
