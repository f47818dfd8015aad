"""Scheduling strategies for tasks and actors (Ray-compatible names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbray.common.ids import NodeID

if TYPE_CHECKING:
    from nbray.util.placement_group import PlacementGroup

DEFAULT_SCHEDULING_STRATEGY = "DEFAULT"
SPREAD_SCHEDULING_STRATEGY = "SPREAD"


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id`: a hex string (``get_runtime_context().
    get_node_id()``) or a NodeID (``get_runtime_context().node_id``). With
    ``soft=True`` other nodes are used when it is dead or unable to run the
    work; otherwise the task or actor fails with Task/ActorUnschedulableError.

    Raises TypeError for another type of id, ValueError for a string that is
    not a node id in hex.
    """

    def __init__(self, node_id: str | NodeID, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        self.node_id = _node_id_hex(node_id)
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"

    def _key(self) -> tuple[Any, ...]:
        return (self.node_id, self.soft, self._spill_on_unavailable, self._fail_on_unavailable)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeAffinitySchedulingStrategy) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _node_id_hex(node_id: Any) -> str:
    if isinstance(node_id, NodeID):
        return node_id.hex()
    if not isinstance(node_id, str):
        raise TypeError(f"node_id must be a NodeID or its hex string (as nbray.get_runtime_context()."
                        f"get_node_id() returns), got {type(node_id).__name__}")
    try:
        size = len(bytes.fromhex(node_id))
    except ValueError:
        raise ValueError(f"node_id {node_id!r} is not a hex node id") from None
    if size != NodeID.SIZE:
        raise ValueError(f"node_id {node_id!r} has {size} bytes; a node id has {NodeID.SIZE} "
                         f"({2 * NodeID.SIZE} hex digits)")
    return node_id


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundle (``-1``: any bundle)."""

    def __init__(self, placement_group: PlacementGroup | None, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        pg = self.placement_group
        return (f"PlacementGroupSchedulingStrategy({pg!r}, bundle_index={self.placement_group_bundle_index}, "
                f"capture_child_tasks={self.placement_group_capture_child_tasks})")

    def _key(self) -> tuple[Any, ...]:
        pg = self.placement_group
        return (pg.id if pg is not None else None, self.placement_group_bundle_index,
                self.placement_group_capture_child_tasks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupSchedulingStrategy) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())


SchedulingStrategyT = Any

__all__ = [
    "DEFAULT_SCHEDULING_STRATEGY",
    "NodeAffinitySchedulingStrategy",
    "PlacementGroupSchedulingStrategy",
    "SPREAD_SCHEDULING_STRATEGY",
]
