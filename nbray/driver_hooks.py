"""What an embedding of the driver (the notebook layer) may use beyond the
public API: the connected runtime, its worker-output handler, the root task
context that carries a cell's tag, and the log flush barrier.

Runs in the driver process (a notebook kernel, a script). Part of the runtime
core, so it never imports notebook code; the notebook layer reaches runtime
internals only through this module. ``runtime()`` is the driver's core worker
or the client (``nbray://``): both offer a settable ``log_handler`` (called
with each ``gcs_pb2.LogBatch`` on an I/O thread), ``flush_logs(timeout_s)``
and ``gcs.call("GetClusterStatus")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbray.worker.failed_tasks import FailedTask as FailedTask
    from nbray.worker.failed_tasks import FailedTaskLog as FailedTaskLog
    from nbray.worker.failed_tasks import RefArgument as RefArgument


def runtime() -> Any | None:
    """The connected core worker or client, or None."""
    from nbray.object_ref import _core

    if _core[0] is not None:
        return _core[0]
    from nbray import api

    return api._state.client


def driver_core() -> Any | None:
    """The connected core worker when this process is a driver of the
    cluster; None when not connected or a client (``nbray://``)."""
    from nbray.object_ref import _core
    from nbray.worker.core_worker import CoreWorker

    core = _core[0]
    return core if isinstance(core, CoreWorker) else None


def failed_task_log(core: Any) -> FailedTaskLog:
    """The record of the tasks `core` owns that raised (``nbray.worker.failed_tasks``)."""
    from nbray.worker.failed_tasks import log_of

    return log_of(core)


def object_referenced(core: Any, object_id: bytes) -> bool:
    """Whether `core` still counts a reference to `object_id` (else it was freed)."""
    with core.lock:
        return object_id in core.refs.refs


def root_context() -> Any | None:
    """The driver's task context outside tasks (its ``context_tag`` is
    inherited by every task and actor call submitted from it)."""
    from nbray.worker import context

    return context.current_or_none()


def default_log_handler() -> Callable[[Any], None]:
    """The handler that prints worker output as ``(f pid=..)`` lines."""
    from nbray.worker.core_worker import print_logs

    return print_logs


def flush_logs(timeout_s: float) -> bool:
    """Barrier: worker output written so far has reached the log handler.
    False when it may not have (the barrier ran out of time)."""
    flush = getattr(runtime(), "flush_logs", None)
    if flush is None:
        return True
    return flush(timeout_s=timeout_s) is not False


def logs_to_this_driver() -> bool:
    """Whether worker output reaches the connected driver's log handler (a
    driver of the cluster, not a client, started with ``log_to_driver``)."""
    core = driver_core()
    return core is not None and bool(core.config.log_to_driver)


def task_activity() -> tuple[bytes, int, int] | None:
    """(the driver's worker id, tasks it submitted so far, tasks still in
    flight) for the connected driver; None for a client or when not
    connected. Whatever a task prints happens while it is in flight, so
    when neither number moved since a log flush, nothing new can have
    been written since (``flush_logs`` need not run again)."""
    core = driver_core()
    if core is None:
        return None
    return core.worker_id, core.tasks_submitted, len(core.task_manager.pending)


def cluster_status() -> Any:
    """GCS ``GetClusterStatus`` reply: per-node totals, availability, store use.

    Raises RuntimeError when not connected."""
    rt = runtime()
    if rt is None:
        raise RuntimeError("nbray is not initialized; call nbray.init() or %nbray init first")
    return rt.gcs.call("GetClusterStatus")
