"""Submitted jobs: records, supervisors, logs, packages (dashboard process).

Records are read and written through the dashboard's GCS connection
(``ClusterSource.gcs_call``, KV namespace ``common.JOB_KV_NAMESPACE``).
Creating and stopping supervisor actors needs a driver: on the first
submission or stop, this process connects to the cluster as one (in the
supervisors' private namespace) on a dedicated thread, which also makes
every later actor call, so the HTTP loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from typing import Any

from nbray.dashboard.source import ClusterSource
from nbray.job_submission import common
from nbray.job_submission.common import JobDetails, JobStatus
from nbray.protocol import gcs_pb2
from nbray.runtime_env import package_refs, packaging

logger = logging.getLogger(__name__)

MAX_LOG_READ_BYTES = 1024 * 1024
MAX_PACKAGE_BYTES = common.MAX_PACKAGE_BYTES
TAIL_POLL_S = 0.1
ACTOR_CALL_TIMEOUT_S = 30.0


class JobNotFound(LookupError):
    """No job has this submission id."""


class JobConflict(ValueError):
    """The request does not fit the job's state (id taken, delete of a running job)."""


class JobManager:
    def __init__(self, source: ClusterSource, token: bytes, session_dir: str) -> None:
        self._source = source
        self._token = token
        self._session_dir = session_dir
        # One thread owns the driver connection and every actor call.
        self._driver_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbray-jobs-driver")
        self._connected = False

    def close(self) -> None:
        self._driver_thread.shutdown(wait=False, cancel_futures=True)

    # ---- records ------------------------------------------------------------------------------------------

    async def _get(self, submission_id: str) -> JobDetails:
        common.validate_submission_id(submission_id)
        reply = await self._source.gcs_call("KVGet", gcs_pb2.KVGetRequest(ns=common.JOB_KV_NAMESPACE,
                                                                          key=submission_id.encode()))
        if not reply.found:
            raise JobNotFound(f"no job with submission id {submission_id}")
        return common.decode(reply.value)

    async def _put(self, details: JobDetails, overwrite: bool = True) -> bool:
        reply = await self._source.gcs_call("KVPut", gcs_pb2.KVPutRequest(
            ns=common.JOB_KV_NAMESPACE, key=details.submission_id.encode(), value=common.encode(details),
            overwrite=overwrite))
        return bool(reply.added)

    async def _advance(self, submission_id: str, status: JobStatus, **fields: Any) -> bool:
        try:
            details = common.advance(await self._get(submission_id), status, **fields)
        except common.InvalidTransition:
            return False
        await self._put(details)
        return True

    async def get(self, submission_id: str) -> JobDetails:
        return await self._get(submission_id)

    async def list(self) -> list[JobDetails]:
        keys = await self._source.gcs_call("KVKeys", gcs_pb2.KVKeysRequest(ns=common.JOB_KV_NAMESPACE, prefix=b""))
        out = []
        for key in keys.keys:
            try:
                out.append(await self._get(key.decode()))
            except (JobNotFound, ValueError):
                continue  # deleted meanwhile, or not a record
        return sorted(out, key=lambda d: (d.start_time or 0, d.submission_id))

    # ---- submit / stop / delete ---------------------------------------------------------------------------

    async def submit(self, body: Any) -> str:
        req = common.validate_request(body)
        sid = req["submission_id"]
        details = JobDetails(entrypoint=req["entrypoint"], submission_id=sid, metadata=req["metadata"],
                             runtime_env=req["runtime_env"], start_time=int(time.time() * 1000),
                             entrypoint_num_cpus=req["entrypoint_num_cpus"],
                             entrypoint_num_gpus=req["entrypoint_num_gpus"],
                             entrypoint_resources=req["entrypoint_resources"],
                             message="Job is waiting for its supervisor to start.")
        if not await self._put(details, overwrite=False):
            raise JobConflict(f"a job with submission id {sid} already exists")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._driver_thread, self._start_supervisor, req, loop)
        except Exception as exc:  # any failure to create the actor ends the job, with the reason
            await self._advance(sid, JobStatus.FAILED, end_time=int(time.time() * 1000),
                                message=f"could not start the job supervisor: {type(exc).__name__}: {exc}",
                                error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE")
            raise
        return str(sid)

    def _connect(self) -> None:
        import nbray

        if not self._connected:
            nbray.init(address=self._source.gcs_address, namespace=common.SUPERVISOR_NAMESPACE,
                       _auth_token=self._token.hex(), configure_logging=False, log_to_driver=False)
            self._connected = True

    def _start_supervisor(self, req: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        import nbray
        from nbray.api import _worker_core
        from nbray.job_submission.supervisor import JobSupervisor
        from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._connect()
        sid = req["submission_id"]
        options: dict[str, Any] = {"name": common.supervisor_name(sid), "namespace": common.SUPERVISOR_NAMESPACE,
                                   "lifetime": "detached", "max_restarts": 0,
                                   "num_cpus": req["entrypoint_num_cpus"] or 0}
        if req["entrypoint_num_gpus"]:
            options["num_gpus"] = req["entrypoint_num_gpus"]
        if req["entrypoint_resources"]:
            options["resources"] = req["entrypoint_resources"]
        if req["runtime_env"]:
            options["runtime_env"] = req["runtime_env"]
        on_head = not (req["entrypoint_num_cpus"] or req["entrypoint_num_gpus"] or req["entrypoint_resources"])
        if on_head:
            # No resources asked for: run on the head, where this process reads the log.
            core = _worker_core()
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=core.node_id.hex(), soft=False)
        env_vars = dict((req["runtime_env"] or {}).get("env_vars") or {})
        with package_refs.not_held_by_this_job():  # the detached supervisor holds them, for as long as it runs
            actor = nbray.remote(JobSupervisor).options(**options).remote(sid, req["entrypoint"], env_vars,
                                                                          req["runtime_env"], not on_head)
        started = actor.start.remote()

        def wait_started() -> None:
            try:
                nbray.get(started)
            except Exception as exc:  # the supervisor could not start the job: record why
                message = f"the job supervisor failed: {type(exc).__name__}: {exc}"
                asyncio.run_coroutine_threadsafe(self._advance(
                    sid, JobStatus.FAILED, end_time=int(time.time() * 1000), message=message[:4000],
                    error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE"), loop)

        threading.Thread(target=wait_started, name=f"nbray-job-start-{sid}", daemon=True).start()

    async def stop(self, submission_id: str) -> bool:
        details = await self._get(submission_id)
        if details.status.is_terminal():
            return False
        loop = asyncio.get_running_loop()
        stopped = await loop.run_in_executor(self._driver_thread, self._stop_supervisor, details)
        if stopped:
            return True
        # No live supervisor answered: end the record here. The supervisor may
        # have taken the stop and exited before its answer left (it ends
        # itself once the job's process is gone): then the record says so.
        if await self._advance(submission_id, JobStatus.STOPPED, end_time=int(time.time() * 1000),
                               message="Job was intentionally stopped."):
            return True
        return (await self._get(submission_id)).status == JobStatus.STOPPED

    def _stop_supervisor(self, details: JobDetails) -> bool:
        """True when the supervisor took the stop; False when there is none (or it had not started the job)."""
        import nbray
        from nbray.exceptions import RayError

        self._connect()
        try:
            actor = nbray.get_actor(common.supervisor_name(details.submission_id), common.SUPERVISOR_NAMESPACE)
        except ValueError:
            return False
        if details.status == JobStatus.PENDING:
            nbray.kill(actor)
            return False
        try:
            return bool(nbray.get(actor.stop.remote(), timeout=ACTOR_CALL_TIMEOUT_S))
        except RayError:
            return False

    async def delete(self, submission_id: str) -> bool:
        details = await self._get(submission_id)
        if not details.status.is_terminal():
            raise JobConflict(f"job {submission_id} is {details.status}; stop it before deleting it")
        for ns in (common.JOB_KV_NAMESPACE, common.JOB_LOG_KV_NAMESPACE):
            await self._source.gcs_call("KVDel", gcs_pb2.KVDelRequest(ns=ns, key=submission_id.encode()))
        path = details.log_path
        if path and self._is_local_log(path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return True

    # ---- logs ---------------------------------------------------------------------------------------------

    def _is_local_log(self, path: str) -> bool:
        logs_dir = os.path.join(os.path.realpath(self._session_dir), "logs")
        return os.path.dirname(os.path.realpath(path)) == logs_dir

    async def read_logs(self, submission_id: str, offset: int = 0,
                        max_bytes: int = MAX_LOG_READ_BYTES) -> tuple[bytes, JobDetails]:
        details = await self._get(submission_id)
        path = details.log_path
        if not path:
            return b"", details
        if not self._is_local_log(path):
            return await self._read_remote_log(details, offset, max_bytes), details
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes), details
        except FileNotFoundError:
            return b"", details

    async def _read_remote_log(self, details: JobDetails, offset: int, max_bytes: int) -> bytes:
        """A log on another node: from its supervisor while the job runs, then from the copy it left."""
        if not details.status.is_terminal():
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(self._driver_thread, self._read_from_supervisor,
                                              details.submission_id, offset, max_bytes)
            if data is not None:
                return data
        reply = await self._source.gcs_call("KVGet", gcs_pb2.KVGetRequest(ns=common.JOB_LOG_KV_NAMESPACE,
                                                                          key=details.submission_id.encode()))
        return bytes(reply.value[offset:offset + max_bytes]) if reply.found else b""

    def _read_from_supervisor(self, submission_id: str, offset: int, max_bytes: int) -> bytes | None:
        """None when there is no live supervisor to ask."""
        import nbray
        from nbray.exceptions import RayError

        self._connect()
        try:
            actor = nbray.get_actor(common.supervisor_name(submission_id), common.SUPERVISOR_NAMESPACE)
            return bytes(nbray.get(actor.read_logs.remote(offset, max_bytes), timeout=ACTOR_CALL_TIMEOUT_S))
        except (ValueError, RayError):
            return None

    async def tail(self, submission_id: str, offset: int, wait_s: float) -> tuple[bytes, bool]:
        """New log bytes from ``offset``, waiting up to ``wait_s`` for some; and whether the log is complete."""
        deadline = time.monotonic() + wait_s
        while True:
            data, details = await self.read_logs(submission_id, offset)
            done = details.status.is_terminal()
            if data or done or time.monotonic() >= deadline:
                if done and len(data) == MAX_LOG_READ_BYTES:
                    done = False  # more to read
                return data, done
            await asyncio.sleep(TAIL_POLL_S)

    # ---- packages -----------------------------------------------------------------------------------------

    async def package_exists(self, protocol: str, name: str) -> bool:
        uri = common.validate_package(protocol, name)
        reply = await self._source.gcs_call("KVGet", packaging.kv_meta_request(uri))
        return bool(reply.found)

    async def put_package(self, protocol: str, name: str, data: bytes) -> None:
        """Store an uploaded package where drivers store theirs (packaging.store_package),
        so the node agents fetch it by the same URI. Only content-addressed names
        are taken, and the content must match: PackageError (a ValueError) otherwise."""
        uri = common.validate_package(protocol, name)
        requests = packaging.kv_put_requests(uri, data)
        if await self.package_exists(protocol, name):
            return
        for request in requests:
            await self._source.gcs_call("KVPut", request)
