"""Scheduling regressions found by the two-node benchmark (real processes)."""

import pytest

import nbray
from nbray.testing import Cluster, wait_for_condition
from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


@pytest.fixture
def two_one_cpu_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * MB})
    other = cluster.add_node(num_cpus=1, object_store_memory=100 * MB)
    cluster.connect()
    try:
        yield other
    finally:
        cluster.shutdown()


@nbray.remote
def noop():
    return 0


def _all_cpus_free():
    return nbray.available_resources().get("CPU") == nbray.cluster_resources().get("CPU")


def test_hard_affinity_burst_does_not_strand_lease_requests(two_one_cpu_nodes):
    # A burst pinned to a busy 1-CPU node queues several lease requests there
    # and makes its raylet start spare workers. A request that met an idle
    # worker while the CPU was held used to be dropped without a reply; the
    # owner then counted it as pending forever and, once its lease went
    # back, never asked for another: the next task hung.
    there = NodeAffinitySchedulingStrategy(two_one_cpu_nodes.node_id.hex(), soft=False)
    pinned = noop.options(scheduling_strategy=there)
    for _ in range(3):
        assert nbray.get([pinned.remote() for _ in range(500)], timeout=60) == [0] * 500
        wait_for_condition(_all_cpus_free, timeout=30)  # the lease went back
        assert nbray.get(pinned.remote(), timeout=30) == 0


def test_zero_cpu_actor_leaves_the_node_cpu_free(two_one_cpu_nodes):
    there = NodeAffinitySchedulingStrategy(two_one_cpu_nodes.node_id.hex(), soft=False)

    @nbray.remote(num_cpus=0)
    class Holder:
        def ping(self):
            return 1

    @nbray.remote
    class DefaultActor:
        def ping(self):
            return 1

    actors = [Holder.options(scheduling_strategy=there).remote(),
              DefaultActor.options(scheduling_strategy=there).remote()]
    assert nbray.get([a.ping.remote() for a in actors], timeout=30) == [1, 1]
    # Neither holds the node's only CPU while it runs: a pinned task still fits.
    assert nbray.get(noop.options(scheduling_strategy=there).remote(), timeout=30) == 0
