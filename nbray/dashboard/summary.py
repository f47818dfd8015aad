"""Pure summaries of the dashboard's rows, shared by nbray's dashboard and
the panel's translation of other clusters' replies."""

from __future__ import annotations

from typing import Any


def sum_resources(nodes: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Cluster totals and availability: the per-resource sums over node rows."""
    total: dict[str, float] = {}
    available: dict[str, float] = {}
    for n in nodes:
        for k, v in n["resources_total"].items():
            total[k] = total.get(k, 0.0) + v
        for k, v in n["resources_available"].items():
            available[k] = available.get(k, 0.0) + v
    return total, available
