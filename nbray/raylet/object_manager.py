"""Making objects local for readers on this node.

``GetObjects`` answers when the requested objects are sealed in this
node's store (or after a timeout), pinning each for the reader. Objects
that live on other nodes are pulled in chunks by the ``Puller``; a reader
never waits on an object whose owner has died.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nbray.object_store.store import ObjectStore
from nbray.protocol import common_pb2, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)


class _GetRequest:
    __slots__ = ("conn", "rid", "method_id", "refs", "num_required", "check_only", "timer", "done",
                 "errors")

    def __init__(self, conn: Connection, rid: int, method_id: int, req: raylet_pb2.GetObjectsRequest) -> None:
        self.conn = conn
        self.rid = rid
        self.method_id = method_id
        self.refs = list(req.refs)
        self.num_required = req.num_required or len(self.refs)
        self.check_only = req.check_only
        self.timer: Any = None
        self.done = False
        self.errors: dict[bytes, common_pb2.ErrorInfo] = {}


class ObjectManager:
    def __init__(self, loop: EventLoop, store: ObjectStore,
                 fetch_remote: Callable[[common_pb2.ObjectReference], None] | None = None) -> None:
        self.loop = loop
        self.store = store
        # Starts bringing a non-local object here (multi-node pulls).
        self.fetch_remote = fetch_remote
        self._waiting: dict[bytes, list[_GetRequest]] = {}

    def handle_get(self, conn: Connection, req: raylet_pb2.GetObjectsRequest, rid: int, method_id: int) -> None:
        g = _GetRequest(conn, rid, method_id, req)
        ready = 0
        for ref in g.refs:
            oid = ref.object_id
            if self.store.is_local(oid):
                ready += 1
                continue
            waiters = self._waiting.get(oid)
            if waiters is None:
                self._waiting[oid] = waiters = []
                self.store.add_seal_waiter(oid, self._on_sealed)
                if self.fetch_remote is not None:
                    self.fetch_remote(ref)
            waiters.append(g)
        if ready >= g.num_required:
            self._answer(g)
            return
        if req.timeout_ms >= 0:
            g.timer = self.loop.call_later(req.timeout_ms / 1000, self._answer, g)

    def _on_sealed(self, oid: bytes) -> None:
        for g in self._waiting.pop(oid, ()):
            if g.done:
                continue
            if sum(1 for r in g.refs if self.store.is_local(r.object_id)) >= g.num_required:
                self._answer(g)

    def fail(self, oid: bytes, error: common_pb2.ErrorInfo) -> None:
        """Every reader waiting on `oid` gets `error` for it (e.g. owner died)."""
        waiters = self._waiting.pop(oid, None)
        if waiters is None:
            return
        self.store.remove_seal_waiter(oid, self._on_sealed)
        for g in waiters:
            if not g.done:
                g.errors[oid] = error
                self._answer(g)

    def waiting_owners(self) -> dict[bytes, list[common_pb2.ObjectReference]]:
        """Refs with waiting readers, by owner worker id."""
        out: dict[bytes, list[common_pb2.ObjectReference]] = {}
        seen = set()
        for oid, waiters in self._waiting.items():
            for g in waiters:
                for ref in g.refs:
                    if ref.object_id == oid and oid not in seen:
                        seen.add(oid)
                        out.setdefault(ref.owner.worker_id, []).append(ref)
        return out

    def _answer(self, g: _GetRequest) -> None:
        if g.done:
            return
        g.done = True
        if g.timer is not None:
            g.timer.cancel()
        for ref in g.refs:
            waiters = self._waiting.get(ref.object_id)
            if waiters and g in waiters:
                waiters.remove(g)
                if not waiters:
                    del self._waiting[ref.object_id]
                    self.store.remove_seal_waiter(ref.object_id, self._on_sealed)
        if g.conn.closed:
            return
        reply = raylet_pb2.GetObjectsReply()
        for ref in g.refs:
            oid = ref.object_id
            loc = reply.objects.add(object_id=oid)
            if oid in g.errors:
                loc.error.CopyFrom(g.errors[oid])
                continue
            if g.check_only:
                loc.ready = self.store.is_local(oid)
                continue
            obj = self.store.pin(oid, g.conn)
            if obj is not None:
                loc.ready = True
                loc.offset = obj.offset
                loc.data_size = obj.size
                if obj.fallback is not None:
                    loc.fallback_path = obj.fallback.path
        g.conn.reply(g.rid, g.method_id, reply)
