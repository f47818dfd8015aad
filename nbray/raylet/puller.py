"""Pulling objects from other nodes into this node's store (raylet process).

A reader on this node waits for an object that lives elsewhere. The puller
asks the object's owner where copies are, allocates the object here, and
requests it from one source raylet in chunks, at most ``window`` chunks in
flight, each received straight into the store's memory. Concurrent readers
of one object share one transfer. When the copy is sealed the owner learns
of it, so later readers here read locally. If the source dies mid-transfer
the pull starts over from another copy; while the owner has no copy (the
object is being rebuilt) the puller asks again after a delay.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.object_store.store import ObjectStore
from nbray.protocol import common_pb2, core_worker_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.pool import ConnectionPool

logger = logging.getLogger(__name__)

_LOCATIONS = method("CoreWorkerService.GetObjectLocations")
_PULL = method("RayletService.PullChunk")
_RETRY_S = 0.2


class _Pull:
    __slots__ = ("ref", "size", "offset", "next_chunk", "done_chunks", "num_chunks", "inflight", "source",
                 "started", "attempt", "tried")

    def __init__(self, ref: common_pb2.ObjectReference) -> None:
        self.ref = ref
        self.size = 0
        self.offset = -1
        self.next_chunk = 0
        self.done_chunks = 0
        self.num_chunks = 0
        self.inflight = 0
        self.source = b""
        self.started = time.monotonic()
        self.attempt = 0
        self.tried: set[bytes] = set()


class Puller:
    def __init__(
        self,
        loop: EventLoop,
        store: ObjectStore,
        pool: ConnectionPool,
        config: Config,
        node_id: bytes,
        node_address: Callable[[bytes], str | None],
        fail: Callable[[bytes, common_pb2.ErrorInfo], None],
    ) -> None:
        self.loop = loop
        self.store = store
        self.pool = pool
        self.config = config
        self.node_id = node_id
        self.node_address = node_address
        self.fail = fail
        self.pulls: dict[bytes, _Pull] = {}
        self.bytes_pulled = 0

    def fetch(self, ref: common_pb2.ObjectReference) -> None:
        """Start bringing `ref` here unless it is local or already coming."""
        oid = ref.object_id
        if oid in self.pulls or self.store.is_local(oid):
            return
        pull = _Pull(ref)
        self.pulls[oid] = pull
        self._locate(pull)

    def cancel(self, oid: bytes) -> None:
        pull = self.pulls.pop(oid, None)
        if pull is not None and pull.offset >= 0:
            self.store.abort(oid)

    # ---- where is it -----------------------------------------------------------------------

    def _locate(self, pull: _Pull) -> None:
        oid = pull.ref.object_id
        if self.pulls.get(oid) is not pull:
            return
        if time.monotonic() - pull.started > self.config.object_fetch_timeout_ms / 1000:
            self._give_up(pull, common_pb2.ErrorInfo(
                type=common_pb2.OBJECT_LOST,
                message=f"no copy of the object could be fetched within {self.config.object_fetch_timeout_ms} ms"))
            return
        owner = pull.ref.owner

        def on_conn(conn: Connection | None, error: BaseException | None) -> None:
            if conn is None:
                self._give_up(pull, common_pb2.ErrorInfo(
                    type=common_pb2.OWNER_DIED,
                    message=f"the owner of the object ({owner.host}:{owner.port}) is unreachable: {error}"))
                return
            conn.call(_LOCATIONS, core_worker_pb2.GetObjectLocationsRequest(object_ids=[oid]),
                      callback=lambda reply, err: self._on_locations(pull, reply, err))

        self.pool.get(owner, on_conn)

    def _on_locations(self, pull: _Pull, reply: Any, error: BaseException | None) -> None:
        oid = pull.ref.object_id
        if self.pulls.get(oid) is not pull:
            return
        if error is not None:
            self._give_up(pull, common_pb2.ErrorInfo(
                type=common_pb2.OWNER_DIED, message=f"the owner of the object died ({error})"))
            return
        info = reply.objects[0]
        if info.out_of_scope:
            self._give_up(pull, common_pb2.ErrorInfo(
                type=common_pb2.OBJECT_LOST, message="the owner no longer has the object (freed)"))
            return
        if self.node_id in info.node_ids and self.store.is_local(oid):
            self.pulls.pop(oid, None)
            return
        sources = [n for n in info.node_ids if n != self.node_id and self.node_address(n) is not None]
        fresh = [n for n in sources if n not in pull.tried] or sources
        if not fresh or info.size <= 0:
            # no live copy right now (being created or rebuilt): ask again soon
            self.loop.call_later(_RETRY_S, self._locate, pull)
            return
        self._start(pull, fresh[0], info.size)

    # ---- transfer ------------------------------------------------------------------------------

    def _start(self, pull: _Pull, source: bytes, size: int) -> None:
        oid = pull.ref.object_id
        pull.source = source
        pull.tried.add(source)
        pull.size = size
        pull.attempt += 1
        attempt = pull.attempt

        def allocated(offset: int | None, error: str) -> None:
            if self.pulls.get(oid) is not pull or pull.attempt != attempt:
                if offset is not None and offset >= 0:
                    self.store.abort(oid)
                return
            if offset is None:
                self._give_up(pull, common_pb2.ErrorInfo(type=common_pb2.OBJECT_STORE_FULL, message=error))
                return
            if offset < 0:  # arrived by another path meanwhile
                self.pulls.pop(oid, None)
                return
            pull.offset = offset
            chunk = self.config.object_chunk_bytes
            pull.num_chunks = max(1, (size + chunk - 1) // chunk)
            pull.next_chunk = 0
            pull.done_chunks = 0
            address = self.node_address(source)
            if address is None:
                self._retry(pull)
                return
            self.pool.get(address, lambda conn, err: self._on_source(pull, attempt, conn, err))

        owner = common_pb2.Address()
        owner.CopyFrom(pull.ref.owner)
        self.store.create(oid, size, owner, self, allocated, is_primary=False)

    def _on_source(self, pull: _Pull, attempt: int, conn: Connection | None, error: BaseException | None) -> None:
        if self.pulls.get(pull.ref.object_id) is not pull or pull.attempt != attempt:
            return
        if conn is None:
            self._retry(pull)
            return
        self._pump(pull, attempt, conn)

    def _pump(self, pull: _Pull, attempt: int, conn: Connection) -> None:
        chunk = self.config.object_chunk_bytes
        window = self.config.object_pull_window_chunks
        oid = pull.ref.object_id
        obj = self.store.get(oid)
        if obj is None:  # aborted meanwhile (the raylet is shutting down)
            return
        dest = self.store.view(obj)
        while pull.inflight < window and pull.next_chunk < pull.num_chunks:
            index = pull.next_chunk
            pull.next_chunk += 1
            start = index * chunk
            length = min(chunk, pull.size - start)
            target = dest[start : start + length]
            pull.inflight += 1
            conn.call(_PULL, raylet_pb2.PullChunkRequest(object_id=oid, offset=start, length=length),
                      trailer_into=target,
                      callback=functools.partial(self._on_chunk, pull, attempt, conn))

    def _on_chunk(self, pull: _Pull, attempt: int, conn: Connection, reply: Any, error: BaseException | None) -> None:
        if self.pulls.get(pull.ref.object_id) is not pull or pull.attempt != attempt:
            return
        pull.inflight -= 1
        if error is not None or reply.missing or reply.total_size != pull.size:
            self._retry(pull)
            return
        pull.done_chunks += 1
        if pull.done_chunks == pull.num_chunks:
            oid = pull.ref.object_id
            self.pulls.pop(oid, None)
            self.bytes_pulled += pull.size
            self.store.seal(oid)
            return
        self._pump(pull, attempt, conn)

    def _retry(self, pull: _Pull) -> None:
        """The source failed: drop what was received and look again."""
        oid = pull.ref.object_id
        if pull.offset >= 0:
            self.store.abort(oid)
            pull.offset = -1
        pull.attempt += 1
        pull.inflight = 0
        self.loop.call_later(0.02, self._locate, pull)

    def _give_up(self, pull: _Pull, error: common_pb2.ErrorInfo) -> None:
        oid = pull.ref.object_id
        if self.pulls.get(oid) is pull:
            del self.pulls[oid]
            if pull.offset >= 0:
                self.store.abort(oid)
        self.fail(oid, error)
