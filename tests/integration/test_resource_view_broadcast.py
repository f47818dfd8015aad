"""A real GCS broadcasts the resource view as deltas: a new subscriber gets
the whole view, then a resource change of one node reaches it, and an
unchanged node is not sent again."""

from __future__ import annotations

import asyncio
import time

import pytest

from nbray.gcs.resource_view import merge_view
from nbray.protocol import gcs_pb2
from nbray.testing import Cluster
from nbray.testing.gcs_load import SimulatedNode

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024


class _Subscriber(SimulatedNode):
    def __init__(self, index: int, address: str, token: bytes) -> None:
        super().__init__(index, address, token)
        self.views: list[gcs_pb2.ResourceView] = []
        self.known: dict[bytes, gcs_pb2.NodeResources] = {}

    def _on_publication(self, body: bytes) -> None:
        super()._on_publication(body)
        msg = gcs_pb2.PubMessage.FromString(body)
        if msg.channel == gcs_pb2.RESOURCE_VIEW:
            self.views.append(msg.resource_view)
            merge_view(self.known, msg.resource_view)


async def _until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _scenario(address: str, token: bytes) -> None:
    changing = SimulatedNode(0, address, token)
    watcher = _Subscriber(1, address, token)
    try:
        for node in (changing, watcher):
            await node.connect()
            await node.register()
            node.report()
        await watcher.subscribe([gcs_pb2.RESOURCE_VIEW])
        await _until(lambda: changing.node_id in watcher.known and watcher.node_id in watcher.known, 20,
                     "the whole view after subscribing")
        assert watcher.views[0].full, "the first view after subscribing is the whole view"
        before = len(watcher.views)
        changing.extra["marker"] = 1.0
        changing.report()
        await _until(lambda: watcher.known[changing.node_id].available.get("marker") == 1.0, 20,
                     "the change of the other node")
        delta = next(v for v in watcher.views[before:] if any(n.node_id == changing.node_id for n in v.nodes))
        assert not delta.full
        # The watcher's own node did not change, so the delta leaves it out.
        assert watcher.node_id not in {n.node_id for n in delta.nodes}
        changing.close()
        await _until(lambda: changing.node_id not in watcher.known, 30, "the closed node to leave the view")
    finally:
        changing.close()
        watcher.close()


def test_a_resource_change_reaches_another_nodes_view_as_a_delta() -> None:
    with Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 64 * MIB}) as cluster:
        asyncio.run(_scenario(cluster.address, cluster.head.token))
