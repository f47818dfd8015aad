"""Placement groups: atomic reservation of resource bundles (GCS process).

Placing a group is a two-phase commit over the raylets involved: each is
asked to *prepare* (reserve) its bundles; if every prepare succeeds the
bundles are *committed*, which makes each node offer the renamed
resources ``<R>_group_<pg>`` and ``<R>_group_<i>_<pg>`` that tasks and actors
of the group request; if any fails, the prepared ones are cancelled and the
group waits for resources. Removal cancels the bundles on their nodes,
which also stops whatever still runs in them.

Which nodes (pure): ``plan_bundles``.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.common.resources import FixedSet, to_fixed
from nbray.exceptions import RpcError
from nbray.gcs.node_manager import NodeEntry, NodeManager
from nbray.gcs.pubsub import Publisher
from nbray.protocol import gcs_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)

_PG = gcs_pb2.PlacementGroupInfo
_PREPARE = method("RayletService.PrepareBundles")
_COMMIT = method("RayletService.CommitBundles")
_CANCEL = method("RayletService.CancelBundles")
_WAIT_REPLY = method("GcsService.WaitPlacementGroupReady")
# Removed groups stay listed (state REMOVED) until this many newer ones were removed.
REMOVED_GROUPS_KEPT = 1000


def plan_bundles(bundles: list[FixedSet], strategy: int,
                 nodes: list[tuple[bytes, FixedSet, FixedSet]]) -> list[bytes] | None | str:
    """Choose a node for each bundle.

    ``nodes`` holds (node id, total, available). Returns the node of each
    bundle, None when the group fits the cluster but not the free
    resources now, or a string explaining why it can never fit.
    """

    def fits(need: FixedSet, have: FixedSet) -> bool:
        return all(have.get(k, 0) >= v for k, v in need.items())

    def add(a: FixedSet, b: FixedSet) -> FixedSet:
        out = dict(a)
        for k, v in b.items():
            out[k] = out.get(k, 0) + v
        return out

    def sub(a: FixedSet, b: FixedSet) -> FixedSet:
        out = dict(a)
        for k, v in b.items():
            out[k] = out.get(k, 0) - v
        return out

    if not nodes:
        return None
    for b in bundles:
        if not any(fits(b, total) for _, total, _ in nodes):
            return f"bundle {b} fits on no node of the cluster"
    if strategy == _PG.STRICT_PACK:
        whole: FixedSet = {}
        for b in bundles:
            whole = add(whole, b)
        if not any(fits(whole, total) for _, total, _ in nodes):
            return "STRICT_PACK needs one node with all bundles' resources, and none has them"
        for node_id, _, avail in sorted(nodes, key=lambda n: n[0]):
            if fits(whole, avail):
                return [node_id] * len(bundles)
        return None
    if strategy == _PG.STRICT_SPREAD and len(bundles) > len(nodes):
        return f"STRICT_SPREAD needs {len(bundles)} distinct nodes but the cluster has {len(nodes)}"
    free = {node_id: dict(avail) for node_id, _, avail in nodes}
    order = sorted(free)
    placement: list[bytes] = []
    used_nodes: list[bytes] = []
    for b in bundles:
        choice = None
        if strategy == _PG.PACK:
            for node_id in used_nodes + [n for n in order if n not in used_nodes]:
                if fits(b, free[node_id]):
                    choice = node_id
                    break
        else:  # SPREAD / STRICT_SPREAD: prefer nodes not used yet
            fresh = [n for n in order if n not in used_nodes and fits(b, free[n])]
            if fresh:
                choice = fresh[0]
            elif strategy == _PG.SPREAD:
                choice = next((n for n in used_nodes if fits(b, free[n])), None)
        if choice is None:
            return None
        free[choice] = sub(free[choice], b)
        placement.append(choice)
        if choice not in used_nodes:
            used_nodes.append(choice)
    return placement


class _Waiter:
    __slots__ = ("conn", "rid", "timer")

    def __init__(self, conn: Connection, rid: int) -> None:
        self.conn = conn
        self.rid = rid
        self.timer: Any = None


class PlacementGroupManager:
    def __init__(self, loop: EventLoop, config: Config, publisher: Publisher, nodes: NodeManager) -> None:
        self.loop = loop
        self.config = config
        self.publisher = publisher
        self.nodes = nodes
        self.groups: dict[bytes, gcs_pb2.PlacementGroupInfo] = {}
        self.named: dict[tuple[str, str], bytes] = {}
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._scheduling: set[bytes] = set()
        self._retry_timer: Any = None
        self._removed: collections.deque[bytes] = collections.deque()
        # Called with the id of each removed group dropped from the table.
        self.on_forgotten: list[Callable[[bytes], None]] = []
        nodes.on_node_added.append(lambda info: self._retry_soon())
        nodes.on_node_dead.append(self._on_node_dead)

    # ---- requests -----------------------------------------------------------------------------------

    def create(self, pg: gcs_pb2.PlacementGroupInfo) -> gcs_pb2.CreatePlacementGroupReply:
        if not pg.bundles:
            raise RpcError("invalid_argument", "a placement group needs at least one bundle")
        for i, b in enumerate(pg.bundles):
            if not b.amounts or all(v == 0 for v in b.amounts.values()):
                raise RpcError("invalid_argument", f"bundle {i} of the placement group is empty")
        known = self.groups.get(pg.placement_group_id)
        if known is not None:
            # The same request again (sent anew after the GCS connection
            # dropped): the group it created stands.
            return gcs_pb2.CreatePlacementGroupReply(placement_group_id=known.placement_group_id)
        if pg.name and (pg.namespace, pg.name) in self.named:
            raise RpcError("already_exists", f"a placement group named {pg.name!r} already exists")
        info = gcs_pb2.PlacementGroupInfo()
        info.CopyFrom(pg)
        info.state = _PG.PENDING
        info.create_time_ms = int(time.time() * 1000)
        self.groups[info.placement_group_id] = info
        if info.name:
            self.named[(info.namespace, info.name)] = info.placement_group_id
        self._publish(info)
        self._try_place(info)
        return gcs_pb2.CreatePlacementGroupReply(placement_group_id=info.placement_group_id)

    def remove(self, pg_id: bytes) -> None:
        info = self.groups.get(pg_id)
        if info is None:
            raise RpcError("not_found", f"placement group {pg_id.hex()} does not exist")
        if info.state == _PG.REMOVED:
            return
        nodes = set(info.bundle_node_ids)
        info.state = _PG.REMOVED
        del info.bundle_node_ids[:]
        for node_id in nodes:
            self._cancel_on(node_id, pg_id)
        if info.name:
            self.named.pop((info.namespace, info.name), None)
        self._publish(info)
        self._answer_waiters(pg_id, ready=False, removed=True)
        self._removed.append(pg_id)
        self._forget_oldest_removed()

    def _forget_oldest_removed(self) -> None:
        while len(self._removed) > REMOVED_GROUPS_KEPT:
            pg_id = self._removed.popleft()
            self.groups.pop(pg_id, None)
            for cb in self.on_forgotten:
                cb(pg_id)

    def restore(self, stored: list[gcs_pb2.PlacementGroupInfo]) -> None:
        """Take the groups an earlier GCS stored (before any request).

        Created groups keep their bundle nodes; pending ones are placed once
        nodes register. Removed ones stay listed, oldest first forgotten.
        """
        for pg in sorted(stored, key=lambda g: g.create_time_ms):
            info = gcs_pb2.PlacementGroupInfo()
            info.CopyFrom(pg)
            self.groups[info.placement_group_id] = info
            if info.state == _PG.REMOVED:
                self._removed.append(info.placement_group_id)
            elif info.name:
                self.named[(info.namespace, info.name)] = info.placement_group_id
        self._forget_oldest_removed()

    def get(self, pg_id: bytes) -> gcs_pb2.PlacementGroupInfo | None:
        return self.groups.get(pg_id)

    def get_named(self, name: str, namespace: str) -> gcs_pb2.PlacementGroupInfo | None:
        pg_id = self.named.get((namespace, name))
        return self.groups.get(pg_id) if pg_id else None

    def all(self) -> list[gcs_pb2.PlacementGroupInfo]:
        return list(self.groups.values())

    def pending(self) -> list[gcs_pb2.PlacementGroupInfo]:
        return [g for g in self.groups.values() if g.state in (_PG.PENDING, _PG.RESCHEDULING)]

    def wait_ready(self, conn: Connection, rid: int, req: gcs_pb2.WaitPlacementGroupReadyRequest) -> None:
        info = self.groups.get(req.placement_group_id)
        if info is None:
            conn.reply_error(rid, _WAIT_REPLY.id, "not_found",
                             f"placement group {req.placement_group_id.hex()} does not exist")
            return
        if info.state in (_PG.CREATED, _PG.REMOVED):
            conn.reply(rid, _WAIT_REPLY, gcs_pb2.WaitPlacementGroupReadyReply(
                ready=info.state == _PG.CREATED, removed=info.state == _PG.REMOVED))
            return
        waiter = _Waiter(conn, rid)
        self._waiters.setdefault(info.placement_group_id, []).append(waiter)
        if req.timeout_ms > 0:
            waiter.timer = self.loop.call_later(req.timeout_ms / 1000, self._expire_waiter,
                                                info.placement_group_id, waiter)

    def _expire_waiter(self, pg_id: bytes, waiter: _Waiter) -> None:
        waiters = self._waiters.get(pg_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
            if not waiter.conn.closed:
                waiter.conn.reply(waiter.rid, _WAIT_REPLY, gcs_pb2.WaitPlacementGroupReadyReply(ready=False))

    def _answer_waiters(self, pg_id: bytes, ready: bool, removed: bool) -> None:
        for waiter in self._waiters.pop(pg_id, []):
            if waiter.timer is not None:
                waiter.timer.cancel()
            if not waiter.conn.closed:
                waiter.conn.reply(waiter.rid, _WAIT_REPLY,
                                  gcs_pb2.WaitPlacementGroupReadyReply(ready=ready, removed=removed))

    # ---- placing ----------------------------------------------------------------------------------------

    def _try_place(self, info: gcs_pb2.PlacementGroupInfo) -> None:
        pg_id = info.placement_group_id
        if pg_id in self._scheduling or info.state not in (_PG.PENDING, _PG.RESCHEDULING):
            return
        alive = self.nodes.alive()
        plan = plan_bundles([to_fixed(b.amounts) for b in info.bundles], info.strategy,
                            [(n.info.node_id, to_fixed(n.total), to_fixed(n.available)) for n in alive])
        if isinstance(plan, str):
            info.pending_reason = f"infeasible: {plan}"
            return
        if plan is None:
            info.pending_reason = "waiting for resources"
            self._retry_soon()
            return
        self._scheduling.add(pg_id)
        by_node: dict[bytes, list[raylet_pb2.BundleSpec]] = {}
        for idx, node_id in enumerate(plan):
            spec = raylet_pb2.BundleSpec(placement_group_id=pg_id, bundle_index=idx)
            spec.resources.update(info.bundles[idx].amounts)
            by_node.setdefault(node_id, []).append(spec)
        outstanding = {"n": len(by_node), "ok": True}
        prepared: list[bytes] = []

        def on_prepared(node_id: bytes, reply: Any, error: BaseException | None) -> None:
            if error is None and reply.success:
                prepared.append(node_id)
            else:
                outstanding["ok"] = False
            outstanding["n"] -= 1
            if outstanding["n"] == 0:
                self._finish_prepare(info, plan, by_node, prepared, bool(outstanding["ok"]))

        for node_id, specs in by_node.items():
            node = self.nodes.get(node_id)
            if node is None or not node.alive:
                outstanding["ok"] = False
                outstanding["n"] -= 1
                continue
            node.conn.call(_PREPARE, raylet_pb2.PrepareBundlesRequest(bundles=specs, commit=len(by_node) == 1),
                           callback=functools.partial(on_prepared, node_id))
        if outstanding["n"] == 0:
            self._finish_prepare(info, plan, by_node, prepared, False)

    def _finish_prepare(self, info: gcs_pb2.PlacementGroupInfo, plan: list[bytes],
                        by_node: dict[bytes, list[raylet_pb2.BundleSpec]], prepared: list[bytes],
                        ok: bool) -> None:
        pg_id = info.placement_group_id
        self._scheduling.discard(pg_id)
        if info.state == _PG.REMOVED or not ok:
            for node_id in prepared:
                self._cancel_on(node_id, pg_id)
            if info.state != _PG.REMOVED:
                info.pending_reason = "waiting for resources"
                self._retry_soon()
            return
        if len(by_node) > 1:  # one node committed with its prepare
            for node_id, specs in by_node.items():
                node = self.nodes.get(node_id)
                if node is not None:
                    node.conn.send_oneway(_COMMIT, raylet_pb2.BundlesRequest(bundles=specs))
        del info.bundle_node_ids[:]
        info.bundle_node_ids.extend(plan)
        info.state = _PG.CREATED
        info.pending_reason = ""
        self._publish(info)
        self._answer_waiters(pg_id, ready=True, removed=False)

    def _cancel_on(self, node_id: bytes, pg_id: bytes) -> None:
        node: NodeEntry | None = self.nodes.get(node_id)
        if node is not None and node.alive:
            node.conn.send_oneway(_CANCEL, raylet_pb2.CancelBundlesRequest(placement_group_id=pg_id))

    def _retry_soon(self) -> None:
        if self._retry_timer is None:
            self._retry_timer = self.loop.call_later(0.1, self._retry_all)

    def _retry_all(self) -> None:
        self._retry_timer = None
        for info in list(self.groups.values()):
            if info.state in (_PG.PENDING, _PG.RESCHEDULING):
                self._try_place(info)

    # ---- lifetimes ----------------------------------------------------------------------------------------

    def on_job_finished(self, job_id: bytes) -> None:
        for info in list(self.groups.values()):
            if info.creator_job_id == job_id and not info.is_detached and info.state != _PG.REMOVED:
                self.remove(info.placement_group_id)

    def on_worker_dead(self, failure: gcs_pb2.WorkerFailure) -> None:
        wid = failure.address.worker_id
        if failure.is_driver:
            return  # the job's end removes driver-created groups
        for info in list(self.groups.values()):
            if info.creator.worker_id == wid and not info.is_detached and info.state != _PG.REMOVED:
                self.remove(info.placement_group_id)

    def _on_node_dead(self, node: gcs_pb2.NodeInfo) -> None:
        for info in self.groups.values():
            if info.state == _PG.CREATED and node.node_id in info.bundle_node_ids:
                # Reschedule the whole group: surviving bundles are released
                # and the group placed again.
                survivors = {n for n in info.bundle_node_ids if n != node.node_id}
                for node_id in survivors:
                    self._cancel_on(node_id, info.placement_group_id)
                del info.bundle_node_ids[:]
                info.state = _PG.RESCHEDULING
                self._publish(info)
        self._retry_soon()

    def _publish(self, info: gcs_pb2.PlacementGroupInfo) -> None:
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.PLACEMENT_GROUP,
                                                  key=info.placement_group_id, placement_group=info))
