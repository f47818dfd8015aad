"""nbray: Ray-compatible distributed computing, built for notebooks.

``import nbray as ray`` runs programs written for Ray's core API::

    import nbray as ray

    ray.init()

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]
"""

from __future__ import annotations

from nbray._lazy import lazy_attribute
from nbray._version import __version__

# Not ``typing.TYPE_CHECKING``: every cluster process imports this package
# first, and typing alone costs more than the rest of it (type checkers
# treat the name itself as true).
TYPE_CHECKING = False

# The public names are bound on first use (PEP 562), not at ``import nbray``:
# every cluster process (GCS, raylet, worker factory) is started as
# ``python -m nbray.<module>`` and so imports this package first, and none of
# them needs the driver's API. A name resolves to the same object as before;
# after its first use it is an ordinary attribute of the module.
_LAZY_NAMES: dict[str, str] = {
    **dict.fromkeys(("ActorClass", "exit_actor", "method"), "nbray.actor"),
    **dict.fromkeys(("available_resources", "cancel", "cluster_resources", "get", "get_actor", "get_gpu_ids",
                     "get_runtime_context", "init", "is_initialized", "kill", "nodes", "put", "shutdown",
                     "timeline", "wait"), "nbray.api"),
    "RayContext": "nbray.cluster_context",
    **dict.fromkeys(("ActorClassID", "ActorID", "FunctionID", "JobID", "NodeID", "ObjectID", "PlacementGroupID",
                     "TaskID", "UniqueID", "WorkerID"), "nbray.common.ids"),
    **dict.fromkeys(("DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator"), "nbray.object_ref"),
    "RemoteFunction": "nbray.remote_function",
}

if TYPE_CHECKING:
    from typing import Any

    from nbray import actor as actor
    from nbray import cloudpickle as cloudpickle
    from nbray import exceptions as exceptions
    from nbray.actor import ActorClass as ActorClass
    from nbray.actor import exit_actor as exit_actor
    from nbray.actor import method as method
    from nbray.api import (
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_actor,
        get_gpu_ids,
        get_runtime_context,
        init,
        is_initialized,
        kill,
        nodes,
        put,
        shutdown,
        timeline,
        wait,
    )
    from nbray.cluster_context import RayContext
    from nbray.common.ids import (
        ActorClassID,
        ActorID,
        FunctionID,
        JobID,
        NodeID,
        ObjectID,
        PlacementGroupID,
        TaskID,
        UniqueID,
        WorkerID,
    )
    from nbray.object_ref import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator
    from nbray.remote_function import RemoteFunction as RemoteFunction


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (``nbray.util``, ``nbray.exceptions``, ...), on first use."""
    return lazy_attribute(globals(), _LAZY_NAMES, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES) | set(__all__))


def remote(*args: Any, **kwargs: Any) -> Any:
    """Make a function a remote function, or a class an actor class.

    Use bare (``@nbray.remote``) or with options
    (``@nbray.remote(num_cpus=2, num_gpus=1)``).
    """
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError(
            "The @nbray.remote decorator must be applied either with no arguments and no parentheses, "
            "e.g. '@nbray.remote', or with keyword arguments, e.g. '@nbray.remote(num_cpus=1)'.")

    def decorate(target: Any) -> Any:
        return _make_remote(target, kwargs)

    return decorate


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    import inspect

    from nbray.actor import ActorClass
    from nbray.remote_function import RemoteFunction

    if inspect.isclass(target):
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise TypeError("The @nbray.remote decorator must be applied to either a function or a class.")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbray``: the %nbray, %%remote and %remote magics."""
    from nbray.jupyter.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbray.jupyter.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """JupyterLab's hook: the prebuilt extension in nbray/labextension."""
    from nbray.jupyter.server_extension import _jupyter_labextension_paths as paths

    return paths()


__all__ = [
    "ActorClassID",
    "ActorID",
    "FunctionID",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "DynamicObjectRefGenerator",
    "PlacementGroupID",
    "RayContext",
    "TaskID",
    "UniqueID",
    "WorkerID",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "exit_actor",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]
