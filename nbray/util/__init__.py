"""Utilities with Ray-compatible names: placement groups, strategies, state API, ActorPool.

Submodules: ``queue`` (Queue), ``multiprocessing`` (Pool) and ``joblib``
(a joblib backend, needs joblib installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbray._lazy import lazy_attribute

# Other names are bound on first use (PEP 562), not when this package is
# imported: workers and drivers import ``nbray.util.metrics`` at start-up,
# which imports this package first, and neither needs the state API or
# ActorPool then. ``from nbray.util import X`` and ``nbray.util.X`` give the
# same objects as an eager import would.
_LAZY_NAMES: dict[str, str] = {
    "ActorPool": "nbray.util.actor_pool",
}

# Loaded now, not on first use: the function ``placement_group`` shares its
# name with its module, and a later ``import nbray.util.placement_group``
# would otherwise leave the module where the function belongs. The module
# needs nothing a core worker has not loaded already.
from nbray.util.placement_group import (  # noqa: E402
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

if TYPE_CHECKING:
    from nbray.util import accelerators as accelerators
    from nbray.util import state as state
    from nbray.util.actor_pool import ActorPool as ActorPool


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


def get_node_ip_address() -> str:
    from nbray.node.detect import node_ip_address

    return node_ip_address()


def __getattr__(name: str) -> Any:
    """A public name or a submodule (``state``, ``queue``, ``accelerators``, ...) on first use.

    The submodules that define actor classes (``queue``, ``multiprocessing``)
    need nbray itself imported, and ``joblib`` needs joblib installed: all
    the more reason to load them only when asked for.
    """
    return lazy_attribute(globals(), _LAZY_NAMES, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES) | set(__all__) | {"accelerators", "state"})


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
