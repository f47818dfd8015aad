"""Typed, bytes-backed identifiers.

Ids carry their lineage the way Ray's do, so any id can be traced back to
the job (and task) that made it:

    JobID            4 bytes   counter assigned by the GCS
    ActorID         16 bytes   12 unique + JobID
    TaskID          24 bytes    8 unique + ActorID (nil actor for normal tasks)
    ObjectID        28 bytes   TaskID + 4-byte index (returns 1..n; puts have
                               the top bit set)
    PlacementGroupID 18 bytes  14 unique + JobID
    NodeID, WorkerID, UniqueID 28 random bytes

The hot paths pass raw ``bytes`` around; these classes wrap them at the
public API and in logs.
"""

from __future__ import annotations

import os
import random
import struct
from typing import ClassVar, TypeVar

_T = TypeVar("_T", bound="BaseID")

JOB_ID_SIZE = 4
ACTOR_ID_SIZE = 16
TASK_ID_SIZE = 24
OBJECT_ID_SIZE = 28
UNIQUE_ID_SIZE = 28
PLACEMENT_GROUP_ID_SIZE = 18
PUT_INDEX_FLAG = 0x80000000


class BaseID:
    """An immutable id of a fixed number of bytes."""

    SIZE: ClassVar[int] = UNIQUE_ID_SIZE
    __slots__ = ("_bin",)

    def __init__(self, binary: bytes) -> None:
        if len(binary) != self.SIZE:
            raise ValueError(
                f"{type(self).__name__} takes {self.SIZE} bytes, got {len(binary)}"
            )
        self._bin = bytes(binary)

    @classmethod
    def from_random(cls: type[_T]) -> _T:
        return cls(os.urandom(cls.SIZE))

    @classmethod
    def from_hex(cls: type[_T], hex_id: str | bytes) -> _T:
        if isinstance(hex_id, bytes):
            hex_id = hex_id.decode()
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def nil(cls: type[_T]) -> _T:
        return cls(b"\xff" * cls.SIZE)

    @classmethod
    def size(cls) -> int:
        return cls.SIZE

    def binary(self) -> bytes:
        return self._bin

    def hex(self) -> str:
        return self._bin.hex()

    def is_nil(self) -> bool:
        return self._bin == b"\xff" * self.SIZE

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._bin == self._bin  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._bin)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    def __str__(self) -> str:
        return self.hex()

    def __reduce__(self) -> tuple[type, tuple[bytes]]:
        return type(self), (self._bin,)


class UniqueID(BaseID):
    SIZE = UNIQUE_ID_SIZE


class NodeID(BaseID):
    SIZE = UNIQUE_ID_SIZE


class WorkerID(BaseID):
    SIZE = UNIQUE_ID_SIZE


class FunctionID(BaseID):
    SIZE = UNIQUE_ID_SIZE


class ActorClassID(BaseID):
    SIZE = UNIQUE_ID_SIZE


class JobID(BaseID):
    SIZE = JOB_ID_SIZE

    @classmethod
    def from_int(cls, value: int) -> JobID:
        return cls(struct.pack(">I", value))

    def int(self) -> int:
        return int(struct.unpack(">I", self._bin)[0])


class ActorID(BaseID):
    SIZE = ACTOR_ID_SIZE

    @classmethod
    def of(cls, job_id: bytes) -> ActorID:
        return cls(os.urandom(ACTOR_ID_SIZE - JOB_ID_SIZE) + job_id)

    def job_id(self) -> JobID:
        return JobID(self._bin[-JOB_ID_SIZE:])


class TaskID(BaseID):
    SIZE = TASK_ID_SIZE

    def actor_id(self) -> ActorID:
        return ActorID(self._bin[TASK_ID_SIZE - ACTOR_ID_SIZE :])

    def job_id(self) -> JobID:
        return JobID(self._bin[-JOB_ID_SIZE:])


class ObjectID(BaseID):
    SIZE = OBJECT_ID_SIZE

    def task_id(self) -> TaskID:
        return TaskID(self._bin[:TASK_ID_SIZE])

    def job_id(self) -> JobID:
        return JobID(self._bin[TASK_ID_SIZE - JOB_ID_SIZE : TASK_ID_SIZE])

    def index(self) -> int:
        return int(struct.unpack(">I", self._bin[TASK_ID_SIZE:])[0])

    def is_put(self) -> bool:
        return bool(self.index() & PUT_INDEX_FLAG)


class PlacementGroupID(BaseID):
    SIZE = PLACEMENT_GROUP_ID_SIZE

    @classmethod
    def of(cls, job_id: bytes) -> PlacementGroupID:
        return cls(os.urandom(PLACEMENT_GROUP_ID_SIZE - JOB_ID_SIZE) + job_id)


# ---- raw-bytes helpers used on hot paths -------------------------------------

NIL_ACTOR_UNIQUE = b"\xff" * (ACTOR_ID_SIZE - JOB_ID_SIZE)
_pack_index = struct.Struct(">I").pack


def nil_actor_id(job_id: bytes) -> bytes:
    """The actor id normal tasks of a job carry (no actor)."""
    return NIL_ACTOR_UNIQUE + job_id


# Task ids come from a private generator seeded from the OS: os.urandom
# releases the GIL, and on a submitting thread that lets the I/O thread take
# it, so every task paid a thread switch. Reseeded in forked children (the
# worker factory forks), and unaffected by user code calling random.seed().
_task_rng = random.Random(os.urandom(32))
_task_bits = _task_rng.getrandbits
os.register_at_fork(after_in_child=lambda: _task_rng.seed(os.urandom(32)))


def new_task_id(actor_id: bytes) -> bytes:
    """A fresh task id under `actor_id` (use nil_actor_id for normal tasks)."""
    return _task_bits(64).to_bytes(TASK_ID_SIZE - ACTOR_ID_SIZE, "little") + actor_id


def driver_task_id(job_id: bytes) -> bytes:
    """The fixed id of a driver's own (root) task."""
    return b"\x00" * (TASK_ID_SIZE - ACTOR_ID_SIZE) + nil_actor_id(job_id)


def return_object_id(task_id: bytes, index: int) -> bytes:
    """Id of the `index`-th (1-based) return object of a task."""
    return task_id + _pack_index(index)


def put_object_id(task_id: bytes, put_index: int) -> bytes:
    """Id of the `put_index`-th object put by a task."""
    return task_id + _pack_index(PUT_INDEX_FLAG | put_index)


def task_id_of(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_SIZE]


def job_id_of(any_id: bytes) -> bytes:
    """Job id embedded in an actor, task or object id."""
    if len(any_id) == OBJECT_ID_SIZE:
        return any_id[TASK_ID_SIZE - JOB_ID_SIZE : TASK_ID_SIZE]
    return any_id[-JOB_ID_SIZE:]


def actor_id_of_task(task_id: bytes) -> bytes:
    return task_id[TASK_ID_SIZE - ACTOR_ID_SIZE :]


def is_put_object(object_id: bytes) -> bool:
    return bool(object_id[TASK_ID_SIZE] & 0x80)


def object_index(object_id: bytes) -> int:
    return int(struct.unpack(">I", object_id[TASK_ID_SIZE:])[0]) & ~PUT_INDEX_FLAG
