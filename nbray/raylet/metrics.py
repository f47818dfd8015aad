"""What a raylet reports to the GCS's metrics table (raylet process).

Every ``metrics_report_period_ms`` the raylet sends one ``ReportMetrics``
message: the increase of its RPC handling-time histograms
(nbray/rpc/handler_timing.py) and of its lease counters since the last
report, and the number of leases it holds now. The counters themselves live
in the lease manager as plain totals; this module only turns them into
increases, so a report lost with a GCS that died is a gap, never a count
going backwards. Everything runs on the raylet's loop thread. No I/O here.
"""

from __future__ import annotations

from typing import Protocol

from nbray.protocol import gcs_pb2
from nbray.rpc.handler_timing import CounterDeltas, HandlerTimer, counter_point, gauge_point

NODE_TAG_KEYS = ("node_id",)
LEASES_GRANTED = "nbray_node_leases_granted"
LEASES_ACTIVE = "nbray_node_leases_active"
LEASE_SPILLBACKS = "nbray_node_lease_spillbacks"


class LeaseTotals(Protocol):
    """The lease manager's totals (nbray/raylet/lease_manager.py)."""

    num_granted: int
    num_spillbacks: int

    def num_active(self) -> int: ...


class RayletMetrics:
    """Turns a raylet's cumulative totals into the increases it reports."""

    def __init__(self, node_id_hex: str, timer: HandlerTimer) -> None:
        self.node_id_hex = node_id_hex
        self.timer = timer
        self._deltas = CounterDeltas()

    def take_points(self, leases: LeaseTotals | None) -> list[gcs_pb2.MetricPoint]:
        points = self.timer.take_points()
        if leases is None:
            return points
        tags = (self.node_id_hex,)
        for name, description, total in (
                (LEASES_GRANTED, "Worker leases a raylet granted", leases.num_granted),
                (LEASE_SPILLBACKS, "Lease requests a raylet sent on to another node", leases.num_spillbacks)):
            increase = self._deltas.take(name, tags, float(total))
            if increase:
                points.append(counter_point(name, description, increase, NODE_TAG_KEYS, tags))
        # Sent every period, changed or not: a restarted GCS learns it again at once.
        points.append(gauge_point(LEASES_ACTIVE, "Worker leases a raylet holds now", float(leases.num_active()),
                                  NODE_TAG_KEYS, tags))
        return points
