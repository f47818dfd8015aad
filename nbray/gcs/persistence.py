"""The GCS tables in storage: what is written when, and what a restart loads (GCS process).

Every change of a node, job, actor or placement group is published on its
pubsub channel; ``TableWriter`` writes each published record to storage
as it is published, so whatever subscribers are told is stored too (the
storage flushes before the turn's messages leave). The internal KV writes
through on its own (kv.py). Task events stay in memory.

``load_tables`` reads everything back when a GCS starts on storage an
earlier GCS wrote. Reconciling the loaded records with the processes that
are still alive (raylets re-registering, actors' workers) is not done here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from google.protobuf.message import DecodeError

from nbray.gcs.storage import GcsStorage, StorageCorruptedError, Table
from nbray.protocol import common_pb2, gcs_pb2

_FLAG_DETACHED = 1


def encode_actor_record(info: gcs_pb2.ActorInfo, spec: common_pb2.TaskSpec, detached: bool) -> bytes:
    """An actor's stored record: its info, its creation spec and its flags."""
    a = info.SerializeToString()
    b = spec.SerializeToString()
    flags = _FLAG_DETACHED if detached else 0
    return len(a).to_bytes(4, "big") + a + len(b).to_bytes(4, "big") + b + bytes([flags])


def decode_actor_record(data: bytes) -> tuple[gcs_pb2.ActorInfo, common_pb2.TaskSpec, bool]:
    """Inverse of ``encode_actor_record``; ValueError when ``data`` is not one."""
    view = memoryview(data)
    if len(view) < 9:
        raise ValueError("actor record too short")
    n = int.from_bytes(view[:4], "big")
    if 4 + n + 4 + 1 > len(view):
        raise ValueError("actor record truncated in its info")
    m = int.from_bytes(view[4 + n:8 + n], "big")
    if 8 + n + m + 1 != len(view):
        raise ValueError("actor record has the wrong length")
    info = gcs_pb2.ActorInfo()
    spec = common_pb2.TaskSpec()
    try:
        info.ParseFromString(bytes(view[4:4 + n]))
        spec.ParseFromString(bytes(view[8 + n:8 + n + m]))
    except DecodeError as exc:
        raise ValueError(f"actor record does not parse: {exc}") from None
    return info, spec, bool(view[8 + n + m] & _FLAG_DETACHED)


class TableWriter:
    """Writes published records to storage (the publisher calls ``on_published``)."""

    def __init__(self, storage: GcsStorage,
                 actor_spec: Callable[[bytes], tuple[common_pb2.TaskSpec, bool] | None]) -> None:
        self.storage = storage
        self._actor_spec = actor_spec

    def on_published(self, msg: gcs_pb2.PubMessage) -> None:
        channel = msg.channel
        if channel == gcs_pb2.ACTOR:
            found = self._actor_spec(msg.actor.actor_id)
            if found is not None:
                spec, detached = found
                self.storage.put(Table.ACTOR, msg.actor.actor_id, encode_actor_record(msg.actor, spec, detached))
        elif channel == gcs_pb2.NODE:
            self.storage.put(Table.NODE, msg.node.node_id, msg.node.SerializeToString())
        elif channel == gcs_pb2.JOB:
            self.storage.put(Table.JOB, msg.job.job_id, msg.job.SerializeToString())
        elif channel == gcs_pb2.PLACEMENT_GROUP:
            pg = msg.placement_group
            self.storage.put(Table.PLACEMENT_GROUP, pg.placement_group_id, pg.SerializeToString())

    def forget_placement_group(self, pg_id: bytes) -> None:
        self.storage.delete(Table.PLACEMENT_GROUP, pg_id)


@dataclasses.dataclass
class LoadedTables:
    nodes: list[gcs_pb2.NodeInfo]
    jobs: list[gcs_pb2.JobInfo]
    actors: list[tuple[gcs_pb2.ActorInfo, common_pb2.TaskSpec, bool]]
    placement_groups: list[gcs_pb2.PlacementGroupInfo]

    def counts(self) -> dict[str, int]:
        return {"nodes": len(self.nodes), "jobs": len(self.jobs), "actors": len(self.actors),
                "placement_groups": len(self.placement_groups)}


def load_tables(storage: GcsStorage) -> LoadedTables:
    """Every stored record; StorageCorruptedError names the first that does not parse."""

    def parse(table: Table, cls: type) -> list:
        out = []
        for key, value in storage.scan(table).items():
            msg = cls()
            try:
                msg.ParseFromString(value)
            except DecodeError as exc:
                raise _bad_record(storage, table, key, str(exc)) from None
            out.append(msg)
        return out

    actors = []
    for key, value in storage.scan(Table.ACTOR).items():
        try:
            actors.append(decode_actor_record(value))
        except ValueError as exc:
            raise _bad_record(storage, Table.ACTOR, key, str(exc)) from None
    return LoadedTables(nodes=parse(Table.NODE, gcs_pb2.NodeInfo), jobs=parse(Table.JOB, gcs_pb2.JobInfo),
                        actors=actors, placement_groups=parse(Table.PLACEMENT_GROUP, gcs_pb2.PlacementGroupInfo))


def _bad_record(storage: GcsStorage, table: Table, key: bytes, why: str) -> StorageCorruptedError:
    return StorageCorruptedError(f"GCS storage {storage.location}: the {table.value} record {key.hex()} is "
                                 f"damaged ({why}); the storage was not changed")


def head_was_alive(nodes: list[gcs_pb2.NodeInfo]) -> bool:
    """Some head node is stored alive: its head stopped without unregistering (it crashed,
    or its machine went down), so a head started again there should resume the cluster."""
    return any(n.is_head and n.state == gcs_pb2.NodeInfo.ALIVE for n in nodes)


def stored_nodes(storage: GcsStorage) -> list[gcs_pb2.NodeInfo]:
    """The node table alone; StorageCorruptedError names a record that does not parse."""
    out = []
    for key, value in storage.scan(Table.NODE).items():
        node = gcs_pb2.NodeInfo()
        try:
            node.ParseFromString(value)
        except DecodeError as exc:
            raise _bad_record(storage, Table.NODE, key, str(exc)) from None
        out.append(node)
    return out


def next_job_number(jobs: list[gcs_pb2.JobInfo]) -> int:
    """The number the next job gets: one past the highest stored (job ids are 4-byte counters)."""
    return max((int.from_bytes(j.job_id, "big") for j in jobs), default=0) + 1
