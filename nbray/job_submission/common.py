"""Job records of the Jobs API: statuses, ids, and how a record is stored (any process).

Pure logic, no I/O. A job's record lives in the GCS internal key-value
store (namespace ``JOB_KV_NAMESPACE``, key ``<submission id>``) as JSON,
so it survives a GCS restart like every other KV entry. Three parties
write it: the dashboard (PENDING at submission, FAILED when the
supervisor cannot start, STOPPED when stopping a job whose supervisor
is gone), and the job's supervisor actor (RUNNING, then the end state).
``advance`` decides every change, so a record that reached an end state
is never changed again, whoever writes last.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import secrets
from typing import Any

JOB_KV_NAMESPACE = "job_submission"
# Logs of jobs that ran off the dashboard's node, copied there when they end.
JOB_LOG_KV_NAMESPACE = "job_submission_logs"
MAX_LOG_COPY_BYTES = 1024 * 1024
SUPERVISOR_NAMESPACE = "_nbray_job_supervisors"
SUPERVISOR_NAME_PREFIX = "_nbray_job_supervisor_"
SUBMISSION_ID_PREFIX = "nbrayjob_"
SUBMISSION_ENV = "NBRAY_JOB_SUBMISSION_ID"
# Set for a job's entrypoint: the job's runtime_env (JSON, packages named by
# URI), which ``nbray.init`` in that process takes as the job-level default.
JOB_RUNTIME_ENV_VAR = "NBRAY_JOB_RUNTIME_ENV"
# Largest package (working_dir or py_modules zip) the dashboard takes in one upload.
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
MAX_ID_CHARS = 64
MAX_ENTRYPOINT_CHARS = 16 * 1024
MAX_METADATA_BYTES = 16 * 1024
_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
_PACKAGE_NAME_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
PACKAGE_PROTOCOLS = frozenset({"gcs"})


class JobStatus(str, enum.Enum):
    """Ray's job statuses; ``str`` so they compare and print as their names."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        """True for the statuses a job never leaves (STOPPED, SUCCEEDED, FAILED)."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED})
_NEXT: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING}) | _TERMINAL,
    JobStatus.RUNNING: _TERMINAL,
    JobStatus.STOPPED: frozenset(),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class JobType(str, enum.Enum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


class InvalidJobId(ValueError):
    """A submission id or package name that is not allowed (bad characters, too long)."""


class InvalidTransition(ValueError):
    """A status change the job's life does not allow (e.g. out of an end state)."""


@dataclasses.dataclass
class JobDetails:
    """One submitted job, with Ray's field names (``JobDetails`` of ``ray.job_submission``)."""

    entrypoint: str
    submission_id: str
    status: JobStatus = JobStatus.PENDING
    type: JobType = JobType.SUBMISSION
    job_id: str | None = None
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None  # ms since the epoch
    end_time: int | None = None  # ms since the epoch
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    runtime_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    driver_info: dict[str, Any] | None = None
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict[str, float] | None = None
    log_path: str | None = None  # on the node of driver_node_id

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["type"] = self.type.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobDetails:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["status"] = JobStatus(fields.get("status", "PENDING"))
        fields["type"] = JobType(fields.get("type", "SUBMISSION"))
        return cls(**fields)


def encode(details: JobDetails) -> bytes:
    return json.dumps(details.to_json(), separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> JobDetails:
    """The record stored under a job's key; ValueError if it is not one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a job record: {exc}") from None
    if not isinstance(data, dict) or "entrypoint" not in data or "submission_id" not in data:
        raise ValueError("not a job record")
    try:
        return JobDetails.from_json(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a job record: {exc}") from None


def advance(details: JobDetails, status: JobStatus, **fields: Any) -> JobDetails:
    """A copy of ``details`` moved to ``status`` with ``fields`` set.

    Raises InvalidTransition for a change the job's life does not allow.
    """
    if status not in _NEXT[details.status]:
        raise InvalidTransition(f"job {details.submission_id} cannot go from {details.status} to {status}")
    return dataclasses.replace(details, status=status, **fields)


def new_submission_id() -> str:
    return SUBMISSION_ID_PREFIX + secrets.token_hex(8)


def validate_submission_id(value: str) -> str:
    """``value`` if it may name a job (letters, digits, ``_`` and ``-``); else InvalidJobId."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not _ID_RE.fullmatch(value):
        raise InvalidJobId(f"invalid submission id {value!r}: use 1 to {MAX_ID_CHARS} letters, digits, "
                           "'_' or '-'")
    return value


def validate_package(protocol: str, name: str) -> str:
    """The KV key of an uploaded package ``protocol://name``; InvalidJobId if either part is not allowed."""
    if protocol not in PACKAGE_PROTOCOLS:
        raise InvalidJobId(f"unknown package protocol {protocol!r}; known: {', '.join(sorted(PACKAGE_PROTOCOLS))}")
    if not 0 < len(name) <= 128 or ".." in name or not _PACKAGE_NAME_RE.fullmatch(name):
        raise InvalidJobId(f"invalid package name {name!r}")
    return f"{protocol}://{name}"


def with_job_runtime_env(explicit: dict[str, Any] | None, job_json: str | None) -> dict[str, Any] | None:
    """The runtime_env a driver started by a job runs with: the job's
    (``job_json``, from JOB_RUNTIME_ENV_VAR) as the default, the driver's
    own ``init(runtime_env=...)`` winning field by field (``spec.merge``)."""
    if not job_json:
        return explicit
    inherited = json.loads(job_json)
    if not isinstance(inherited, dict):
        raise ValueError(f"{JOB_RUNTIME_ENV_VAR} must hold a JSON object")
    from nbray.runtime_env.spec import merge

    return merge(inherited, dict(explicit)) if explicit else inherited


def supervisor_name(submission_id: str) -> str:
    return SUPERVISOR_NAME_PREFIX + submission_id


def validate_request(body: Any) -> dict[str, Any]:
    """The fields of a submission request (``POST /api/jobs/``), checked; ValueError if malformed."""
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    unknown = set(body) - {"entrypoint", "submission_id", "job_id", "runtime_env", "metadata",
                           "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise ValueError("'entrypoint' must be a non-empty shell command")
    if len(entrypoint) > MAX_ENTRYPOINT_CHARS:
        raise ValueError(f"'entrypoint' is longer than {MAX_ENTRYPOINT_CHARS} characters")
    sid = body.get("submission_id") or body.get("job_id")
    out: dict[str, Any] = {"entrypoint": entrypoint,
                           "submission_id": validate_submission_id(sid) if sid is not None else new_submission_id()}
    runtime_env = body.get("runtime_env") or {}
    if not isinstance(runtime_env, dict):
        raise ValueError("'runtime_env' must be an object")
    out["runtime_env"] = runtime_env
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError("'metadata' must map strings to strings")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValueError(f"'metadata' is larger than {MAX_METADATA_BYTES} bytes")
    out["metadata"] = metadata
    for key in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"'{key}' must be a number >= 0")
        out[key] = value
    resources = body.get("entrypoint_resources")
    if resources is not None and (not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in resources.items())):
        raise ValueError("'entrypoint_resources' must map resource names to numbers >= 0")
    out["entrypoint_resources"] = resources
    return out
