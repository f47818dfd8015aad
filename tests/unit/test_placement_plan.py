"""Choosing nodes for placement group bundles (pure logic)."""

from nbray.common.resources import to_fixed
from nbray.gcs.placement_groups import plan_bundles
from nbray.protocol import gcs_pb2

PG = gcs_pb2.PlacementGroupInfo


def nodes(*caps):
    return [(bytes([i]) * 28, to_fixed(c), to_fixed(c)) for i, c in enumerate(caps)]


def bundles(*bs):
    return [to_fixed(b) for b in bs]


def test_pack_prefers_one_node():
    plan = plan_bundles(bundles({"CPU": 1}, {"CPU": 1}), PG.PACK, nodes({"CPU": 4}, {"CPU": 4}))
    assert len(set(plan)) == 1


def test_strict_spread_uses_distinct_nodes():
    plan = plan_bundles(bundles({"CPU": 1}, {"CPU": 1}), PG.STRICT_SPREAD, nodes({"CPU": 4}, {"CPU": 4}))
    assert len(set(plan)) == 2


def test_strict_spread_with_too_few_nodes_is_infeasible():
    plan = plan_bundles(bundles({"CPU": 1}, {"CPU": 1}), PG.STRICT_SPREAD, nodes({"CPU": 4}))
    assert isinstance(plan, str) and "distinct" in plan


def test_strict_pack_needs_one_big_node():
    assert isinstance(plan_bundles(bundles({"CPU": 3}, {"CPU": 3}), PG.STRICT_PACK,
                                   nodes({"CPU": 4}, {"CPU": 4})), str)
    plan = plan_bundles(bundles({"CPU": 2}, {"CPU": 2}), PG.STRICT_PACK, nodes({"CPU": 4}, {"CPU": 4}))
    assert len(set(plan)) == 1


def test_spread_falls_back_to_reusing_nodes():
    plan = plan_bundles(bundles({"CPU": 1}, {"CPU": 1}, {"CPU": 1}), PG.SPREAD, nodes({"CPU": 4}, {"CPU": 4}))
    assert len(plan) == 3 and len(set(plan)) == 2


def test_busy_cluster_waits_rather_than_fails():
    busy = [(b"a" * 28, to_fixed({"CPU": 2}), to_fixed({"CPU": 0}))]
    assert plan_bundles(bundles({"CPU": 1}), PG.PACK, busy) is None


def test_bundle_larger_than_any_node_is_infeasible():
    assert isinstance(plan_bundles(bundles({"CPU": 8}), PG.PACK, nodes({"CPU": 4})), str)
