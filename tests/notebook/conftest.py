"""Notebook tests: real kernels (nbclient / jupyter_client) against a real cluster.

Clusters are shared by the whole directory, started by the same launcher as
``nbray start --head`` and torn down with leak checks: a two-node one (a
head with 2 CPUs and one logical GPU, plus a node with 1 CPU) and a
one-node one for notebooks whose task output must be complete when each
cell ends (the log flush barrier covers the local node only). Kernels inherit this
process's environment (``NBRAY_TMPDIR`` from tests/conftest.py), so they find
the cluster token by themselves and connect as drivers at ``HOST:PORT``.

The ``address`` fixtures are parametrized by connection mode; client mode
(``nbray://``) adds a mode to ``ADDRESS_MODES`` and a branch to ``_address``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbray.testing import Cluster
from tests.notebook.kernels import LiveKernel

ADDRESS_MODES = ["driver", "client"]


@pytest.fixture(scope="package")
def notebook_cluster() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1,
                                                            "ray_client_server_port": 0})
    cluster.add_node(num_cpus=1)
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="package")
def single_node_cluster() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "ray_client_server_port": 0})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _address(mode: str, cluster: Cluster) -> str:
    if mode == "driver":
        return cluster.address
    if mode == "client":
        return cluster.client_address
    raise ValueError(f"unknown connection mode {mode!r}")


@pytest.fixture(scope="package", params=ADDRESS_MODES)
def address(request: pytest.FixtureRequest, notebook_cluster: Cluster) -> str:
    """Where kernels connect: the two-node cluster, per connection mode."""
    return _address(request.param, notebook_cluster)


@pytest.fixture(scope="package", params=ADDRESS_MODES)
def single_node_address(request: pytest.FixtureRequest, single_node_cluster: Cluster) -> str:
    """A one-node cluster: every task's output is covered by the local log flush."""
    return _address(request.param, single_node_cluster)


@pytest.fixture
def live_kernel() -> Iterator[LiveKernel]:
    kernel = LiveKernel()
    try:
        yield kernel
    finally:
        kernel.shutdown()
