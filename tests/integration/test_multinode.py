"""Several raylets on one machine: scheduling, transfers, placement groups, node death."""

import gc
import os
import signal
import time

import numpy as np
import pytest

import nbray
from nbray.protocol import raylet_pb2
from nbray.testing import Cluster, wait_for_condition
from nbray.util.placement_group import (
    get_current_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(120)

FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
               "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
MB = 1024 * 1024


@nbray.remote
def where(*args):
    return nbray.get_runtime_context().get_node_id()


@nbray.remote
def where_after(path, *args):
    while not os.path.exists(path):
        time.sleep(0.01)
    return nbray.get_runtime_context().get_node_id()


def _start_two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 400 * MB},
                      system_config=FAST_HEALTH)
    try:
        worker = cluster.add_node(num_cpus=1, resources={"node_b": 1}, object_store_memory=400 * MB)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, worker


@pytest.fixture
def own_two_nodes():
    """A head and a worker node (1 CPU each) of this test's own: for tests that stop or kill nodes."""
    cluster, worker = _start_two_nodes()
    cluster.connect()
    try:
        yield cluster, cluster.head, worker
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def _module_two_nodes():
    cluster, worker = _start_two_nodes()
    try:
        yield cluster, cluster.head, worker
    finally:
        cluster.shutdown()


@pytest.fixture
def two_nodes(_module_two_nodes):
    """Two nodes as ``own_two_nodes`` starts them, shared by the tests that leave both nodes running;
    each test has a driver (a job) of its own and starts once the previous one's work is gone."""
    yield from _connected(_module_two_nodes)


def _connected(nodes):
    cluster, head, worker = nodes
    nbray.init(address=cluster.address)
    try:
        assert {n["NodeID"] for n in nbray.nodes() if n["Alive"]} == {node_hex(head), node_hex(worker)}
        wait_for_condition(lambda: nbray.available_resources() == nbray.cluster_resources(), timeout=20,
                           message="the previous test's work is gone")
        yield nodes
    finally:
        nbray.shutdown()


def node_hex(node):
    return node.node_id.hex()


def resources_settle():
    def equal():
        total, avail = nbray.cluster_resources(), nbray.available_resources()
        return total.get("CPU") == avail.get("CPU") and total.get("GPU", 0) == avail.get("GPU", 0)

    wait_for_condition(equal, timeout=20, message="available resources return to the totals")


def test_nodes_join_and_are_listed_with_resources(two_nodes):
    cluster, head, worker = two_nodes
    nodes = {n["NodeID"]: n for n in nbray.nodes()}
    assert set(nodes) == {node_hex(head), node_hex(worker)}
    assert nodes[node_hex(worker)]["Resources"]["node_b"] == 1.0
    assert nodes[node_hex(head)]["IsHead"] and not nodes[node_hex(worker)]["IsHead"]
    assert nbray.cluster_resources()["CPU"] == 2.0


def test_graceful_removal_marks_the_node_dead(own_two_nodes):
    cluster, head, worker = own_two_nodes
    cluster.remove_node(worker, allow_graceful=True)

    def gone():
        n = {x["NodeID"]: x for x in nbray.nodes()}[node_hex(worker)]
        return not n["Alive"] and n["DeathReason"] == "EXPECTED_TERMINATION"

    wait_for_condition(gone, timeout=20)
    assert nbray.cluster_resources()["CPU"] == 1.0


def test_spillback_when_the_local_node_is_full(two_nodes, tmp_path):
    cluster, head, worker = two_nodes
    flag = str(tmp_path / "go")
    refs = [where_after.remote(flag) for _ in range(2)]
    wait_for_condition(lambda: nbray.available_resources().get("CPU", 0) == 0, timeout=20)
    open(flag, "w").close()
    assert set(nbray.get(refs)) == {node_hex(head), node_hex(worker)}
    resources_settle()


def test_custom_resources_route_work(two_nodes):
    cluster, head, worker = two_nodes
    assert set(nbray.get([where.options(resources={"node_b": 0.1}).remote() for _ in range(5)])) == \
        {node_hex(worker)}


def test_node_affinity_hard_and_soft(two_nodes):
    cluster, head, worker = two_nodes
    hard = NodeAffinitySchedulingStrategy(node_hex(worker), soft=False)
    assert set(nbray.get([where.options(scheduling_strategy=hard).remote() for _ in range(3)])) == \
        {node_hex(worker)}
    unknown = NodeAffinitySchedulingStrategy("ab" * 28, soft=False)
    with pytest.raises(nbray.exceptions.TaskUnschedulableError, match="unknown"):
        nbray.get(where.options(scheduling_strategy=unknown).remote(), timeout=30)
    soft = NodeAffinitySchedulingStrategy("ab" * 28, soft=True)
    assert nbray.get(where.options(scheduling_strategy=soft).remote(), timeout=30) in \
        {node_hex(head), node_hex(worker)}

    @nbray.remote
    class Pinned:
        def node(self):
            return nbray.get_runtime_context().get_node_id()

    a = Pinned.options(scheduling_strategy=hard).remote()
    assert nbray.get(a.node.remote()) == node_hex(worker)
    b = Pinned.options(scheduling_strategy=unknown).remote()
    with pytest.raises(nbray.exceptions.ActorUnschedulableError):
        nbray.get(b.node.remote(), timeout=30)


def test_hard_affinity_to_a_dead_node_is_unschedulable(own_two_nodes):
    cluster, head, worker = own_two_nodes
    target = node_hex(worker)
    cluster.remove_node(worker, allow_graceful=False)
    wait_for_condition(lambda: not {x["NodeID"]: x for x in nbray.nodes()}[target]["Alive"], timeout=20)
    strategy = NodeAffinitySchedulingStrategy(target, soft=False)
    with pytest.raises(nbray.exceptions.TaskUnschedulableError, match="dead"):
        nbray.get(where.options(scheduling_strategy=strategy).remote(), timeout=30)


def test_spread_uses_both_nodes(two_nodes):
    cluster, head, worker = two_nodes

    @nbray.remote(scheduling_strategy="SPREAD")
    def briefly():
        time.sleep(0.05)
        return nbray.get_runtime_context().get_node_id()

    nodes = nbray.get([briefly.remote() for _ in range(20)])
    assert set(nodes) == {node_hex(head), node_hex(worker)}


def test_large_objects_move_between_nodes(two_nodes):
    cluster, head, worker = two_nodes
    on_b = {"resources": {"node_b": 0.1}}

    @nbray.remote
    def make(n):
        return np.arange(n, dtype=np.uint8) * 3

    @nbray.remote
    def digest(a):
        return int(a.sum()), nbray.get_runtime_context().get_node_id()

    n = 64 * MB  # 8 chunks of 8 MiB: the pull moves two full windows of 4 chunks
    ref = make.options(**on_b).remote(n)
    local = nbray.get(ref)  # pulled from node B to the head
    expected = (np.arange(n, dtype=np.uint8) * 3)
    np.testing.assert_array_equal(local, expected)
    del local, expected
    big = nbray.put(np.ones(50 * MB // 8))
    total, node = nbray.get(digest.options(**on_b).remote(big))  # the head's object, read on B
    assert total == 50 * MB // 8 and node == node_hex(worker)


def test_put_on_one_node_get_on_another_for_various_types(two_nodes):
    import pyarrow as pa

    cluster, head, worker = two_nodes

    @nbray.remote(resources={"node_b": 0.1})
    def make_on_b():
        table = pa.table({"x": list(range(100_000)), "y": [str(i) for i in range(100_000)]})
        return [nbray.put(np.full(300_000, 7.0)), nbray.put(table),
                nbray.put({"nested": [1, (2, 3)], "blob": b"z" * 200_000})]

    a, t, d = nbray.get(make_on_b.remote())
    assert nbray.get(a).sum() == 2_100_000
    table = nbray.get(t)
    assert table.num_rows == 100_000 and table.column("y")[99_999].as_py() == "99999"
    value = nbray.get(d)
    assert value["nested"] == [1, (2, 3)] and len(value["blob"]) == 200_000


def test_concurrent_readers_share_one_transfer(two_nodes):
    cluster, head, worker = two_nodes
    ref = nbray.put(np.ones(40 * MB // 8))
    before = _pulled(worker)

    @nbray.remote(resources={"node_b": 0.1}, num_cpus=0.1)
    def read(a):
        return float(a[0])

    assert nbray.get([read.remote(ref) for _ in range(4)]) == [1.0] * 4
    assert 40 * MB <= _pulled(worker) - before < 41 * MB  # one transfer, not four


@pytest.fixture(scope="module")
def _module_two_cpus_each():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        worker = cluster.add_node(num_cpus=2, resources={"node_b": 1})
        yield cluster, cluster.head, worker
    finally:
        cluster.shutdown()


@pytest.fixture
def two_cpus_each(_module_two_cpus_each):
    """A head and a worker node of 2 CPUs each, shared as ``two_nodes`` is."""
    yield from _connected(_module_two_cpus_each)


def test_locality_prefers_the_node_holding_large_arguments(two_cpus_each):
    cluster, head, worker = two_cpus_each

    @nbray.remote(resources={"node_b": 0.1}, num_cpus=0)
    def make():
        return np.ones(20 * MB // 8)

    big = make.remote()
    nbray.wait([big], fetch_local=False)
    # the head is idle, yet the tasks go where their 20 MB argument is
    assert [nbray.get(where.remote(big)) for _ in range(3)] == [node_hex(worker)] * 3


def _pulled(node):
    from nbray.rpc.blocking import BlockingClient

    with BlockingClient(f"{node.node_ip}:{node.raylet_port}", node.token) as c:
        return c.call("RayletService.GetNodeStats", raylet_pb2.GetNodeStatsRequest()).bytes_pulled


# ---- placement groups -------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy,distinct", [("PACK", 1), ("STRICT_PACK", 1), ("SPREAD", 2), ("STRICT_SPREAD", 2)])
def test_placement_group_strategies(strategy, distinct, two_cpus_each):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy=strategy)
    assert nbray.get(pg.ready(), timeout=30) == pg
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and len(set(table["bundles_to_node_id"].values())) == distinct
    nodes = nbray.get([where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
                       for i in range(2)])
    assert nodes == [table["bundles_to_node_id"][0], table["bundles_to_node_id"][1]]
    remove_placement_group(pg)
    resources_settle()


def test_placement_group_lifecycle_and_errors(two_nodes):
    cluster, head, worker = two_nodes
    pg = placement_group([{"CPU": 1, "node_b": 1}])
    assert pg.wait(30)
    wait_for_condition(lambda: nbray.available_resources().get("node_b", 0) == 0, timeout=20)

    @nbray.remote
    class InGroup:
        def group(self):
            current = get_current_placement_group()
            return current.id.hex() if current else None

        def node(self):
            return nbray.get_runtime_context().get_node_id()

    actor = InGroup.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0), num_cpus=1).remote()
    assert nbray.get(actor.group.remote()) == pg.id.hex()
    assert nbray.get(actor.node.remote()) == node_hex(worker)
    remove_placement_group(pg)
    with pytest.raises(nbray.exceptions.RayActorError):
        for _ in range(200):
            nbray.get(actor.node.remote(), timeout=20)
            time.sleep(0.05)
    wait_for_condition(lambda: nbray.available_resources().get("node_b") == 1.0, timeout=20)
    remove_placement_group(pg)  # removing twice is harmless
    from nbray.common.ids import PlacementGroupID
    from nbray.util.placement_group import PlacementGroup

    with pytest.raises(ValueError, match="does not exist"):
        remove_placement_group(PlacementGroup(PlacementGroupID.from_random()))


def test_infeasible_placement_group_stays_pending_and_shows_in_status(two_nodes):
    cluster, head, worker = two_nodes
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert not pg.wait(1)
    assert placement_group_table(pg)["state"] == "PENDING"
    status = nbray.object_ref._core[0].gcs.call("GetClusterStatus")
    assert any(p.placement_group_id == pg.id.binary() for p in status.pending_placement_groups)
    from nbray.scripts.cli import format_status

    assert "STRICT_SPREAD" in format_status(status) and "pending placement groups" in format_status(status)
    remove_placement_group(pg)


def test_placement_group_input_errors(two_nodes):
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="NEARBY")
    with pytest.raises(ValueError, match="bundle 0"):
        placement_group([{}])


# ---- node death ----------------------------------------------------------------------------------------


def test_task_on_a_dying_node_is_rerun_elsewhere(own_two_nodes, tmp_path):
    cluster, head, worker = own_two_nodes
    started = tmp_path / "started"

    @nbray.remote(max_retries=2)
    def long_on_any(path):
        node = nbray.get_runtime_context().get_node_id()
        with open(path, "a") as f:
            f.write(node + "\n")
        if len(open(path).read().splitlines()) == 1:
            time.sleep(60)
        return node

    ref = long_on_any.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_hex(worker), soft=True)
                              ).remote(str(started))
    wait_for_condition(lambda: started.exists(), timeout=20)
    cluster.kill_raylet(worker)
    assert nbray.get(ref, timeout=60) == node_hex(head)


def test_actor_restarts_on_another_node(own_two_nodes):
    cluster, head, worker = own_two_nodes

    @nbray.remote(max_restarts=1)
    class Survivor:
        def node(self):
            return nbray.get_runtime_context().get_node_id()

    a = Survivor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_hex(worker), soft=True)).remote()
    assert nbray.get(a.node.remote()) == node_hex(worker)
    cluster.kill_raylet(worker)
    node = wait_for_condition(lambda: nbray.get(a.node.remote(), timeout=10), timeout=60)
    assert node == node_hex(head)


def test_lost_task_outputs_are_rebuilt_recursively(own_two_nodes):
    cluster, head, worker = own_two_nodes
    on_b = NodeAffinitySchedulingStrategy(node_hex(worker), soft=True)

    @nbray.remote(max_retries=2)
    def step(prev, n):
        base = prev if prev is not None else np.zeros(300_000)
        return base + n

    first = step.options(scheduling_strategy=on_b).remote(None, 1)
    second = step.options(scheduling_strategy=on_b).remote(first, 2)
    nbray.wait([second], fetch_local=False, timeout=30)
    del first  # only the lineage keeps it now
    gc.collect()
    cluster.kill_raylet(worker)
    cluster.add_node(num_cpus=1, resources={"node_b": 1})
    value = nbray.get(second, timeout=60)
    assert value[0] == 3.0 and value.shape == (300_000,)


def test_lost_put_object_raises_a_reconstruction_error(own_two_nodes):
    cluster, head, worker = own_two_nodes

    @nbray.remote(resources={"node_b": 0.1})
    def put_there():
        return [nbray.put(np.ones(300_000))]

    holder = nbray.get(put_there.remote())
    cluster.kill_raylet(worker)
    with pytest.raises(nbray.exceptions.ObjectLostError):
        nbray.get(holder[0], timeout=60)


def test_get_does_not_hang_when_the_owner_dies(own_two_nodes):
    cluster, head, worker = own_two_nodes

    @nbray.remote(resources={"node_b": 0.1})
    class Owner:
        def make(self):
            self.ref = nbray.put(np.ones(300_000))
            return [self.ref]

    owner = Owner.remote()
    borrowed = nbray.get(owner.make.remote())[0]
    cluster.kill_raylet(worker)
    with pytest.raises(nbray.exceptions.OwnerDiedError):
        nbray.get(borrowed, timeout=60)


def test_no_resources_leak_after_failures(two_nodes):
    cluster, head, worker = two_nodes

    @nbray.remote(max_retries=0)
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    for _ in range(3):
        with pytest.raises(nbray.exceptions.WorkerCrashedError):
            nbray.get(die.options(scheduling_strategy="SPREAD").remote())
    nbray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(10)])
    resources_settle()


# ---- bad input --------------------------------------------------------------------------------------------


def test_node_with_a_wrong_token_is_refused(two_nodes):
    cluster, head, worker = two_nodes
    from nbray.node import launcher

    with pytest.raises(RuntimeError, match="refused the cluster token"):
        launcher.start_worker_node(config=cluster.config, gcs_address=cluster.address, token=os.urandom(32),
                                   num_cpus=1, session_dir=cluster.session_dir)
    assert len([n for n in nbray.nodes() if n["Alive"]]) == 2


def test_node_with_another_version_is_refused(two_nodes, monkeypatch):
    cluster, head, worker = two_nodes
    from nbray.node import launcher

    monkeypatch.setenv("NBRAY_TESTING_VERSION_OVERRIDE", "7.7.7")
    with pytest.raises(RuntimeError, match="7.7.7"):
        launcher.start_worker_node(config=cluster.config, gcs_address=cluster.address, token=head.token,
                                   num_cpus=1, session_dir=cluster.session_dir)
    monkeypatch.delenv("NBRAY_TESTING_VERSION_OVERRIDE")
    assert len([n for n in nbray.nodes() if n["Alive"]]) == 2
