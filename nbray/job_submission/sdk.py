"""``JobSubmissionClient``: the Jobs API over the dashboard's HTTP routes (any process).

The address is the dashboard's URL (``http://HEAD:8265``, ``https://``
when the cluster runs TLS), or a GCS address ``HOST:PORT`` whose
dashboard URL is looked up in the GCS, or nothing: then
``NBRAY_ADDRESS``, then the newest cluster on this machine. The token
comes from ``NBRAY_AUTH_TOKEN`` / ``NBRAY_AUTH_TOKEN_PATH``, else from
the local session of the cluster whose dashboard is at that URL.

Errors: ``RuntimeError`` for an answer other than success (unknown job,
bad request, refused token), with the server's reason;
``ConnectionError`` when the dashboard cannot be reached.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

from nbray.job_submission import common, packages
from nbray.job_submission.common import JobDetails, JobStatus

HTTP_TIMEOUT_S = 60.0
TAIL_WAIT_MS = 5_000
UPLOAD_MIN_BYTES_PER_S = 1024 * 1024  # an upload's timeout grows by a second per MiB


def _local_token(url: str) -> bytes | None:
    """The token of a cluster on this machine whose dashboard is at ``url``."""
    from nbray.node import session
    from nbray.rpc import auth

    token = auth.token_from_environment()
    if token is not None:
        return token
    wanted = urllib.parse.urlsplit(url)
    for path, info in session.local_head_sessions():
        listed = urllib.parse.urlsplit(str(info.get("dashboard_url", "")))
        if listed.port != wanted.port or not listed.port:
            continue
        if listed.hostname == wanted.hostname or wanted.hostname in ("localhost", "127.0.0.1"):
            found = session.find_token(path)
            if found is not None:
                return found
    return None


def _dashboard_url_from_gcs(gcs_address: str) -> str:
    from nbray.node import session
    from nbray.protocol import gcs_pb2
    from nbray.rpc.blocking import BlockingClient

    token = session.find_token(session.session_for_address(gcs_address))
    if token is None:
        raise ConnectionError(f"no cluster token for {gcs_address}; set NBRAY_AUTH_TOKEN")
    with BlockingClient(gcs_address, token, role="cli", timeout_s=10.0) as client:
        reply = client.call("GcsService.KVGet", gcs_pb2.KVGetRequest(ns="dashboard", key=b"url"))
    if not reply.found:
        raise ConnectionError(f"the cluster at {gcs_address} runs no dashboard (start it with --include-dashboard)")
    return str(reply.value.decode())


def resolve_address(address: str | None) -> str:
    """The dashboard URL for ``address`` (see module docstring)."""
    from nbray.node import session

    address = address or os.environ.get(session.ADDRESS_ENV) or None
    if address and address.startswith(("http://", "https://")):
        return address.rstrip("/")
    if address in (None, "auto"):
        found = session.find_current_cluster()
        if found is None:
            raise ConnectionError("no address given, NBRAY_ADDRESS is not set and no cluster runs on this machine")
        address = found[0]
    assert address is not None
    return _dashboard_url_from_gcs(address).rstrip("/")


class JobSubmissionClient:
    """Submit and manage jobs of a cluster (Ray's ``ray.job_submission.JobSubmissionClient``)."""

    def __init__(self, address: str | None = None, *, headers: dict[str, str] | None = None,
                 verify: bool | str = True, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self._url = resolve_address(address)
        parts = urllib.parse.urlsplit(self._url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        token = _local_token(self._url)
        self._headers = {"User-Agent": "nbray-job-submission", **(headers or {})}
        if token is not None and "Authorization" not in self._headers:
            self._headers["Authorization"] = f"Bearer {token.hex()}"
        self._verify = verify
        self._timeout_s = timeout_s

    def get_address(self) -> str:
        return self._url

    # ---- transport ----------------------------------------------------------------------------------------

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
        if self._verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif isinstance(self._verify, str):
            ctx = ssl.create_default_context(cafile=self._verify)
        else:
            from nbray.rpc import tls

            ctx = tls.public_client_context()
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout_s, context=ctx)

    def _request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 timeout_s: float | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/octet-stream" if raw is not None else "application/json"
        conn = self._connection(timeout_s or self._timeout_s)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except OSError as exc:
            raise ConnectionError(f"could not reach the dashboard at {self._url}: {exc}") from exc
        finally:
            conn.close()
        try:
            decoded = json.loads(payload) if payload else None
        except json.JSONDecodeError:
            decoded = None
        if resp.status >= 400:
            reason = decoded.get("error") if isinstance(decoded, dict) else payload[:200].decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path} failed with HTTP {resp.status}: {reason}")
        return decoded

    @staticmethod
    def _path(submission_id: str, suffix: str = "") -> str:
        common.validate_submission_id(submission_id)
        return f"/api/jobs/{submission_id}{suffix}"

    # ---- the API ------------------------------------------------------------------------------------------

    def get_version(self) -> str:
        return str(self._request("GET", "/api/version")["version"])

    def submit_job(self, *, entrypoint: str, submission_id: str | None = None, job_id: str | None = None,
                   runtime_env: dict[str, Any] | None = None, metadata: dict[str, str] | None = None,
                   entrypoint_num_cpus: float | None = None, entrypoint_num_gpus: float | None = None,
                   entrypoint_resources: dict[str, float] | None = None) -> str:
        """Start ``entrypoint`` (a shell command) as a job; returns its submission id.

        A local ``working_dir`` or ``py_modules`` entry of ``runtime_env``
        (relative to this process's directory) is packed and uploaded through
        the dashboard first; the job runs in the unpacked working_dir, and
        the runtime_env is the default of every task its driver submits.

        Raises RuntimeError if the cluster refuses it (e.g. the id is taken);
        ValueError (``PackageError``) for a working_dir that does not exist
        or is over the size limit, before anything is uploaded.
        """
        runtime_env, uploads = packages.pack_runtime_env(runtime_env) if runtime_env else ({}, {})
        packages.upload_packages(uploads, self.package_exists, self.upload_package)
        body: dict[str, Any] = {"entrypoint": entrypoint, "runtime_env": runtime_env,
                                "metadata": metadata or {}}
        sid = submission_id or job_id
        if sid is not None:
            body["submission_id"] = common.validate_submission_id(sid)
        for key, value in (("entrypoint_num_cpus", entrypoint_num_cpus), ("entrypoint_num_gpus", entrypoint_num_gpus),
                           ("entrypoint_resources", entrypoint_resources)):
            if value is not None:
                body[key] = value
        return str(self._request("POST", "/api/jobs/", body)["submission_id"])

    def get_job_info(self, job_id: str) -> JobDetails:
        """The job's details; RuntimeError if there is no such job."""
        return JobDetails.from_json(self._request("GET", self._path(job_id)))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        return [JobDetails.from_json(row) for row in self._request("GET", "/api/jobs/")]

    def stop_job(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL); False if it had already ended."""
        return bool(self._request("POST", self._path(job_id, "/stop"))["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Forget a finished job and its log; RuntimeError while it still runs."""
        return bool(self._request("DELETE", self._path(job_id))["deleted"])

    def get_job_logs(self, job_id: str) -> str:
        return str(self._request("GET", self._path(job_id, "/logs"))["logs"])

    def iter_job_logs(self, job_id: str, wait_ms: int = TAIL_WAIT_MS) -> Iterator[str]:
        """Blocking form of ``tail_job_logs``: chunks of the log as they are written, until the job ends."""
        offset = 0
        while True:
            reply = self._request("GET", self._path(job_id, f"/logs/tail?offset={offset}&wait_ms={wait_ms}"),
                                  timeout_s=self._timeout_s + wait_ms / 1000)
            offset = int(reply["offset"])
            if reply["logs"]:
                yield str(reply["logs"])
            if reply["done"]:
                return

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """Chunks of the job's log as they are written, until the job ends."""
        chunks = self.iter_job_logs(job_id)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, chunks, done)
            if chunk is done:
                return
            yield str(chunk)

    def wait_until_done(self, job_id: str, timeout_s: float, poll_s: float = 0.1) -> JobStatus:
        """Poll until the job ends; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.get_job_status(job_id)
            if status.is_terminal():
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {status} after {timeout_s} s")
            time.sleep(poll_s)

    def upload_package(self, protocol: str, name: str, data: bytes) -> None:
        """Store a package made by ``nbray.runtime_env.packaging`` (name ``_nbray_pkg_<hash>.zip``)."""
        self._request("PUT", f"/api/packages/{protocol}/{name}", raw=data,
                      timeout_s=self._timeout_s + len(data) / UPLOAD_MIN_BYTES_PER_S)

    def package_exists(self, protocol: str, name: str) -> bool:
        try:
            self._request("GET", f"/api/packages/{protocol}/{name}")
        except RuntimeError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise
        return True
