"""Placement groups: reserve bundles of resources atomically (Ray-compatible).

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    nbray.get(pg.ready())
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
"""

from __future__ import annotations

from typing import Any

from nbray.common.ids import PlacementGroupID
from nbray.exceptions import RpcError
from nbray.protocol import gcs_pb2

VALID_STRATEGIES = {"PACK": 0, "SPREAD": 1, "STRICT_PACK": 2, "STRICT_SPREAD": 3}


def _core() -> Any:
    from nbray.api import core_or_init

    return core_or_init()


class PlacementGroup:
    """A handle to a placement group."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict[str, float]] | None = None) -> None:
        self.id = id
        self._bundles = bundle_cache

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        if self._bundles is None:
            info = _fetch(self.id.binary())
            self._bundles = [dict(b.amounts) for b in info.bundles] if info is not None else []
        return self._bundles

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that becomes ready when the group is placed."""
        core = _core()
        pg_id = self.id.binary()

        def start(fulfill: Any) -> None:
            def on_reply(reply: Any, error: BaseException | None) -> None:
                if error is not None:
                    fulfill(error, True)
                elif reply.removed:
                    from nbray.exceptions import RayError

                    fulfill(RayError(f"placement group {self.id.hex()} was removed before it was ready"), True)
                else:
                    fulfill(self, False)

            core.gcs.call_async("WaitPlacementGroupReady",
                                gcs_pb2.WaitPlacementGroupReadyRequest(placement_group_id=pg_id),
                                callback=on_reply)

        return core.future_object(start)

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Block until the group is placed; False if that takes longer than the timeout."""
        core = _core()
        reply = core.gcs.call("WaitPlacementGroupReady", gcs_pb2.WaitPlacementGroupReadyRequest(
            placement_group_id=self.id.binary(), timeout_ms=max(1, int(timeout_seconds * 1000))),
            timeout_s=timeout_seconds + 10)
        return bool(reply.ready)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()})"

    def __reduce__(self) -> Any:
        return PlacementGroup, (self.id, self._bundles)


def _fetch(pg_id: bytes) -> gcs_pb2.PlacementGroupInfo | None:
    reply = _core().gcs.call("GetPlacementGroup", gcs_pb2.PlacementGroupIdRequest(placement_group_id=pg_id))
    return reply.placement_group if reply.found else None


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, bundle_label_selector: Any = None,
                    _soft_target_node_id: str | None = None) -> PlacementGroup:
    """Reserve `bundles` (a list of resource dicts), all or nothing."""
    if not isinstance(bundles, list) or not bundles:
        raise ValueError("placement_group() needs a non-empty list of bundles (dicts of resources)")
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not bundle:
            raise ValueError(f"bundle {i} must be a non-empty dict of resources, got {bundle!r}")
        for k, v in bundle.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"bundle {i} asks for {k}={v!r}; amounts must be numbers >= 0")
        if all(v == 0 for v in bundle.values()):
            raise ValueError(f"bundle {i} only has zero resources: {bundle}")
    if strategy not in VALID_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}; use one of {sorted(VALID_STRATEGIES)}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    from nbray.worker import context

    core = _core()
    ctx = context.current()
    pg_id = PlacementGroupID.of(ctx.job_id)
    info = gcs_pb2.PlacementGroupInfo(placement_group_id=pg_id.binary(), name=name, namespace=core.namespace,
                                      strategy=VALID_STRATEGIES[strategy],  # type: ignore[arg-type]
                                      creator_job_id=ctx.job_id,
                                      is_detached=lifetime == "detached")
    info.creator.CopyFrom(core.address)
    for bundle in bundles:
        info.bundles.add().amounts.update({k: float(v) for k, v in bundle.items() if v})
    try:
        core.gcs.call("CreatePlacementGroup", gcs_pb2.CreatePlacementGroupRequest(placement_group=info))
    except RpcError as exc:
        raise ValueError(str(exc).split("] ", 1)[-1]) from None
    return PlacementGroup(pg_id, [dict(b) for b in bundles])


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's resources; tasks and actors still using it are killed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() expects a PlacementGroup, got {type(placement_group).__name__}")
    try:
        _core().gcs.call("RemovePlacementGroup",
                         gcs_pb2.PlacementGroupIdRequest(placement_group_id=placement_group.id.binary()))
    except RpcError as exc:
        if exc.code == "not_found":
            raise ValueError(f"Placement group {placement_group.id.hex()} does not exist; it was never "
                             "created in this cluster or it is already gone.") from None
        raise


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    core = _core()
    reply = core.gcs.call("GetNamedPlacementGroup", gcs_pb2.GetNamedPlacementGroupRequest(
        name=placement_group_name, namespace=core.namespace))
    if not reply.found:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    pg = reply.placement_group
    return PlacementGroup(PlacementGroupID(pg.placement_group_id), [dict(b.amounts) for b in pg.bundles])


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    from nbray.util.state import _PG_STATES, _PG_STRATEGIES

    core = _core()
    if placement_group is not None:
        info = _fetch(placement_group.id.binary())
        return _table_row(info, _PG_STATES, _PG_STRATEGIES) if info is not None else {}
    reply = core.gcs.call("GetAllPlacementGroup")
    return {p.placement_group_id.hex(): _table_row(p, _PG_STATES, _PG_STRATEGIES) for p in reply.placement_groups}


def _table_row(p: gcs_pb2.PlacementGroupInfo, states: dict[int, str], strategies: dict[int, str]) -> dict[str, Any]:
    return {
        "placement_group_id": p.placement_group_id.hex(),
        "name": p.name,
        "bundles": {i: dict(b.amounts) for i, b in enumerate(p.bundles)},
        "bundles_to_node_id": {i: n.hex() for i, n in enumerate(p.bundle_node_ids)},
        "strategy": strategies.get(p.strategy, "PACK"),
        "state": states.get(p.state, "PENDING"),
        "stats": {"scheduling_state": p.pending_reason or "FINISHED"},
    }


def get_current_placement_group() -> PlacementGroup | None:
    """The group of the current task or actor (None in a driver or outside a group)."""
    from nbray.worker import context

    ctx = context.current_or_none()
    if ctx is None or not ctx.placement_group_id:
        return None
    return PlacementGroup(PlacementGroupID(ctx.placement_group_id))
