"""The public API is deliberate: it matches the Ray names nbray promises."""

import nbray

RAY_CORE_NAMES = {
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel", "kill", "get_actor",
    "method", "nodes", "cluster_resources", "available_resources", "get_runtime_context", "get_gpu_ids",
    "timeline", "ObjectRef", "ObjectRefGenerator", "exceptions", "actor", "JobID", "NodeID", "TaskID",
    "ActorID", "ObjectID", "WorkerID", "PlacementGroupID", "UniqueID", "FunctionID", "ActorClassID",
    "exit_actor", "DynamicObjectRefGenerator",
}


def test_all_lists_exactly_what_is_exported():
    assert set(nbray.__all__) >= RAY_CORE_NAMES
    for name in nbray.__all__:
        assert hasattr(nbray, name), name


def test_util_and_exceptions_names():
    import nbray.exceptions as e
    import nbray.util as u
    from nbray.util import scheduling_strategies as s

    for name in ("placement_group", "remove_placement_group", "placement_group_table",
                 "get_current_placement_group", "ActorPool", "list_named_actors", "state"):
        assert hasattr(u, name), name
    for name in ("NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"):
        assert hasattr(s, name), name
    assert issubclass(e.GetTimeoutError, TimeoutError)
    assert issubclass(e.ActorDiedError, e.RayActorError)
    assert issubclass(e.OwnerDiedError, e.ObjectLostError)
    assert issubclass(e.ActorAlreadyExistsError, ValueError)
    for name in e.__all__:
        assert issubclass(getattr(e, name), e.RayError)


def test_private_paths_ray_programs_import():
    from nbray import cloudpickle
    from nbray._private.internal_api import memory_summary
    from nbray._raylet import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator
    from nbray.util.accelerators import NVIDIA_H100, NVIDIA_TESLA_V100

    assert (ObjectRef, ObjectRefGenerator, DynamicObjectRefGenerator) == (
        nbray.ObjectRef, nbray.ObjectRefGenerator, nbray.DynamicObjectRefGenerator)
    assert callable(cloudpickle.dumps) and callable(memory_summary)
    assert (NVIDIA_H100, NVIDIA_TESLA_V100) == ("H100", "V100")


def test_remote_task_error_is_also_the_users_exception():
    err = nbray.exceptions.RayTaskError("f", "Traceback...", KeyError("k")).as_instanceof_cause()
    assert isinstance(err, KeyError) and isinstance(err, nbray.exceptions.RayTaskError)
    assert err.args == ("k",)


def test_util_libraries_names():
    import multiprocessing
    import queue

    import nbray.util as u
    from nbray.util.multiprocessing import Pool, TimeoutError
    from nbray.util.queue import Empty, Full, Queue

    assert u.queue.Queue is Queue and u.multiprocessing.Pool is Pool
    assert issubclass(Empty, queue.Empty) and issubclass(Full, queue.Full)
    assert TimeoutError is multiprocessing.TimeoutError
    for name in ("put", "get", "put_nowait", "put_nowait_batch", "get_nowait", "get_nowait_batch", "qsize",
                 "size", "empty", "full", "put_async", "get_async", "shutdown"):
        assert callable(getattr(Queue, name)), name
    for name in ("map", "map_async", "imap", "imap_unordered", "starmap", "starmap_async", "apply",
                 "apply_async", "close", "terminate", "join", "__enter__", "__exit__"):
        assert callable(getattr(Pool, name)), name
