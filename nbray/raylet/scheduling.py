"""Where a lease request should run (pure logic; runs in every raylet).

Each raylet keeps a view of every node's resources (its own exact, the
others' from the GCS broadcast). For a request it decides: grant here,
spill back to another node, wait here, or report it infeasible.

Hybrid policy (Ray's default): a node whose utilization is below the spread
threshold scores 0, otherwise its utilization; the local node wins while it
scores 0, otherwise a random node among the best k, so work packs until
nodes are about half used and then spreads without herding.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from nbray.common.resources import FixedSet, NodeResources


class Decision(enum.Enum):
    LOCAL = "local"
    SPILLBACK = "spillback"
    WAIT = "wait"
    INFEASIBLE = "infeasible"
    UNSCHEDULABLE = "unschedulable"


@dataclass
class NodeView:
    node_id: bytes
    resources: NodeResources
    host: str = ""
    port: int = 0
    alive: bool = True
    pending: int = 0


@dataclass
class Placement:
    decision: Decision
    node_id: bytes = b""
    message: str = ""


@dataclass
class PolicyConfig:
    spread_threshold: float = 0.5
    top_k_fraction: float = 0.2
    top_k_absolute: int = 1


@dataclass
class Strategy:
    kind: str = "DEFAULT"  # DEFAULT | SPREAD | NODE_AFFINITY | PLACEMENT_GROUP
    node_id: bytes = b""
    soft: bool = False
    # data locality: the local node wins whenever it has the resources
    prefer_local: bool = False


@dataclass
class ClusterView:
    local_node_id: bytes
    nodes: dict[bytes, NodeView] = field(default_factory=dict)

    @property
    def local(self) -> NodeView:
        return self.nodes[self.local_node_id]

    def alive_nodes(self) -> Iterable[NodeView]:
        return (n for n in self.nodes.values() if n.alive)


class Scheduler:
    """Chooses a node for a resource demand."""

    def __init__(self, config: PolicyConfig | None = None, rng: random.Random | None = None) -> None:
        self.config = config or PolicyConfig()
        self.rng = rng or random.Random()
        self._spread_cursor = 0

    def place(self, view: ClusterView, demand: FixedSet, strategy: Strategy,
              placement_demand: FixedSet | None = None,
              allow_spillback: bool = True) -> Placement:
        need = placement_demand if placement_demand is not None else demand
        if strategy.kind == "NODE_AFFINITY":
            target = view.nodes.get(strategy.node_id)
            if target is not None and target.alive and target.resources.is_feasible(need):
                if target.resources.is_available(need) or not strategy.soft:
                    return self._to(view, target.node_id, allow_spillback)
            elif not strategy.soft:
                what = "is dead" if target is not None and not target.alive else (
                    "does not have the requested resources" if target is not None else "is unknown")
                return Placement(Decision.UNSCHEDULABLE, message=(
                    f"the hard node affinity target {strategy.node_id.hex()} {what}; "
                    "use soft=True to allow other nodes"))
            # soft and unavailable: fall through to the default policy
        feasible = [n for n in view.alive_nodes() if n.resources.is_feasible(need)]
        if not feasible:
            return Placement(Decision.INFEASIBLE, message=_infeasible_message(view, need))
        available = [n for n in feasible if n.resources.is_available(need)]
        if not available:
            if view.local_node_id in {n.node_id for n in feasible} or not allow_spillback:
                return Placement(Decision.WAIT)
            # Queue where it can eventually run: the feasible node with least load.
            best = min(feasible, key=lambda n: (n.pending, n.resources.utilization()))
            return Placement(Decision.SPILLBACK, best.node_id)
        if strategy.kind == "SPREAD":
            return self._to(view, self._spread_pick(available), allow_spillback)
        local = view.nodes.get(view.local_node_id)
        if strategy.prefer_local and local is not None and local in available:
            return Placement(Decision.LOCAL, local.node_id)
        return self._to(view, self._hybrid_pick(view, available), allow_spillback)

    def _to(self, view: ClusterView, node_id: bytes, allow_spillback: bool) -> Placement:
        if node_id == view.local_node_id:
            return Placement(Decision.LOCAL, node_id)
        if not allow_spillback:
            return Placement(Decision.WAIT)
        return Placement(Decision.SPILLBACK, node_id)

    def _hybrid_pick(self, view: ClusterView, available: list[NodeView]) -> bytes:
        threshold = self.config.spread_threshold

        def score(n: NodeView) -> float:
            util = n.resources.utilization()
            return 0.0 if util < threshold else util

        local = view.nodes.get(view.local_node_id)
        if local is not None and local in available and score(local) == 0.0:
            return local.node_id
        ranked = sorted(available, key=lambda n: (score(n), n.node_id != view.local_node_id))
        k = max(self.config.top_k_absolute,
                int(self.config.top_k_fraction * sum(1 for _ in view.alive_nodes())))
        return self.rng.choice(ranked[:k]).node_id

    def _spread_pick(self, available: list[NodeView]) -> bytes:
        ordered = sorted(available, key=lambda n: n.node_id)
        least = min(n.resources.utilization() for n in ordered)
        candidates = [n for n in ordered if n.resources.utilization() <= least + 1e-9]
        self._spread_cursor += 1
        return candidates[self._spread_cursor % len(candidates)].node_id


def _infeasible_message(view: ClusterView, need: FixedSet) -> str:
    from nbray.common.resources import to_float

    totals = [to_float(n.resources.total) for n in view.alive_nodes()]
    return (
        f"no node in the cluster can ever provide {to_float(need)}; "
        f"node totals are {totals}. The request stays pending until a node with "
        "these resources joins."
    )
