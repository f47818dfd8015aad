"""Placement decisions of the raylet (pure logic)."""

import random

from nbray.common.resources import NodeResources, to_fixed
from nbray.raylet.scheduling import ClusterView, Decision, NodeView, PolicyConfig, Scheduler, Strategy


def view(local=b"a", **nodes):
    v = ClusterView(local)
    for name, total in nodes.items():
        v.nodes[name.encode()] = NodeView(name.encode(), NodeResources(total), "127.0.0.1", 1)
    return v


def place(v, demand, strategy=None, seed=0):
    return Scheduler(PolicyConfig(), random.Random(seed)).place(v, to_fixed(demand), strategy or Strategy())


def test_local_node_packs_until_half_used():
    v = view(a={"CPU": 4}, b={"CPU": 4})
    assert place(v, {"CPU": 1}).decision == Decision.LOCAL
    v.nodes[b"a"].resources.allocate(to_fixed({"CPU": 2}))  # 50% used
    p = place(v, {"CPU": 1})
    assert p.decision == Decision.SPILLBACK and p.node_id == b"b"


def test_spillback_when_local_is_full():
    v = view(a={"CPU": 1}, b={"CPU": 2})
    v.nodes[b"a"].resources.allocate(to_fixed({"CPU": 1}))
    p = place(v, {"CPU": 1})
    assert (p.decision, p.node_id) == (Decision.SPILLBACK, b"b")


def test_wait_locally_when_feasible_but_busy_everywhere():
    v = view(a={"CPU": 1})
    v.nodes[b"a"].resources.allocate(to_fixed({"CPU": 1}))
    assert place(v, {"CPU": 1}).decision == Decision.WAIT


def test_infeasible_names_the_request():
    v = view(a={"CPU": 2})
    p = place(v, {"GPU": 1})
    assert p.decision == Decision.INFEASIBLE and "GPU" in p.message


def test_custom_resource_routes_to_the_node_that_has_it():
    v = view(a={"CPU": 2}, b={"CPU": 2, "accel": 1})
    p = place(v, {"CPU": 1, "accel": 1})
    assert (p.decision, p.node_id) == (Decision.SPILLBACK, b"b")


def test_hard_node_affinity_to_dead_node_is_unschedulable():
    v = view(a={"CPU": 2}, b={"CPU": 2})
    v.nodes[b"b"].alive = False
    p = place(v, {"CPU": 1}, Strategy("NODE_AFFINITY", b"b", soft=False))
    assert p.decision == Decision.UNSCHEDULABLE and "dead" in p.message


def test_soft_node_affinity_falls_back():
    v = view(a={"CPU": 2}, b={"CPU": 2})
    v.nodes[b"b"].alive = False
    assert place(v, {"CPU": 1}, Strategy("NODE_AFFINITY", b"b", soft=True)).decision == Decision.LOCAL


def test_node_affinity_goes_to_target():
    v = view(a={"CPU": 2}, b={"CPU": 2})
    p = place(v, {"CPU": 1}, Strategy("NODE_AFFINITY", b"b", soft=False))
    assert (p.decision, p.node_id) == (Decision.SPILLBACK, b"b")


def test_spread_rotates_over_idle_nodes():
    v = view(a={"CPU": 4}, b={"CPU": 4}, c={"CPU": 4})
    s = Scheduler(PolicyConfig(), random.Random(0))
    picks = {s.place(v, to_fixed({"CPU": 1}), Strategy("SPREAD")).node_id for _ in range(6)}
    assert picks == {b"a", b"b", b"c"}


def test_gpu_instances_are_assigned_exactly():
    r = NodeResources({"GPU": 2, "CPU": 4})
    a1 = r.allocate(to_fixed({"GPU": 1}))
    a2 = r.allocate(to_fixed({"GPU": 1}))
    assert sorted(a1.instance_ids()["GPU"] + a2.instance_ids()["GPU"]) == [0, 1]
    assert r.allocate(to_fixed({"GPU": 1})) is None
    r.free(a1)
    half = r.allocate(to_fixed({"GPU": 0.5}))
    other_half = r.allocate(to_fixed({"GPU": 0.5}))
    assert half.instance_ids() == other_half.instance_ids()  # fractions pack onto one GPU


def test_fractional_amounts_do_not_drift():
    r = NodeResources({"CPU": 1})
    allocs = [r.allocate(to_fixed({"CPU": 0.1})) for _ in range(10)]
    assert all(a is not None for a in allocs)
    assert r.allocate(to_fixed({"CPU": 0.1})) is None
    for a in allocs:
        r.free(a)
    assert r.available == r.total


def test_data_locality_overrides_utilization():
    v = view(a={"CPU": 2}, b={"CPU": 2})
    v.nodes[b"a"].resources.allocate(to_fixed({"CPU": 1}))  # 50%: the hybrid policy would spread
    assert place(v, {"CPU": 1}).decision == Decision.SPILLBACK
    assert place(v, {"CPU": 1}, Strategy(prefer_local=True)).decision == Decision.LOCAL
