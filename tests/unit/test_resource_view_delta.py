"""The resource view's broadcasts carry only what changed, and a subscriber
that merges them keeps the same view as the GCS (nbray/gcs/resource_view.py)."""

from __future__ import annotations

import random

from nbray.gcs.resource_view import merge_view, view_changes
from nbray.protocol import gcs_pb2


def _node(node_id: bytes, cpu: float) -> gcs_pb2.NodeResources:
    n = gcs_pb2.NodeResources(node_id=node_id)
    n.available["CPU"] = cpu
    n.total["CPU"] = 4.0
    return n


def test_changes_list_new_and_moved_nodes_and_removals() -> None:
    changed, removed = view_changes({b"a": 1, b"b": 2, b"c": 3}, {b"a": 1, b"b": 5, b"d": 4})
    assert changed == [b"b", b"d"]
    assert removed == [b"c"]
    assert view_changes({b"a": 1}, {b"a": 1}) == ([], [])


def test_full_view_replaces_and_deltas_update_in_place() -> None:
    known: dict[bytes, gcs_pb2.NodeResources] = {b"stale": _node(b"stale", 1.0)}
    merge_view(known, gcs_pb2.ResourceView(full=True, nodes=[_node(b"a", 1.0), _node(b"b", 2.0)]))
    assert sorted(known) == [b"a", b"b"]
    merge_view(known, gcs_pb2.ResourceView(nodes=[_node(b"b", 0.5)], removed_node_ids=[b"a"]))
    assert sorted(known) == [b"b"] and known[b"b"].available["CPU"] == 0.5


def test_a_subscriber_merging_deltas_converges_on_the_gcs_view() -> None:
    """Random joins, deaths and changes; each round broadcasts the delta the
    GCS would, and the subscriber's copy must equal the whole view."""
    rng = random.Random(7)
    gcs: dict[bytes, tuple[int, float]] = {}  # node -> (version, available CPU)
    seq = 0
    sent: dict[bytes, int] = {}
    subscriber: dict[bytes, gcs_pb2.NodeResources] = {}
    merge_view(subscriber, gcs_pb2.ResourceView(full=True))
    for _ in range(300):
        for _ in range(rng.randint(0, 4)):
            op = rng.random()
            if op < 0.3 or not gcs:
                seq += 1
                gcs[rng.randbytes(4)] = (seq, 4.0)
            elif op < 0.45:
                del gcs[rng.choice(list(gcs))]
            else:
                seq += 1
                gcs[rng.choice(list(gcs))] = (seq, float(rng.randint(0, 4)))
        current = {node_id: version for node_id, (version, _) in gcs.items()}
        changed, removed = view_changes(sent, current)
        sent = current
        merge_view(subscriber, gcs_pb2.ResourceView(
            nodes=[_node(n, gcs[n][1]) for n in changed], removed_node_ids=removed))
        assert {n: r.available["CPU"] for n, r in subscriber.items()} == {n: cpu for n, (_, cpu) in gcs.items()}
        assert len(changed) <= len(gcs)
