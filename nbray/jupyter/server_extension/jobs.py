"""Relayed routes of the Jobs API for the panel (Jupyter server process).

    GET  nbray/api/submissions                 submitted jobs (dashboard ``GET /api/jobs/``)
    GET  nbray/api/submissions/<id>            one job
    GET  nbray/api/submissions/<id>/logs       ?offset=N: the log from byte N, cut at a whole character
                                               -> {logs, offset, done} (``/logs/tail`` without waiting)
    POST nbray/api/submissions/<id>/stop       stop the job -> {stopped}

Only reading and stopping: submitting, deleting and uploading stay with
the SDK and the CLI, which talk to the dashboard themselves. Ids are
matched by the route pattern and checked again before a request is built.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join

from nbray.dashboard import params
from nbray.job_submission.common import InvalidJobId, validate_submission_id
from nbray.jupyter.server_extension.handlers import NbrayHandler

SUBMISSION_ID = r"([A-Za-z0-9_\-]{1,64})"
LOGS_QUERY: dict[str, params.Validator] = {"offset": params.int_in(0, 2**62)}


class SubmissionHandler(NbrayHandler):
    def job_path(self, submission_id: str | None, suffix: str = "") -> str | None:
        if submission_id is None:
            return "/api/jobs/"
        try:
            return f"/api/jobs/{validate_submission_id(submission_id)}{suffix}"
        except InvalidJobId as exc:
            self.send_error_json(400, str(exc))
            return None


class SubmissionsHandler(SubmissionHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        if self.validated_query(params.NO_QUERY) is not None:
            await self.relay("GET", "/api/jobs/")


class SubmissionDetailHandler(SubmissionHandler):
    @tornado.web.authenticated
    async def get(self, submission_id: str) -> None:
        path = self.job_path(submission_id)
        if path is not None and self.validated_query(params.NO_QUERY) is not None:
            await self.relay("GET", path)


class SubmissionLogsHandler(SubmissionHandler):
    @tornado.web.authenticated
    async def get(self, submission_id: str) -> None:
        path = self.job_path(submission_id, "/logs/tail")
        query = self.validated_query(LOGS_QUERY) if path is not None else None
        if path is not None and query is not None:
            # Never a long poll through the relay: the panel polls.
            await self.relay("GET", path, "&".join(filter(None, [query, "wait_ms=0"])))


class SubmissionStopHandler(SubmissionHandler):
    @tornado.web.authenticated
    async def post(self, submission_id: str) -> None:
        path = self.job_path(submission_id, "/stop")
        if path is not None and self.validated_query(params.NO_QUERY) is not None:
            await self.relay("POST", path)


def routes(base: str) -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """``base`` is ``<base_url>/nbray``."""
    out: list[Any] = [
        (url_path_join(base, "api", "submissions"), SubmissionsHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID), SubmissionDetailHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID, "logs"), SubmissionLogsHandler),
        (url_path_join(base, "api", "submissions", SUBMISSION_ID, "stop"), SubmissionStopHandler),
    ]
    return out
