"""Options of remote functions and actors: validation and translation.

Names and defaults follow Ray's ``ray_option_utils``. An unknown option or
a bad value raises ValueError/TypeError naming it, at decoration or
``.options()`` time, not when the task runs.
"""

from __future__ import annotations

import pickle
from typing import Any

from nbray.common.resources import placement_group_demand, validate_request
from nbray.node.detect import ACCELERATOR_RESOURCE_PREFIX
from nbray.protocol import common_pb2
from nbray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

# accelerator_type=T asks for this much of the node's one unit of
# "accelerator_type:T": a sliver, so any number of tasks can share the node.
ACCELERATOR_TYPE_DEMAND = 0.001

_COMMON = {
    "num_cpus", "num_gpus", "resources", "memory", "accelerator_type", "name", "scheduling_strategy",
    "runtime_env", "placement_group", "placement_group_bundle_index",
    "placement_group_capture_child_tasks", "_metadata", "enable_task_events", "label_selector",
    "object_store_memory", "_labels",
}
TASK_OPTIONS = _COMMON | {
    "num_returns", "max_retries", "retry_exceptions", "max_calls", "_generator_backpressure_num_objects",
}
ACTOR_OPTIONS = _COMMON | {
    "namespace", "lifetime", "get_if_exists", "max_restarts", "max_task_retries", "max_concurrency",
    "max_pending_calls", "concurrency_groups", "allow_out_of_order_execution",
}
METHOD_OPTIONS = {
    "num_returns", "max_task_retries", "retry_exceptions", "name", "concurrency_group",
    "enable_task_events", "_generator_backpressure_num_objects", "tensor_transport",
}


def validate(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"Invalid option keyword {key!r} for {what}. Valid ones are: {', '.join(sorted(allowed))}")
        _check_value(key, value, what)
    return options


def _check_value(key: str, value: Any, what: str) -> None:
    if value is None:
        return
    if key in ("num_cpus", "num_gpus", "memory"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} of {what} must be a number >= 0, got {value!r}")
        if key == "num_gpus" and value > 1 and value != int(value):
            raise ValueError(f"num_gpus of {what} is {value}: amounts above 1 must be whole numbers")
    elif key == "resources":
        if not isinstance(value, dict):
            raise TypeError(f"resources of {what} must be a dict, got {type(value).__name__}")
        for name in value:
            if name in ("CPU", "GPU", "memory"):
                raise ValueError(f"use num_cpus/num_gpus/memory instead of resources={{'{name}': ...}} "
                                 f"for {what}")
        validate_request(value, what)
    elif key == "num_returns":
        if value in ("streaming", "dynamic"):
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"num_returns of {what} must be an int >= 0, 'streaming' or 'dynamic', got {value!r}")
    elif key in ("max_retries", "max_restarts", "max_task_retries"):
        if not isinstance(value, int) or isinstance(value, bool) or value < -1:
            raise ValueError(f"{key} of {what} must be an int >= -1 (-1 = unlimited), got {value!r}")
    elif key == "max_concurrency":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"max_concurrency of {what} must be an int >= 1, got {value!r}")
    elif key == "retry_exceptions":
        if not isinstance(value, bool):
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(t, type) and issubclass(t, BaseException) for t in value):
                raise TypeError(f"retry_exceptions of {what} must be a bool or a list of exception "
                                f"classes, got {value!r}")
    elif key == "lifetime":
        if value not in ("detached", "non_detached"):
            raise ValueError(f"lifetime of {what} must be 'detached' or None, got {value!r}")
    elif key == "runtime_env":
        from nbray.runtime_env.spec import validate as validate_runtime_env

        validate_runtime_env(value, what)
    elif key == "scheduling_strategy":
        if not (value in ("DEFAULT", "SPREAD") or isinstance(
                value, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy))):
            raise ValueError(f"scheduling_strategy of {what} must be 'DEFAULT', 'SPREAD', "
                             f"NodeAffinitySchedulingStrategy or PlacementGroupSchedulingStrategy, got {value!r}")
    elif key == "accelerator_type":
        if not isinstance(value, str) or not value:
            raise TypeError(f"accelerator_type of {what} must be a non-empty str such as "
                            f"nbray.util.accelerators.NVIDIA_H100 ('H100'), got {value!r}")
    elif key == "name":
        if not isinstance(value, str):
            raise TypeError(f"name of {what} must be a str, got {type(value).__name__}")
    elif key == "namespace":
        if not isinstance(value, str):
            raise TypeError(f"namespace of {what} must be a str, got {type(value).__name__}")


def resources_of(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    """The resource request of a task or actor from its options."""
    out: dict[str, float] = {}
    cpus = options.get("num_cpus")
    out["CPU"] = float(default_cpus if cpus is None else cpus)
    gpus = options.get("num_gpus")
    if gpus:
        out["GPU"] = float(gpus)
    if options.get("memory"):
        out["memory"] = float(options["memory"])
    for name, value in (options.get("resources") or {}).items():
        out[name] = float(value)
    if options.get("accelerator_type"):
        out[ACCELERATOR_RESOURCE_PREFIX + options["accelerator_type"]] = ACCELERATOR_TYPE_DEMAND
    return {k: v for k, v in out.items() if v}


def apply_scheduling(spec: common_pb2.TaskSpec, options: dict[str, Any],
                     placement: dict[str, float] | None = None) -> None:
    """Fill the spec's strategy; placement group requests are renamed to
    the group's bundle resources."""
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group")
    if pg is not None and pg != "default" and strategy is None:
        strategy = PlacementGroupSchedulingStrategy(
            pg, options.get("placement_group_bundle_index", -1),
            options.get("placement_group_capture_child_tasks"))
    s = spec.scheduling_strategy
    if strategy is None or strategy == "DEFAULT":
        s.kind = common_pb2.SchedulingStrategy.DEFAULT
    elif strategy == "SPREAD":
        s.kind = common_pb2.SchedulingStrategy.SPREAD
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        s.kind = common_pb2.SchedulingStrategy.NODE_AFFINITY
        s.node_id = bytes.fromhex(strategy.node_id)
        s.soft = strategy.soft
    elif isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        if group is None:  # explicit opt-out of capture
            s.kind = common_pb2.SchedulingStrategy.DEFAULT
            spec.runtime_env.env_vars["__nbray_no_capture__"] = "1"
            return
        index = strategy.placement_group_bundle_index
        if index >= group.bundle_count or index < -1:
            raise ValueError(f"placement_group_bundle_index {index} is out of range: the group has "
                             f"{group.bundle_count} bundle(s)")
        s.kind = common_pb2.SchedulingStrategy.PLACEMENT_GROUP
        s.placement_group_id = group.id.binary()
        s.bundle_index = index
        s.capture_child_tasks = bool(strategy.placement_group_capture_child_tasks)
        demand = placement_group_demand(group.id.binary(), index, dict(spec.resources))
        spec.resources.clear()
        spec.resources.update(demand)
        if placement is not None:
            rewritten = placement_group_demand(group.id.binary(), index, placement)
            spec.placement_resources.clear()
            spec.placement_resources.update(rewritten)


def apply_runtime_env(spec: common_pb2.TaskSpec, options: dict[str, Any],
                      inherited: dict[str, Any] | None = None) -> None:
    """Put the task's own runtime environment into its spec (the job's or
    parent's is merged in at submission). Local directories and files are
    packed and uploaded here, once per options value."""
    env: dict[str, str] = {}
    if inherited and inherited.get("env_vars"):
        env.update(inherited["env_vars"])
    runtime_env = options.get("runtime_env")
    if runtime_env:
        from nbray.runtime_env import resolve

        if resolve.needs_setup(runtime_env):
            from nbray.api import core_or_init

            resolved = resolve.prepare(runtime_env, core_or_init().gcs, "the task or actor")
            env.update(resolve.encode(resolved))
        else:
            env.update(runtime_env.get("env_vars") or {})
    if env:
        spec.runtime_env.env_vars.update(env)


def retry_exception_types(value: Any) -> bytes:
    if isinstance(value, (list, tuple)):
        return pickle.dumps(tuple(value))
    return b""
