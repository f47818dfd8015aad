"""Kill and Cancel on a Ray 2.x cluster, over Ray's own gRPC services (Jupyter server process).

Ray's dashboard reads but does not act, so the panel's two actions go where
Ray's API sends them:

* Kill: ``ActorInfoGcsService.KillActorViaGcs`` on the GCS, as ``ray.kill``.
* Cancel: ``CoreWorkerService.RequestOwnerToCancelTask`` on the core worker
  that owns the task, as ``ray.cancel`` does when the caller is not the
  owner. The owner is whoever submitted the task: the job's driver (its
  address is in the GCS job table) when the task's parent is the driver,
  else the worker that ran the parent task (its address is in the GCS
  worker table). The owner then cancels as for its own ``ray.cancel``:
  a queued task is dropped, a running one is interrupted (or its worker
  killed with ``force``), and ``recursive`` reaches the tasks it submitted.

Calls are blocking gRPC (grpcio, the ``nbray[ray-panel]`` extra) with the
token as ``authorization: Bearer`` metadata when one is configured; run
them in an executor. Every failure is a ``RayUnavailable`` or
``RayActionRefused`` with a message for the panel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from nbray.jupyter.server_extension import ray_wire

RAY_GRPC_TIMEOUT_S = 10.0
KILL_METHOD = "/ray.rpc.ActorInfoGcsService/KillActorViaGcs"
CANCEL_METHOD = "/ray.rpc.CoreWorkerService/RequestOwnerToCancelTask"
WORKER_INFO_METHOD = "/ray.rpc.WorkerInfoGcsService/GetWorkerInfo"
JOB_INFO_METHOD = "/ray.rpc.JobInfoGcsService/GetAllJobInfo"
# A driver's task id is 20 bytes of 0xff followed by its 4-byte job id.
DRIVER_TASK_PREFIX = "ff" * 20
TERMINAL_TASK_STATES = frozenset({"FINISHED", "FAILED"})


class RayUnavailable(ConnectionError):
    """The Ray dashboard, GCS or a core worker could not be reached or refused the token."""


class RayActionRefused(ValueError):
    """Ray cannot do what was asked (a force cancel of an actor task, an owner that has exited)."""


class RaySettingsLike(Protocol):
    gcs_address: str
    token: str


def _grpc() -> Any:
    try:
        import grpc
    except ImportError:
        raise RayUnavailable("Kill and Cancel on Ray need grpcio in the Jupyter server's environment: "
                             "pip install 'nbray[ray-panel]'") from None
    return grpc


def call(settings: RaySettingsLike, target: str, method: str, request: bytes, what: str) -> bytes:
    """One unary call with raw bytes in and out; RayUnavailable naming ``what`` when it fails."""
    grpc = _grpc()
    metadata = [("authorization", f"Bearer {settings.token}")] if settings.token else []
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            reply: bytes = stub(request, timeout=RAY_GRPC_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise RayUnavailable(f"{what} at {target} refused the request: set RAY_AUTH_TOKEN for the "
                                     f"Jupyter server ({detail})") from None
            raise RayUnavailable(f"{what} at {target} did not answer: {code.name if code else ''} {detail}") from None
    return reply


def kill_actor(settings: RaySettingsLike, actor_id: bytes) -> None:
    """Kill without restart through the GCS, as ``ray.kill`` does."""
    reply = call(settings, settings.gcs_address, KILL_METHOD, ray_wire.kill_actor_request(actor_id), "the Ray GCS")
    code, message = ray_wire.gcs_status(reply)
    if code != 0:
        raise RayUnavailable(f"the Ray GCS refused to kill actor {actor_id.hex()}: {message or code}")


# ---- cancel -------------------------------------------------------------------------------------------------------


def owner_of(task: Mapping[str, Any]) -> tuple[str, str]:
    """Who submitted a task, from its state-API row: ``("driver", job_id)`` or ``("task", parent_task_id)``.

    Raises RayActionRefused when the row names no parent.
    """
    parent = str(task.get("parent_task_id") or "")
    if parent.startswith(DRIVER_TASK_PREFIX):
        return "driver", str(task.get("job_id") or parent[len(DRIVER_TASK_PREFIX):])
    if not parent:
        raise RayActionRefused(f"Ray does not say who submitted task {task.get('task_id')}, so no owner can "
                               "cancel it")
    return "task", parent


def check_cancellable(task: Mapping[str, Any], force: bool) -> bool:
    """Whether a cancel request is worth sending (False: the task already ended).

    Raises RayActionRefused for what ``ray.cancel`` refuses: a force
    cancel of an actor task (Kill the actor instead).
    """
    if force and str(task.get("type") or "") in ("ACTOR_TASK", "ACTOR_CREATION_TASK"):
        raise RayActionRefused("Ray cannot force-cancel an actor task (ray.cancel refuses force=True for "
                               "them); cancel without force, or Kill the actor")
    return str(task.get("state")) not in TERMINAL_TASK_STATES


def worker_address(settings: RaySettingsLike, worker_id_hex: str) -> ray_wire.WorkerAddress:
    """The gRPC address of a live Ray worker, from the GCS worker table."""
    try:
        request = ray_wire.worker_info_request(bytes.fromhex(worker_id_hex))
    except ValueError as exc:
        raise RayActionRefused(f"not a Ray worker id: {worker_id_hex!r} ({exc})") from None
    reply = call(settings, settings.gcs_address, WORKER_INFO_METHOD, request, "the Ray GCS")
    try:
        address, alive = ray_wire.worker_address_of_reply(reply)
    except ray_wire.WireError as exc:
        raise RayActionRefused(f"the owner of the task (worker {worker_id_hex}) is not known to the GCS: "
                               f"{exc}") from None
    if not alive:
        raise RayActionRefused(f"the owner of the task (worker {worker_id_hex}) has exited; Ray has "
                               "failed its tasks already")
    return address


def driver_address(settings: RaySettingsLike, job_id_hex: str) -> ray_wire.WorkerAddress:
    """The gRPC address of a running job's driver, from the GCS job table."""
    reply = call(settings, settings.gcs_address, JOB_INFO_METHOD, ray_wire.job_info_request(job_id_hex),
                 "the Ray GCS")
    try:
        address, dead = ray_wire.driver_address_of_reply(reply, bytes.fromhex(job_id_hex))
    except (ray_wire.WireError, ValueError) as exc:
        raise RayActionRefused(f"the driver of job {job_id_hex} is not known to the GCS: {exc}") from None
    if dead:
        raise RayActionRefused(f"the driver of job {job_id_hex} has exited; Ray has failed its tasks already")
    return address


def request_cancel(settings: RaySettingsLike, owner: ray_wire.WorkerAddress, task_id_hex: str, force: bool,
                   recursive: bool) -> None:
    """Ask the owner to cancel, as a non-owner's ``ray.cancel`` does. The reply carries nothing."""
    request = ray_wire.cancel_request(bytes.fromhex(task_id_hex), force, recursive)
    call(settings, owner.target, CANCEL_METHOD, request, "the task's owner (a Ray core worker)")
