"""Utilities with Ray-compatible names: placement groups, strategies, state API, ActorPool.

Submodules: ``queue`` (Queue), ``multiprocessing`` (Pool) and ``joblib``
(a joblib backend, needs joblib installed).
"""

from __future__ import annotations

from typing import Any

from nbray.util import accelerators as accelerators  # ray.util.accelerators without an import
from nbray.util import state
from nbray.util.actor_pool import ActorPool
from nbray.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """Names of live named actors (dicts with namespace when all_namespaces)."""
    from nbray.api import core_or_init
    from nbray.protocol import gcs_pb2
    from nbray.worker import context

    core = core_or_init()
    ns = context.current().namespace or core.namespace
    reply = core.gcs.call("ListNamedActors", gcs_pb2.ListNamedActorsRequest(all_namespaces=all_namespaces,
                                                                           namespace=ns))
    if all_namespaces:
        return [{"name": n, "namespace": s} for s, n in zip(reply.namespaces, reply.names)]
    return list(reply.names)


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with this package: they define actor classes,
    # which needs nbray itself fully imported (nbray imports this package early);
    # joblib's also needs joblib installed, and says so on import.
    if name in ("queue", "multiprocessing", "joblib"):
        import importlib

        return importlib.import_module(f"nbray.util.{name}")
    raise AttributeError(f"module 'nbray.util' has no attribute {name!r}")


def get_node_ip_address() -> str:
    from nbray.node.detect import node_ip_address

    return node_ip_address()


__all__ = [
    "ActorPool",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
    "state",
]
