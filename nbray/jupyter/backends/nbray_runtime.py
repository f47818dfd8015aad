"""The notebook layer on the nbray runtime (the default backend).

Runs in the notebook kernel. A remote cell is ``remote_cell.run_cell`` as a
task with two returns (the last expression's value, the ``CellReply``); its
output comes through the driver's log handler (``nbray.driver_hooks``),
tagged by the root task context that the cell's tag is written into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nbray
from nbray import driver_hooks
from nbray.exceptions import RayError
from nbray.jupyter.backends.base import CellOutcome, NodeInfo, NotebookBackend, OutputHandler
from nbray.jupyter.log_barrier import Activity, barrier_needed, settled_by_markers


@dataclass
class NbrayCellRun:
    value_ref: Any
    meta_ref: Any
    ended: CellOutcome | None = None
    """The outcome, once read (read once, however often it is asked for)."""


class NbrayRuntimeBackend(NotebookBackend):
    name = "nbray"

    def __init__(self) -> None:
        self._run_cell_task: Any = None
        self._attached_to: Any = None
        self._previous_handler: OutputHandler | None = None
        self._settled: Activity | None = None  # task activity just before the last log barrier

    # ---- connection ---------------------------------------------------------------------------------------

    def connect(self, address: str | None, **init_kwargs: Any) -> Any:
        return nbray.init(address, **init_kwargs)

    def disconnect(self) -> None:
        nbray.shutdown()

    def connected(self) -> bool:
        return nbray.is_initialized()

    def connection(self) -> Any:
        return driver_hooks.runtime()

    def job_id(self) -> str:
        return str(nbray.get_runtime_context().get_job_id())

    # ---- cells --------------------------------------------------------------------------------------------

    def _task(self) -> Any:
        if self._run_cell_task is None:
            from nbray.jupyter.remote_cell import run_cell

            self._run_cell_task = nbray.remote(run_cell)
        return self._run_cell_task

    def submit_cell(self, request: Any, resources: dict[str, Any], *, task_name: str, node_id: str = "") -> Any:
        opts: dict[str, Any] = dict(resources, num_returns=2, max_retries=0, name=task_name)
        if node_id:
            opts["scheduling_strategy"] = _affinity(node_id)
        value_ref, meta_ref = self._task().options(**opts).remote(request)
        return NbrayCellRun(value_ref, meta_ref)

    def create_session(self, name: str, options: dict[str, Any], node_id: str = "") -> Any:
        from nbray.jupyter.remote_cell import RemoteCellSession

        actor_options: dict[str, Any] = dict(options, max_restarts=0, max_concurrency=1)
        if node_id:
            actor_options["scheduling_strategy"] = _affinity(node_id)
        return nbray.remote(RemoteCellSession).options(**actor_options).remote(name)

    def submit_session_cell(self, session: Any, request: Any, *, task_name: str) -> Any:
        value_ref, meta_ref = session.run.options(num_returns=2, name=task_name).remote(request)
        return NbrayCellRun(value_ref, meta_ref)

    def kill_session(self, session: Any) -> None:
        if nbray.is_initialized():
            _quiet(nbray.kill, session)

    def session_id(self, session: Any) -> str:
        return str(session._ray_actor_id.hex())

    def wait_cells(self, runs: list[Any], timeout_s: float | None) -> list[Any]:
        if not runs:
            return []
        refs = [r.meta_ref for r in runs]
        _ready, pending = nbray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=False)
        still = set(pending)  # refs compare by object id
        return [r for r in runs if r.meta_ref in still]

    def outcome(self, run: Any) -> CellOutcome:
        if run.ended is None:
            try:
                reply = nbray.get(run.meta_ref)
                run.ended = CellOutcome(value=nbray.get(run.value_ref), reply=reply)
            except RayError as exc:
                run.ended = CellOutcome(error=exc)
        return run.ended  # type: ignore[no-any-return]

    def cancel_cell(self, run: Any, force: bool) -> None:
        _quiet(nbray.cancel, run.value_ref, force=force)

    def on_cell_done(self, run: Any, callback: Callable[[BaseException | None], None]) -> bool:
        try:
            future = run.meta_ref.future()
        except (AttributeError, RuntimeError, NotImplementedError):
            return False
        future.add_done_callback(lambda f: callback(f.exception()))
        return True

    def async_value(self, run: Any) -> Any:
        return run.value_ref

    # ---- output ---------------------------------------------------------------------------------------------

    def attach_output(self, handler: OutputHandler) -> bool:
        rt = driver_hooks.runtime()
        if rt is None or not hasattr(rt, "log_handler"):
            return False
        if rt is self._attached_to and rt.log_handler == handler:
            return True
        if rt.log_handler != handler:
            self._previous_handler = rt.log_handler
        rt.log_handler = handler
        self._attached_to = rt
        return True

    def detach_output(self, handler: OutputHandler) -> None:
        rt = self._attached_to
        if rt is not None and rt.log_handler == handler:
            rt.log_handler = self._previous_handler or driver_hooks.default_log_handler()
        self._attached_to = None

    def tag_cell(self, tag: str) -> None:
        ctx = driver_hooks.root_context()
        if ctx is not None and tag:
            ctx.context_tag = tag

    def flush_output(self, timeout_s: float) -> None:
        now = _activity()
        if not barrier_needed(self._settled, now):
            return  # nothing was submitted or in flight since the last barrier
        complete = driver_hooks.flush_logs(timeout_s)
        self._settled = now if complete else None

    def cells_mark_their_end(self) -> bool:
        return driver_hooks.logs_to_this_driver()

    def output_checkpoint(self) -> Any:
        return _activity()

    def settle_by_markers(self, checkpoint: Any, own_submissions: int) -> Any:
        return settled_by_markers(self._settled, checkpoint, _activity(), own_submissions)

    def output_settled(self, token: Any) -> None:
        if isinstance(token, Activity):
            self._settled = token

    # ---- objects -------------------------------------------------------------------------------------------

    def object_ref_types(self) -> tuple[type, type]:
        return nbray.ObjectRef, nbray.ObjectRefGenerator

    def wait_objects(self, refs: list[Any], timeout_s: float) -> tuple[list[Any], list[Any]]:
        ready, pending = nbray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=False)
        return list(ready), list(pending)

    def object_failed(self, ref: Any) -> bool:
        from nbray.jupyter.reprs import ref_failed

        return ref_failed(ref)

    # ---- the cluster -----------------------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        status = driver_hooks.cluster_status()
        heads = {n["NodeID"] for n in nbray.nodes() if n.get("IsHead")}
        return [NodeInfo(node_id=n.node_id.hex(), node_ip=n.node_ip, is_head=n.node_id.hex() in heads,
                         total=dict(n.total), available=dict(n.available),
                         object_store_used_bytes=n.object_store_used_bytes,
                         object_store_bytes=n.object_store_bytes) for n in status.nodes]

    def list_tasks(self, limit: int = 1000) -> list[dict[str, Any]]:
        from nbray.util.state import list_tasks

        return list_tasks(limit=limit)

    def list_actors(self, limit: int = 1000) -> list[dict[str, Any]]:
        from nbray.util.state import list_actors

        return list_actors(limit=limit)

    def list_jobs(self) -> list[dict[str, Any]]:
        from nbray.util.state import list_jobs

        return list_jobs()


def _affinity(node_id: str) -> Any:
    from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except (RayError, ValueError, TypeError):
        pass  # already finished, or gone


def _activity() -> Activity | None:
    state = driver_hooks.task_activity()
    return Activity(*state) if state is not None else None
