"""Cluster membership, health checks and the resource view (GCS process).

A raylet registers over its own connection, which the GCS keeps to send it
requests (health checks, actor leases). A node is declared dead when that
connection closes or when health checks fail ``failure_threshold`` times
in a row; node changes are published on the NODE channel. Raylets report
their resources; the GCS broadcasts the merged view to every raylet so
none is more than about a second out of date.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.gcs.pubsub import Publisher
from nbray.protocol import common_pb2, gcs_pb2, method
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)

_HEALTH = method("RayletService.HealthCheck")


class NodeEntry:
    __slots__ = ("info", "conn", "available", "total", "demands", "failures", "version",
                 "store_used", "store_spilled", "checking")

    def __init__(self, info: gcs_pb2.NodeInfo, conn: Connection) -> None:
        self.info = info
        self.conn = conn
        self.total: dict[str, float] = dict(info.resources_total)
        self.available: dict[str, float] = dict(info.resources_total)
        self.demands: list[gcs_pb2.ResourceDemand] = []
        self.failures = 0
        self.version = 0
        self.store_used = 0
        self.store_spilled = 0
        self.checking = False

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

    def start(self) -> None:
        self.loop.call_later(self.config.health_check_initial_delay_ms / 1000, self._health_round)
        self.loop.call_later(self.config.resource_broadcast_period_ms / 1000, self._broadcast)

    # ---- membership ---------------------------------------------------------------------------

    def register(self, conn: Connection, info: gcs_pb2.NodeInfo) -> None:
        node = gcs_pb2.NodeInfo()
        node.CopyFrom(info)
        node.state = gcs_pb2.NodeInfo.ALIVE
        entry = NodeEntry(node, conn)
        self.nodes[node.node_id] = entry
        conn.context = entry
        conn.add_close_callback(functools.partial(self._on_conn_closed, node.node_id))
        logger.info("node %s joined at %s:%d with %s", node.node_id.hex()[:8], node.node_ip,
                    node.raylet_port, dict(node.resources_total))
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=node))
        self._view_dirty = True
        for cb in self.on_node_added:
            cb(node)

    def unregister(self, node_id: bytes, reason: str) -> None:
        self.mark_dead(node_id, "EXPECTED_TERMINATION", reason or "the node was stopped")

    def _on_conn_closed(self, node_id: bytes, conn: Connection) -> None:
        entry = self.nodes.get(node_id)
        if entry is not None and entry.conn is conn and entry.alive:
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
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=entry.info))
        self._view_dirty = True
        for cb in self.on_node_dead:
            try:
                cb(entry.info)
            except Exception:
                logger.exception("node death handler failed")
        if reason != "EXPECTED_TERMINATION":
            entry.conn.close("node declared dead")

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
        entry.available = dict(req.available)
        entry.total = dict(req.total)
        entry.demands = list(req.demands)
        entry.store_used = req.object_store_used_bytes
        entry.store_spilled = req.object_store_spilled_bytes
        self._view_dirty = True

    def resource_view(self) -> gcs_pb2.ResourceView:
        view = gcs_pb2.ResourceView()
        for e in self.alive():
            n = view.nodes.add(
                node_id=e.info.node_id, node_ip=e.info.node_ip, raylet_port=e.info.raylet_port,
                pending=sum(d.count for d in e.demands), object_store_used_bytes=e.store_used,
                object_store_spilled_bytes=e.store_spilled, object_store_bytes=e.info.object_store_bytes)
            n.available.update(e.available)
            n.total.update(e.total)
        return view

    def _broadcast(self) -> None:
        if self._view_dirty and self.publisher.has_subscribers(gcs_pb2.RESOURCE_VIEW):
            self._view_dirty = False
            self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.RESOURCE_VIEW,
                                                      resource_view=self.resource_view()))
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
            if entry.checking:
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
