"""Cluster membership, health checks and the resource view (GCS process).

A raylet registers over its own connection, which the GCS keeps to send it
requests (health checks, actor leases). A node is declared dead when that
connection closes or when health checks fail ``failure_threshold`` times
in a row; node changes are published on the NODE channel. Raylets report
their resources; the GCS broadcasts the merged view to every raylet so
none is more than about a second out of date: a subscriber gets the whole
view when it subscribes, then only the nodes that changed and those that
left (resource_view.py), so an idle cluster's broadcasts stay small however
many nodes it has.

After a GCS restart the stored nodes wait for their raylets, which
register again with the same node id; one that has not come back within
``gcs_reregister_grace_ms`` is declared dead then (recovery.py decides).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from nbray.common.config import Config
from nbray.exceptions import RpcError
from nbray.gcs.pubsub import Publisher
from nbray.gcs.recovery import Registration, registration_decision
from nbray.gcs.resource_view import view_changes
from nbray.protocol import common_pb2, gcs_pb2, method
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)

_HEALTH = method("RayletService.HealthCheck")


class NodeEntry:
    __slots__ = ("info", "_conn", "available", "total", "demands", "failures", "version",
                 "store_used", "store_spilled", "checking", "view_version")

    def __init__(self, info: gcs_pb2.NodeInfo, conn: Connection | None) -> None:
        self.info = info
        # None for a node loaded from storage that has not registered again
        # (such a node is never alive, and only alive nodes are sent requests).
        self._conn = conn
        self.total: dict[str, float] = dict(info.resources_total)
        self.available: dict[str, float] = dict(info.resources_total)
        self.demands: list[gcs_pb2.ResourceDemand] = []
        self.failures = 0
        self.version = 0
        self.store_used = 0
        self.store_spilled = 0
        self.checking = False
        # Moves whenever what the resource view shows of this node changes.
        self.view_version = 0

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "a node loaded from storage has no connection"
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def alive(self) -> bool:
        return self.info.state == gcs_pb2.NodeInfo.ALIVE


class NodeManager:
    def __init__(self, loop: EventLoop, config: Config, publisher: Publisher) -> None:
        self.loop = loop
        self.config = config
        self.publisher = publisher
        self.nodes: dict[bytes, NodeEntry] = {}
        self.on_node_dead: list[Callable[[gcs_pb2.NodeInfo], None]] = []
        self.on_node_added: list[Callable[[gcs_pb2.NodeInfo], None]] = []
        self._view_dirty = False
        # Each node of the last broadcast view, with its view version then.
        self._view_sent: dict[bytes, int] = {}
        self._view_seq = 0  # the last view version given out
        # Subscribers that have not been sent the whole view yet.
        self._view_full_due: set[Connection] = set()
        publisher.on_subscribe.append(self._on_subscribe)
        # Nodes stored alive by an earlier GCS that have not registered again.
        self.awaiting: dict[bytes, bool] = {}

    def start(self) -> None:
        self.loop.call_later(self.config.health_check_initial_delay_ms / 1000, self._health_round)
        self.loop.call_later(self.config.resource_broadcast_period_ms / 1000, self._broadcast)

    # ---- membership ---------------------------------------------------------------------------

    def register(self, conn: Connection, info: gcs_pb2.NodeInfo) -> None:
        """Raises RpcError("node_dead") for a node already declared dead."""
        known = self.nodes.get(info.node_id)
        if known is not None and known.alive and known.connected and known.conn is conn:
            # The same registration again on the same connection (a resend):
            # the node stands as registered.
            return
        decision = registration_decision(known is not None, known is not None and known.alive,
                                         info.node_id in self.awaiting)
        if decision is Registration.REFUSED:
            assert known is not None
            raise RpcError("node_dead", f"node {info.node_id.hex()} was declared dead "
                                        f"({known.info.death_reason_message or known.info.death_reason}); "
                                        "a dead node never rejoins: start a new raylet")
        if decision is Registration.RETURNING:
            self.awaiting.pop(info.node_id, None)
            logger.info("node %s registered again", info.node_id.hex()[:8])
            if known is not None and known.connected and known.conn is not conn:
                old, known._conn = known.conn, None  # its closing must not declare the node dead
                old.close("the node registered again on another connection")
        node = gcs_pb2.NodeInfo()
        node.CopyFrom(info)
        node.state = gcs_pb2.NodeInfo.ALIVE
        entry = NodeEntry(node, conn)
        self.nodes[node.node_id] = entry
        conn.context = entry
        self._bump_view_version(entry)
        conn.add_close_callback(functools.partial(self._on_conn_closed, node.node_id))
        logger.info("node %s joined at %s:%d with %s", node.node_id.hex()[:8], node.node_ip,
                    node.raylet_port, dict(node.resources_total))
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=node))
        self._view_dirty = True
        for cb in self.on_node_added:
            cb(node)

    def restore(self, stored: list[gcs_pb2.NodeInfo]) -> None:
        """Take the node records an earlier GCS stored (before ``start``).

        A node alive then is listed as dead until its raylet registers again
        (registering replaces the record); nothing is told of its death, so
        the actors and groups on it keep their records, unless it has not
        registered again when ``end_reregistration_grace`` runs.
        """
        for info in stored:
            node = gcs_pb2.NodeInfo()
            node.CopyFrom(info)
            if node.state == gcs_pb2.NodeInfo.ALIVE:
                node.state = gcs_pb2.NodeInfo.DEAD
                node.death_reason = "UNEXPECTED_TERMINATION"
                node.death_reason_message = "not registered again since the GCS restarted"
                self.awaiting[node.node_id] = True
            entry = NodeEntry(node, None)
            entry.available = {}
            self.nodes[node.node_id] = entry

    def end_reregistration_grace(self) -> list[bytes]:
        """Declare dead every node stored alive that has not registered
        again since the GCS restarted, as if it died now; returns their ids."""
        lost, self.awaiting = list(self.awaiting), {}
        for node_id in lost:
            entry = self.nodes[node_id]
            entry.info.end_time_ms = int(time.time() * 1000)
            entry.info.death_reason_message = (
                f"did not register again within {self.config.gcs_reregister_grace_ms} ms after the GCS restarted")
            logger.warning("node %s is dead: %s", node_id.hex()[:8], entry.info.death_reason_message)
            self._announce_dead(entry)
        return lost

    def unregister(self, node_id: bytes, reason: str) -> None:
        self.mark_dead(node_id, "EXPECTED_TERMINATION", reason or "the node was stopped")

    def _on_conn_closed(self, node_id: bytes, conn: Connection) -> None:
        entry = self.nodes.get(node_id)
        if entry is not None and entry.connected and entry.conn is conn and entry.alive:
            self.mark_dead(node_id, "UNEXPECTED_TERMINATION",
                           f"the raylet's connection closed ({conn.close_reason})")

    def mark_dead(self, node_id: bytes, reason: str, message: str) -> None:
        entry = self.nodes.get(node_id)
        if entry is None or not entry.alive:
            return
        entry.info.state = gcs_pb2.NodeInfo.DEAD
        entry.info.end_time_ms = int(time.time() * 1000)
        entry.info.death_reason = reason
        entry.info.death_reason_message = message
        entry.available = {}
        logger.warning("node %s is dead: %s (%s)", node_id.hex()[:8], reason, message)
        self._announce_dead(entry)
        if reason != "EXPECTED_TERMINATION" and entry.connected:
            entry.conn.close("node declared dead")

    def _announce_dead(self, entry: NodeEntry) -> None:
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=entry.info))
        self._view_dirty = True
        for cb in self.on_node_dead:
            try:
                cb(entry.info)
            except Exception:
                logger.exception("node death handler failed")

    def alive(self) -> list[NodeEntry]:
        return [e for e in self.nodes.values() if e.alive]

    def get(self, node_id: bytes) -> NodeEntry | None:
        return self.nodes.get(node_id)

    # ---- resources -------------------------------------------------------------------------------

    def report(self, req: gcs_pb2.ReportResourcesRequest) -> None:
        entry = self.nodes.get(req.node_id)
        if entry is None or not entry.alive or req.version <= entry.version:
            return
        entry.version = req.version
        available = dict(req.available)
        total = dict(req.total)
        demands = list(req.demands)
        if (available != entry.available or total != entry.total
                or sum(d.count for d in demands) != sum(d.count for d in entry.demands)
                or req.object_store_used_bytes != entry.store_used
                or req.object_store_spilled_bytes != entry.store_spilled):
            # Most reports of an idle node repeat the last one: only a change
            # goes into the next broadcast.
            self._bump_view_version(entry)
        entry.available = available
        entry.total = total
        entry.demands = demands
        entry.store_used = req.object_store_used_bytes
        entry.store_spilled = req.object_store_spilled_bytes

    def _bump_view_version(self, entry: NodeEntry) -> None:
        self._view_seq += 1
        entry.view_version = self._view_seq
        self._view_dirty = True

    def resource_view(self, only: Collection[bytes] | None = None) -> gcs_pb2.ResourceView:
        """The alive nodes' resources (those in `only`, when given)."""
        view = gcs_pb2.ResourceView()
        entries = self.alive() if only is None else [
            e for e in (self.nodes.get(node_id) for node_id in only) if e is not None and e.alive]
        for e in entries:
            n = view.nodes.add(
                node_id=e.info.node_id, node_ip=e.info.node_ip, raylet_port=e.info.raylet_port,
                pending=sum(d.count for d in e.demands), object_store_used_bytes=e.store_used,
                object_store_spilled_bytes=e.store_spilled, object_store_bytes=e.info.object_store_bytes)
            n.available.update(e.available)
            n.total.update(e.total)
        return view

    def _on_subscribe(self, conn: Connection, channel: int, key: bytes) -> None:
        if channel == gcs_pb2.RESOURCE_VIEW:
            self._view_full_due.add(conn)

    def _broadcast(self) -> None:
        """Send new subscribers the whole view, then everyone what changed."""
        if self._view_full_due:
            conns = [c for c in self._view_full_due if not c.closed]
            self._view_full_due.clear()
            full = self.resource_view()
            full.full = True
            self.publisher.send_to(conns, gcs_pb2.PubMessage(channel=gcs_pb2.RESOURCE_VIEW, resource_view=full))
        if self._view_dirty and self.publisher.has_subscribers(gcs_pb2.RESOURCE_VIEW):
            self._view_dirty = False
            current = {e.info.node_id: e.view_version for e in self.alive()}
            changed, removed = view_changes(self._view_sent, current)
            self._view_sent = current
            if changed or removed:
                delta = self.resource_view(changed)
                delta.removed_node_ids.extend(removed)
                self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.RESOURCE_VIEW, resource_view=delta))
        self.loop.call_later(self.config.resource_broadcast_period_ms / 1000, self._broadcast)

    def cluster_totals(self) -> tuple[dict[str, float], dict[str, float]]:
        total: dict[str, float] = {}
        avail: dict[str, float] = {}
        for e in self.alive():
            for k, v in e.total.items():
                total[k] = total.get(k, 0.0) + v
            for k, v in e.available.items():
                avail[k] = avail.get(k, 0.0) + max(0.0, v)
        return total, avail

    # ---- health checks -----------------------------------------------------------------------------

    def _health_round(self) -> None:
        timeout = self.config.health_check_timeout_ms / 1000
        for entry in self.alive():
            if entry.checking or not entry.connected:
                continue
            entry.checking = True
            entry.conn.call(_HEALTH, common_pb2.Empty(), timeout_s=timeout,
                            callback=functools.partial(self._on_health_reply, entry))
        self.loop.call_later(self.config.health_check_period_ms / 1000, self._health_round)

    def _on_health_reply(self, entry: NodeEntry, reply: Any, error: Any) -> None:
        self._on_health(entry, error)

    def _on_health(self, entry: NodeEntry, error: Any) -> None:
        entry.checking = False
        if not entry.alive:
            return
        if error is None:
            entry.failures = 0
            return
        entry.failures += 1
        logger.warning("health check of node %s failed (%d/%d): %s", entry.info.node_id.hex()[:8],
                       entry.failures, self.config.health_check_failure_threshold, error)
        if entry.failures >= self.config.health_check_failure_threshold:
            self.mark_dead(entry.info.node_id, "UNEXPECTED_TERMINATION",
                           f"{entry.failures} health checks failed in a row")
