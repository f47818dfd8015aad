"""The few runtime hooks the notebook integration uses beyond the public API.

Runs in the notebook kernel. The same calls work for a driver
(``nbray.init("HOST:PORT")``) and for a client (``nbray://``): the object
returned by ``runtime()`` is the driver's core worker, or the client,
and must offer ``log_handler`` (settable: called with each
``gcs_pb2.LogBatch`` on an I/O thread), ``flush_logs(timeout_s)`` and
``gcs.call("GetClusterStatus")``.
"""

from __future__ import annotations

from typing import Any


def runtime() -> Any | None:
    """The connected core worker or client, or None."""
    from nbray.object_ref import _core

    if _core[0] is not None:
        return _core[0]
    from nbray import api

    return api._state.client


def root_context() -> Any | None:
    """The driver's task context outside tasks (carries the cell tag)."""
    from nbray.worker import context

    return context.current_or_none()


def flush_logs(timeout_s: float) -> None:
    """Barrier: worker output written so far has reached the log handler."""
    rt = runtime()
    flush = getattr(rt, "flush_logs", None)
    if flush is not None:
        flush(timeout_s=timeout_s)


def cluster_status() -> Any:
    """GCS ``GetClusterStatus`` reply: per-node totals, availability, store use."""
    rt = runtime()
    if rt is None:
        raise RuntimeError("nbray is not initialized; call nbray.init() or %nbray init first")
    return rt.gcs.call("GetClusterStatus")
