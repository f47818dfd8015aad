"""What a resource-view broadcast carries (pure logic, used in the GCS
process to build broadcasts and by any subscriber to merge them).

The GCS gives every node in the view a version that moves whenever what
the view shows of it changes. A broadcast lists only the nodes whose
version moved since the previous broadcast, and the nodes that left; a
new subscriber is sent the whole view once, and merging each broadcast
after it keeps the subscriber's copy equal to the GCS's.
"""

from __future__ import annotations

from collections.abc import Mapping

from nbray.protocol import gcs_pb2


def view_changes(sent: Mapping[bytes, int],
                 current: Mapping[bytes, int]) -> tuple[list[bytes], list[bytes]]:
    """The nodes to list and to remove in the next broadcast.

    `sent` maps each node of the previous broadcast's view to its version
    then; `current` maps each node in the view now to its version. Returns
    (changed: new nodes and nodes whose version moved, removed: nodes no
    longer in the view), each in `current`'s / `sent`'s order."""
    changed = [node_id for node_id, version in current.items() if sent.get(node_id) != version]
    removed = [node_id for node_id in sent if node_id not in current]
    return changed, removed


def merge_view(known: dict[bytes, gcs_pb2.NodeResources], view: gcs_pb2.ResourceView) -> None:
    """Apply a broadcast to a subscriber's copy of the view, in place: a
    full view replaces the copy; otherwise listed nodes are replaced and
    removed ones dropped."""
    if view.full:
        known.clear()
    for node_id in view.removed_node_ids:
        known.pop(node_id, None)
    for node in view.nodes:
        known[node.node_id] = node
