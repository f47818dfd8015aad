"""accelerator_type= runs work only on nodes of that accelerator type."""

import os
import subprocess
import sys

import pytest

import nbray
from nbray.testing import Cluster, wait_for_condition
from nbray.util import accelerators

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def typed_cluster():
    """A head without an accelerator, one node with an A100 (resource) and
    one labelled as an L4."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        a100 = cluster.add_node(num_cpus=1, resources={"accelerator_type:A100": 1})
        l4 = cluster.add_node(num_cpus=1, labels={"ray.io/accelerator-type": "L4"})
        cluster.connect()
        yield cluster, a100.node_id.hex(), l4.node_id.hex()
    finally:
        nbray.shutdown()
        cluster.shutdown()


@nbray.remote
def where():
    return nbray.get_runtime_context().get_node_id()


def test_tasks_and_actors_run_only_on_nodes_of_their_type(typed_cluster):
    _cluster, a100, l4 = typed_cluster
    on_a100 = where.options(accelerator_type=accelerators.NVIDIA_A100)
    assert {nbray.get(on_a100.remote()) for _ in range(6)} == {a100}
    assert nbray.get(where.options(accelerator_type=accelerators.NVIDIA_L4).remote()) == l4

    @nbray.remote(accelerator_type="A100")
    class Trainer:
        def node(self):
            return nbray.get_runtime_context().get_node_id()

    assert nbray.get(Trainer.remote().node.remote()) == a100
    assert nbray.cluster_resources()["accelerator_type:A100"] == 1.0


def test_a_type_no_node_has_stays_pending_and_shows_as_infeasible(typed_cluster):
    cluster, _a100, _l4 = typed_cluster
    ref = where.options(accelerator_type=accelerators.NVIDIA_H100).remote()

    @nbray.remote(accelerator_type="H100")
    class Missing:
        def node(self):
            return nbray.get_runtime_context().get_node_id()

    actor = Missing.remote()
    call = actor.node.remote()

    def infeasible_demand_shown():
        out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "status", "--address", cluster.address],
                             capture_output=True, text=True, timeout=60, env=dict(os.environ))
        assert out.returncode == 0, out.stderr
        demand = [line for line in out.stdout.splitlines() if "accelerator_type:H100" in line]
        # the task and the actor, both waiting for the type
        return bool(demand) and "2+ pending" in demand[0] and "(infeasible)" in demand[0] and out.stdout

    status = wait_for_condition(infeasible_demand_shown, timeout=30, retry_interval_ms=300,
                                message="`nbray status` lists the H100 task and actor as infeasible demand")
    assert "accelerator_type:A100" not in status.split("Demands")[-1]  # only the missing type is demand
    ready, _ = nbray.wait([ref, call], num_returns=2, timeout=0.5)
    assert ready == []  # still pending: no node will ever have the type
    nbray.cancel(ref)
    nbray.kill(actor)


def test_bad_accelerator_type_is_refused_when_declared():
    with pytest.raises(TypeError, match="accelerator_type"):
        where.options(accelerator_type=100)
