"""Resource amounts and per-node accounting (pure logic).

Amounts are kept as integers in units of 1/10000 (Ray's precision), so
repeatedly taking and giving back 0.1 CPU never drifts. GPUs (and any
resource listed in INSTANCE_RESOURCES) are also tracked per instance, so
a lease learns exactly which GPU ids it holds.
"""

from __future__ import annotations

from collections.abc import Mapping

PRECISION = 10_000
INSTANCE_RESOURCES = ("GPU",)
CPU = "CPU"
GPU = "GPU"
MEMORY = "memory"
OBJECT_STORE_MEMORY = "object_store_memory"

FixedSet = dict[str, int]


def to_fixed(amounts: Mapping[str, float]) -> FixedSet:
    out: FixedSet = {}
    for name, value in amounts.items():
        fixed = int(round(float(value) * PRECISION))
        if fixed:
            out[name] = fixed
    return out


def to_float(amounts: Mapping[str, int]) -> dict[str, float]:
    return {name: value / PRECISION for name, value in amounts.items()}


def validate_request(amounts: Mapping[str, float], what: str = "task") -> dict[str, float]:
    """Check a resource request as Ray does; returns it with zeros removed."""
    out = {}
    for name, value in amounts.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"resource {name!r} of the {what} must be a number, got {value!r}") from None
        if value < 0:
            raise ValueError(f"resource {name!r} of the {what} must be >= 0, got {value}")
        if name == GPU and value > 1 and value != int(value):
            raise ValueError(
                f"num_gpus of the {what} is {value}: amounts above 1 must be whole numbers"
            )
        if abs(value * PRECISION - round(value * PRECISION)) > 1e-6:
            raise ValueError(f"resource {name!r}={value} has more than 4 decimal places")
        if value:
            out[name] = value
    return out


class Allocation:
    """Resources held by one lease, with the instances taken."""

    __slots__ = ("amounts", "instances")

    def __init__(self, amounts: FixedSet, instances: dict[str, list[tuple[int, int]]]) -> None:
        self.amounts = amounts
        # resource -> [(instance index, fixed amount taken)]
        self.instances = instances

    def instance_ids(self) -> dict[str, list[int]]:
        return {name: [idx for idx, _ in taken] for name, taken in self.instances.items()}


class NodeResources:
    """Total and available resources of one node."""

    def __init__(self, total: Mapping[str, float]) -> None:
        self.total: FixedSet = to_fixed(total)
        self.available: FixedSet = dict(self.total)
        self.instances: dict[str, list[int]] = {}
        for name in INSTANCE_RESOURCES:
            count = self.total.get(name, 0) // PRECISION
            if count:
                self.instances[name] = [PRECISION] * count

    def is_feasible(self, demand: FixedSet) -> bool:
        total = self.total
        return all(total.get(name, 0) >= amount for name, amount in demand.items())

    def is_available(self, demand: FixedSet) -> bool:
        available = self.available
        for name, amount in demand.items():
            if available.get(name, 0) < amount:
                return False
            if name in self.instances and not self._instances_fit(name, amount):
                return False
        return True

    def _instances_fit(self, name: str, amount: int) -> bool:
        return self._pick_instances(name, amount) is not None

    def _pick_instances(self, name: str, amount: int) -> list[tuple[int, int]] | None:
        slots = self.instances[name]
        if amount < PRECISION:
            # Fractional: the fullest instance that still fits (pack fractions).
            best = None
            for idx, free in enumerate(slots):
                if free >= amount and (best is None or free < slots[best]):
                    best = idx
            return None if best is None else [(best, amount)]
        whole = amount // PRECISION
        picked = [idx for idx, free in enumerate(slots) if free == PRECISION][:whole]
        if len(picked) < whole:
            return None
        return [(idx, PRECISION) for idx in picked]

    def allocate(self, demand: FixedSet) -> Allocation | None:
        if not self.is_available(demand):
            return None
        taken: dict[str, list[tuple[int, int]]] = {}
        for name, amount in demand.items():
            if name in self.instances:
                picks = self._pick_instances(name, amount)
                assert picks is not None
                for idx, part in picks:
                    self.instances[name][idx] -= part
                taken[name] = picks
            self.available[name] = self.available.get(name, 0) - amount
        return Allocation(dict(demand), taken)

    def free(self, allocation: Allocation) -> None:
        for name, amount in allocation.amounts.items():
            self.available[name] = self.available.get(name, 0) + amount
        for name, picks in allocation.instances.items():
            for idx, part in picks:
                self.instances[name][idx] += part

    def take(self, amounts: FixedSet) -> None:
        """Take amounts without checks (a blocked task resuming may overcommit)."""
        for name, amount in amounts.items():
            self.available[name] = self.available.get(name, 0) - amount

    def give(self, amounts: FixedSet) -> None:
        for name, amount in amounts.items():
            self.available[name] = self.available.get(name, 0) + amount

    def add_capacity(self, amounts: FixedSet) -> None:
        """Grow the node (placement group bundle resources)."""
        for name, amount in amounts.items():
            self.total[name] = self.total.get(name, 0) + amount
            self.available[name] = self.available.get(name, 0) + amount

    def remove_capacity(self, amounts: FixedSet) -> None:
        for name, amount in amounts.items():
            self.total[name] = self.total.get(name, 0) - amount
            self.available[name] = self.available.get(name, 0) - amount
            if self.total[name] <= 0:
                self.total.pop(name, None)
                self.available.pop(name, None)

    def utilization(self) -> float:
        """Highest used fraction over the resources the node has."""
        worst = 0.0
        for name, total in self.total.items():
            if total <= 0 or name.startswith("node:") or name == OBJECT_STORE_MEMORY:
                continue
            used = total - self.available.get(name, 0)
            worst = max(worst, used / total)
        return worst

    def total_float(self) -> dict[str, float]:
        return to_float(self.total)

    def available_float(self) -> dict[str, float]:
        return to_float({k: max(0, v) for k, v in self.available.items()})


BUNDLE_MARKER_AMOUNT = 1000.0
BUNDLE_REQUEST_AMOUNT = 0.001


def bundle_resources(pg_id: bytes, index: int, amounts: Mapping[str, float]) -> dict[str, float]:
    """Resources a node offers once a placement group bundle is committed.

    Each resource R of bundle i of group G appears as ``R_group_G`` (any
    bundle) and ``R_group_i_G`` (that bundle), plus markers so requests with
    no resources can still be pinned to the group.
    """
    hex_id = pg_id.hex()
    out: dict[str, float] = {}
    for name, amount in amounts.items():
        out[f"{name}_group_{hex_id}"] = out.get(f"{name}_group_{hex_id}", 0.0) + amount
        out[f"{name}_group_{index}_{hex_id}"] = amount
    out[f"bundle_group_{hex_id}"] = BUNDLE_MARKER_AMOUNT
    out[f"bundle_group_{index}_{hex_id}"] = BUNDLE_MARKER_AMOUNT
    return out


def placement_group_demand(pg_id: bytes, index: int, amounts: Mapping[str, float]) -> dict[str, float]:
    """Rewrite a request so it runs inside bundle `index` (-1: any bundle)."""
    hex_id = pg_id.hex()
    if index < 0:
        out = {f"{name}_group_{hex_id}": amount for name, amount in amounts.items() if amount}
        out[f"bundle_group_{hex_id}"] = BUNDLE_REQUEST_AMOUNT
    else:
        out = {f"{name}_group_{index}_{hex_id}": amount for name, amount in amounts.items() if amount}
        out[f"bundle_group_{index}_{hex_id}"] = BUNDLE_REQUEST_AMOUNT
    return out
