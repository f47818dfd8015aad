"""Ray's gRPC messages in protobuf wire format, built and read by hand (Jupyter server process).

The panel's Ray backend makes a handful of calls to Ray's GCS and core
workers (Kill, Cancel and the address lookups Cancel needs). Only grpcio is
needed for them: the few messages are encoded here from their field numbers
in Ray 2.60's ``.proto`` files, so the extension neither imports Ray nor
ships generated code for it. No I/O; tested on bytes.

Field numbers (``src/ray/protobuf``):

    common.proto       Address {node_id = 1, ip_address = 2, port = 3, worker_id = 4}
    gcs.proto          GcsStatus {code = 1, message = 2}
                       JobTableData {job_id = 1, is_dead = 2, driver_address = 12}
                       WorkerTableData {is_alive = 1, worker_address = 2}
    gcs_service.proto  KillActorViaGcsRequest {actor_id = 1, force_kill = 2, no_restart = 3}
                       GetWorkerInfoRequest {worker_id = 1}
                       GetWorkerInfoReply {status = 1, worker_table_data = 2}
                       GetAllJobInfoRequest {limit = 1, job_or_submission_id = 2,
                                             skip_submission_job_info_field = 3, skip_is_running_tasks_field = 4}
                       GetAllJobInfoReply {status = 1, job_info_list = 2}
    core_worker.proto  RequestOwnerToCancelTaskRequest {remote_object_id = 1, force_kill = 2, recursive = 3}
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TASK_ID_BYTES = 24      # Ray 2.x: 8 unique bytes + the ActorID (12 + the 4-byte JobID)
WORKER_ID_BYTES = 28
RETURN_INDEX_BYTES = 4  # an ObjectID is its TaskID + the return index, little-endian

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

Fields = dict[int, list["int | bytes"]]


class WireError(ValueError):
    """Bytes that are not a protobuf message of the expected shape."""


@dataclass(frozen=True)
class WorkerAddress:
    """Where a Ray core worker's gRPC server listens."""

    ip_address: str
    port: int
    worker_id: bytes

    @property
    def target(self) -> str:
        return f"{self.ip_address}:{self.port}"


# ---- encoding -----------------------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"negative varint {value}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | WIRE_LEN) + varint(len(value)) + value


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | WIRE_VARINT) + varint(value)


def field_bool(number: int, value: bool) -> bytes:
    """Proto3 leaves false out."""
    return field_varint(number, 1) if value else b""


# ---- decoding -----------------------------------------------------------------------------------------------------


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def parse(data: bytes) -> Fields:
    """``{field number: [values]}``: ints for varint and fixed fields, bytes for length-delimited ones."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes is over {MAX_MESSAGE_BYTES}")
    out: Fields = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == WIRE_VARINT:
            value, i = read_varint(data, i)
        elif wire == WIRE_LEN:
            n, i = read_varint(data, i)
            if i + n > len(data):
                raise WireError("length-delimited field runs past the end")
            value, i = data[i:i + n], i + n
        elif wire in (WIRE_I64, WIRE_I32):
            n = 8 if wire == WIRE_I64 else 4
            if i + n > len(data):
                raise WireError("fixed field runs past the end")
            value, i = int.from_bytes(data[i:i + n], "little"), i + n
        else:
            raise WireError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def first_bytes(fields: Fields, number: int) -> bytes:
    values = [v for v in fields.get(number, []) if isinstance(v, bytes)]
    return values[-1] if values else b""


def first_int(fields: Fields, number: int) -> int:
    values = [v for v in fields.get(number, []) if isinstance(v, int)]
    return values[-1] if values else 0


def gcs_status(reply: bytes) -> tuple[int, str]:
    """(code, message) of the ``GcsStatus status = 1`` every GCS reply starts with; (0, "") when absent."""
    status = parse(first_bytes(parse(reply), 1))
    return first_int(status, 1), first_bytes(status, 2).decode(errors="replace")


def address(data: bytes) -> WorkerAddress:
    """A ``ray.rpc.Address``; WireError when it names no reachable port."""
    fields = parse(data)
    ip, port = first_bytes(fields, 2).decode(errors="replace"), first_int(fields, 3)
    if not ip or not 0 < port < 65536:
        raise WireError(f"the address has no ip and port ({ip!r}, {port})")
    return WorkerAddress(ip_address=ip, port=port, worker_id=first_bytes(fields, 4))


# ---- the messages -------------------------------------------------------------------------------------------------


def kill_actor_request(actor_id: bytes, force_kill: bool = True, no_restart: bool = True) -> bytes:
    """``KillActorViaGcsRequest``."""
    if not 0 < len(actor_id) < 128:
        raise ValueError(f"bad actor id length {len(actor_id)}")
    return field_bytes(1, actor_id) + field_bool(2, force_kill) + field_bool(3, no_restart)


def return_object_id(task_id: bytes, index: int = 1) -> bytes:
    """The ObjectID of a task's return ``index`` (Ray numbers returns from 1)."""
    if len(task_id) != TASK_ID_BYTES:
        raise ValueError(f"a Ray task id has {TASK_ID_BYTES} bytes, not {len(task_id)}")
    return task_id + index.to_bytes(RETURN_INDEX_BYTES, "little")


def cancel_request(task_id: bytes, force_kill: bool, recursive: bool) -> bytes:
    """``RequestOwnerToCancelTaskRequest``: the owner finds the task by the TaskID inside the object id."""
    return field_bytes(1, return_object_id(task_id)) + field_bool(2, force_kill) + field_bool(3, recursive)


def worker_info_request(worker_id: bytes) -> bytes:
    """``GetWorkerInfoRequest``."""
    if len(worker_id) != WORKER_ID_BYTES:
        raise ValueError(f"a Ray worker id has {WORKER_ID_BYTES} bytes, not {len(worker_id)}")
    return field_bytes(1, worker_id)


def job_info_request(job_id_hex: str) -> bytes:
    """``GetAllJobInfoRequest`` for one job, without the fields that cost the GCS extra calls."""
    return (field_varint(1, 1) + field_bytes(2, job_id_hex.encode()) + field_bool(3, True)
            + field_bool(4, True))


def worker_address_of_reply(reply: bytes) -> tuple[WorkerAddress, bool]:
    """(address, alive) from a ``GetWorkerInfoReply``; WireError when it names no worker."""
    data = first_bytes(parse(reply), 2)
    if not data:
        raise WireError("the GCS knows no such worker")
    worker = parse(data)
    return address(first_bytes(worker, 2)), bool(first_int(worker, 1))


def driver_address_of_reply(reply: bytes, job_id: bytes) -> tuple[WorkerAddress, bool]:
    """(driver address, job dead) of ``job_id`` in a ``GetAllJobInfoReply``; WireError when absent."""
    for data in parse(reply).get(2, []):
        if not isinstance(data, bytes):
            continue
        job = parse(data)
        if first_bytes(job, 1) == job_id:
            return address(first_bytes(job, 12)), bool(first_int(job, 2))
    raise WireError(f"the GCS knows no job {job_id.hex()}")
