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

from typing import Any

from nbray import cloudpickle as cloudpickle  # ray.cloudpickle works without an import too
from nbray import exceptions
from nbray._version import __version__
from nbray.actor import ActorClass, exit_actor, method
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
from nbray.remote_function import RemoteFunction


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



actor = __import__("nbray.actor", fromlist=["actor"])

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
