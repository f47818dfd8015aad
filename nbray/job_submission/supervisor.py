"""The supervisor of one submitted job (an actor, in a worker process).

The dashboard creates one detached actor per job, named
``_nbray_job_supervisor_<id>`` in a private namespace, with the job's
runtime_env and entrypoint resources. ``start`` runs the entrypoint as a
shell command in its own process group, as a driver of the cluster
(``NBRAY_ADDRESS`` is the GCS address), with stdout and stderr appended
to ``<session dir>/logs/job-driver-<id>.log`` of the supervisor's node.
A thread waits for the process, records the end state in the GCS KV
(``common.JOB_KV_NAMESPACE``), then kills this actor: nothing of a
finished job stays behind but its record and log.

The actor runs in the job's runtime_env, so the entrypoint starts in the
unpacked working_dir with the working_dir and py_modules on PYTHONPATH,
and gets the job's runtime_env in ``common.JOB_RUNTIME_ENV_VAR``:
``nbray.init`` there makes it the default of every task the driver submits.

``stop`` sends SIGTERM to the process group, then SIGKILL to whatever is
left of it after ``JOB_STOP_WAIT_S`` (``NBRAY_JOB_STOP_WAIT_S``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from nbray.job_submission import common
from nbray.job_submission.common import JobStatus
from nbray.protocol import gcs_pb2

JOB_STOP_WAIT_S = float(os.environ.get("NBRAY_JOB_STOP_WAIT_S", "3"))
KV_TIMEOUT_S = 10.0
_POLL_S = 0.05


def log_path(session_dir: str, submission_id: str) -> str:
    return os.path.join(session_dir, "logs", f"job-driver-{submission_id}.log")


def _now_ms() -> int:
    return int(time.time() * 1000)


class JobSupervisor:
    """Runs and watches one job's entrypoint process (see module docstring)."""

    def __init__(self, submission_id: str, entrypoint: str, env_vars: dict[str, str],
                 runtime_env: dict[str, Any] | None = None, keep_log_copy: bool = False) -> None:
        from nbray.object_ref import _core
        from nbray.worker import context

        core = _core[0]
        if core is None:
            raise RuntimeError("JobSupervisor runs only as an actor")
        self._core = core
        self._id = common.validate_submission_id(submission_id)
        self._entrypoint = entrypoint
        self._env_vars = dict(env_vars)
        self._runtime_env = dict(runtime_env or {})
        # Off the dashboard's node the log goes with this actor: leave a copy in the KV at the end.
        self._keep_log_copy = keep_log_copy
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        # Thread-local in the worker: read here, on the thread running the creation task.
        self._actor_id: bytes = context.current().actor_id

    # ---- the record ---------------------------------------------------------------------------------------

    def _read(self) -> common.JobDetails:
        reply = self._core.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns=common.JOB_KV_NAMESPACE, key=self._id.encode()),
                                    KV_TIMEOUT_S)
        if not reply.found:
            raise LookupError(f"no record of job {self._id}")
        return common.decode(reply.value)

    def _advance(self, status: JobStatus, **fields: Any) -> bool:
        """Move the record to ``status``; False when it already ended (e.g. stopped meanwhile)."""
        with self._lock:
            try:
                details = common.advance(self._read(), status, **fields)
            except common.InvalidTransition:
                return False
            self._core.gcs.call("KVPut", gcs_pb2.KVPutRequest(ns=common.JOB_KV_NAMESPACE, key=self._id.encode(),
                                                              value=common.encode(details), overwrite=True),
                                KV_TIMEOUT_S)
            return True

    # ---- the process --------------------------------------------------------------------------------------

    def start(self) -> int:
        """Start the entrypoint; returns its pid. Called once, right after creation."""
        if self._proc is not None:
            return self._proc.pid
        path = log_path(self._core.session_dir, self._id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        env = dict(os.environ)
        # `python` in the entrypoint is the interpreter the cluster runs on.
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "") if bin_dir else env.get("PATH", "")
        cwd = _enter_runtime_env(env)
        env.update(self._env_vars)
        if self._runtime_env:
            env[common.JOB_RUNTIME_ENV_VAR] = json.dumps(self._runtime_env, sort_keys=True)
        env["NBRAY_ADDRESS"] = self._core.gcs_address
        env[common.SUBMISSION_ENV] = self._id
        env["NBRAY_AUTH_TOKEN"] = self._core.token.hex()
        env.pop("NBRAY_AUTH_TOKEN_PATH", None)
        with open(path, "ab", buffering=0) as log:
            try:
                self._proc = subprocess.Popen(  # noqa: S602 - the entrypoint is a shell command by definition
                    self._entrypoint, shell=True, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, cwd=cwd, start_new_session=True, close_fds=True)
            except OSError as exc:
                self._finish(JobStatus.FAILED, None, f"could not start the entrypoint: {exc}",
                             "JOB_ENTRYPOINT_COMMAND_START_ERROR")
                raise
        self._advance(JobStatus.RUNNING, start_time=_now_ms(), log_path=path,
                      driver_node_id=self._core.node_id.hex(),
                      driver_info={"pid": self._proc.pid, "node_ip_address": self._core.node_ip})
        threading.Thread(target=self._watch, name=f"nbray-job-{self._id}", daemon=True).start()
        return self._proc.pid

    def _watch(self) -> None:
        proc = self._proc
        assert proc is not None
        code = proc.wait()
        if self._stop_requested.is_set():
            self._finish(JobStatus.STOPPED, code, "Job was intentionally stopped.", None)
        elif code == 0:
            self._finish(JobStatus.SUCCEEDED, code, "Job finished successfully.", None)
        else:
            self._finish(JobStatus.FAILED, code, f"Job entrypoint command failed with exit code {code}",
                         "JOB_ENTRYPOINT_COMMAND_ERROR")

    def _finish(self, status: JobStatus, code: int | None, message: str, error_type: str | None) -> None:
        try:
            if self._keep_log_copy:
                self._save_log_copy()
            self._advance(status, end_time=_now_ms(), driver_exit_code=code, message=message, error_type=error_type)
        finally:
            self._exit_actor()

    def _save_log_copy(self) -> None:
        """The whole log into the KV (common.JOB_LOG_KV_NAMESPACE), when it is small enough."""
        data = self.read_logs(0, common.MAX_LOG_COPY_BYTES + 1)
        if len(data) > common.MAX_LOG_COPY_BYTES:
            data = data[:common.MAX_LOG_COPY_BYTES] + b"\n[log cut: the rest stayed on the job's node]\n"
        self._core.gcs.call("KVPut", gcs_pb2.KVPutRequest(ns=common.JOB_LOG_KV_NAMESPACE, key=self._id.encode(),
                                                          value=data, overwrite=True), KV_TIMEOUT_S)

    def _exit_actor(self) -> None:
        if self._actor_id:
            self._core.gcs.call("KillActor", gcs_pb2.KillActorRequest(
                actor_id=self._actor_id, force_kill=True, no_restart=True, reason="job finished"), KV_TIMEOUT_S)

    def stop(self) -> bool:
        """SIGTERM the job's process group, then SIGKILL what is left after the grace period.

        Returns False when the job had already ended.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        self._stop_requested.set()
        threading.Thread(target=self._terminate, args=(proc,), daemon=True).start()
        return True

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        pgid = proc.pid  # start_new_session: the group leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + JOB_STOP_WAIT_S
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(_POLL_S)
        _signal_group(pgid, signal.SIGKILL)

    def read_logs(self, offset: int, max_bytes: int) -> bytes:
        """Bytes of the log from ``offset`` (for a dashboard on another node)."""
        try:
            with open(log_path(self._core.session_dir, self._id), "rb") as f:
                f.seek(max(0, offset))
                return f.read(max(0, max_bytes))
        except FileNotFoundError:
            return b""


def _enter_runtime_env(env: dict[str, str]) -> str | None:
    """Make the entrypoint's environment a driver's inside the job's
    runtime_env (the supervisor's own, set up by its node): returns the
    working directory it starts in (None: the supervisor's)."""
    from nbray.runtime_env.resolve import CONTEXT_VAR, RUNTIME_ENV_VAR

    # These describe a worker's environment; the entrypoint is a driver.
    raw = env.pop(CONTEXT_VAR, None)
    env.pop(RUNTIME_ENV_VAR, None)
    if not raw:
        return None
    context = json.loads(raw)
    paths = [*(context.get("sys_path") or ()), *(context.get("site_packages") or ())]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return context.get("cwd") or None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group is gone already


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
