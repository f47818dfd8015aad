"""The dashboard's utilization history: bounded ring buffers per node, pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from nbray.dashboard.utilization import SERIES, UtilizationHistory

pytestmark = pytest.mark.timeout(30)


def node(node_id: str, cpu_used: float = 1.0, state: str = "ALIVE", store_used: int = 10) -> dict[str, Any]:
    return {"node_id": node_id, "state": state, "cpu": {"used": cpu_used, "total": 4.0},
            "gpu": {"used": 0.0, "total": 1.0}, "memory": {"used": 2e9, "total": 8e9},
            "object_store": {"used_bytes": store_used, "capacity_bytes": 1000}}


def test_each_alive_node_gets_one_sample_per_tick() -> None:
    h = UtilizationHistory(period_ms=1000, history_ms=10_000, max_nodes=10)
    for i in range(3):
        h.record(1000 * i, [node("a", cpu_used=i), node("b", store_used=7 * i), node("dead", state="DEAD")])
    assert len(h) == 2
    assert [s[0] for s in h.samples("a")] == [0, 1000, 2000]
    assert [s[1 + SERIES.index("cpu_used")] for s in h.samples("a")] == [0.0, 1.0, 2.0]
    assert [s[1 + SERIES.index("store_used_bytes")] for s in h.samples("b")] == [0.0, 7.0, 14.0]
    assert h.samples("dead") == []


def test_the_ring_keeps_only_the_window() -> None:
    h = UtilizationHistory(period_ms=1000, history_ms=10_000, max_nodes=10)
    for i in range(100):
        h.record(1000 * i, [node("a", cpu_used=i)])
    kept = h.samples("a")
    assert len(kept) == h.capacity == 11
    assert [s[0] for s in kept] == [1000 * i for i in range(89, 100)]
    body = h.to_json(now_ms=99_000)
    (entry,) = body["nodes"]
    assert entry["t_ms"] == [1000 * i for i in range(89, 100)]
    assert entry["cpu_used"] == [float(i) for i in range(89, 100)]
    assert body["series"] == list(SERIES) and all(len(entry[name]) == 11 for name in SERIES)


def test_since_and_node_filters() -> None:
    h = UtilizationHistory(period_ms=1000, history_ms=60_000, max_nodes=10)
    for i in range(5):
        h.record(1000 * i, [node("a"), node("b")])
    body = h.to_json(now_ms=4000, node_id="b", since_ms=2000)
    assert [e["node_id"] for e in body["nodes"]] == ["b"]
    assert body["nodes"][0]["t_ms"] == [3000, 4000]


def test_a_node_that_stops_reporting_is_forgotten_after_the_window() -> None:
    h = UtilizationHistory(period_ms=1000, history_ms=5000, max_nodes=10)
    h.record(0, [node("a"), node("b")])
    h.record(1000, [node("a"), node("b", state="DEAD")])
    assert h.to_json(1000)["nodes"][1]["state"] == "DEAD"  # its history stays while in the window
    for t in range(2000, 8000, 1000):
        h.record(t, [node("a")])
    assert len(h) == 1 and h.samples("b") == []


def test_the_number_of_nodes_is_bounded_dead_ones_go_first() -> None:
    h = UtilizationHistory(period_ms=1000, history_ms=60_000, max_nodes=2)
    h.record(0, [node("a"), node("b")])
    h.record(1000, [node("a", state="DEAD"), node("b")])
    h.record(2000, [node("b"), node("c")])
    assert sorted(e["node_id"] for e in h.to_json(2000)["nodes"]) == ["b", "c"]
    h.record(3000, [node("b"), node("d")])  # c is silent now, b is not: c goes
    assert sorted(e["node_id"] for e in h.to_json(3000)["nodes"]) == ["b", "d"]


@pytest.mark.parametrize("period_ms, history_ms, max_nodes", [(0, 1000, 1), (1000, 500, 1), (1000, 1000, 0)])
def test_bad_bounds_are_refused(period_ms: int, history_ms: int, max_nodes: int) -> None:
    with pytest.raises(ValueError, match="bad utilization bounds"):
        UtilizationHistory(period_ms, history_ms, max_nodes)
