"""The notebook layer on a Ray 2.x cluster.

Runs in the notebook kernel; ``ray`` is imported only when this backend is
chosen (``%nbray init --backend ray ADDRESS``), and nbray never replaces
Ray's module: the notebook's own ``import ray`` is the real Ray.
A remote cell is ``ray_worker.stream_cell`` as a streaming-generator task
(or a ``RaySessionActor`` method): a pump thread here reads its output as
it is yielded and hands it to the output handler tagged with the cell that
submitted it, so output lands under that cell even after it finished.
Interrupting cancels the task (``ray.cancel``; forced after the grace
period, or the session actor killed). Interrupting any cell also cancels the
ordinary tasks and actor calls it submitted (``ray_submissions``: the
kernel wraps Ray's two submission methods, or on Ray Client the ``remote``
of its stubs, while connected to note each cell's refs; nothing else of Ray
is wrapped).

On Ray Client (``ray://``) the remote cell is ``ray_worker.run_cell_once``,
one plain task (Ray Client has no streaming generators), and all worker
output comes through Ray Client's log stream (``ray_client_logs``), without
the task identity that placing late output would need.

Output of ordinary tasks and actors reaches the cell that submitted them
through ``ray_logs``: the job's ``worker_process_setup_hook``
(``mark_task_output``, public ``runtime_env`` API) marks each task's output,
and the kernel takes Ray's forwarded worker output from Ray's log dispatcher
(``ray._private.ray_logging.global_worker_stdstream_dispatcher``, an
internal; without it Ray prints as usual and the markers are not written).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from nbray.jupyter.backends.base import (
    BackendUnavailable,
    CellOutcome,
    LogBatch,
    LogEntry,
    NodeInfo,
    NotebookBackend,
    OutputHandler,
)
from nbray.jupyter.backends.ray_client_logs import ClientLogTap, client_log_stream
from nbray.jupyter.backends.ray_logs import RayOutputRouter, TaskMarkingStream, TaskRow
from nbray.jupyter.backends.ray_submissions import CellTasks, SubmissionHook, cancel_tasks, tracked
from nbray.jupyter.output import REMOTE_CELL_TASK

MIN_RAY_VERSION = (2, 50)
INSTALL_HINT = "pip install 'ray[default]>=2.50'"
CONNECT_CHECK_TIMEOUT_S = float(os.environ.get("NBRAY_RAY_CONNECT_CHECK_TIMEOUT_S", "10"))
"""How long the reachability check of a HOST:PORT address may take."""
STATE_API_MAX_ROWS = 10_000
"""Ray's state API refuses larger limits."""
WAIT_SLICE_S = 0.5
"""Waits are cut into slices this long so a kernel interrupt is seen promptly."""
RAY_PRINT_HANDLER = "ray_print_logs"
"""The name Ray gives its printer of forwarded worker output."""
STATE_API_TIMEOUT_S = 10


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.60.0rc1"`` -> (2, 60, 0): the leading numbers of each dotted part."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_ray_version(version: str) -> None:
    """Raises BackendUnavailable when `version` is below ``MIN_RAY_VERSION``."""
    if version_tuple(version)[:2] < MIN_RAY_VERSION:
        wanted = ".".join(map(str, MIN_RAY_VERSION))
        raise BackendUnavailable(f"Ray {version} is installed, but the notebook layer needs Ray >= {wanted}; "
                                 f"upgrade it with: {INSTALL_HINT}")


def tcp_target(address: str | None) -> tuple[str, int] | None:
    """The (host, port) to check before connecting, or None when `address`
    names no fixed endpoint (``None``, ``auto``, ``local``)."""
    if not address or address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"cannot read a Ray address from {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def import_ray() -> Any:
    """The installed ``ray`` module. Raises BackendUnavailable when it is
    missing or too old."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(f"Ray is not installed in this kernel's environment ({exc}); "
                                 f"install it with: {INSTALL_HINT}") from None
    check_ray_version(str(ray.__version__))
    return ray


class RayCellRun:
    """One remote cell on Ray: its generator and the thread reading it."""

    def __init__(self, ray: Any, generator: Any, tag: str, task_name: str, handler: OutputHandler | None,
                 streaming: bool = True) -> None:
        self.ray = ray
        self.generator = generator
        """The streaming generator, or (``streaming`` False, on Ray Client) the ref of the one result."""
        self.streaming = streaming
        self.tag = tag
        self.task_name = task_name
        self.handler = handler
        self.done = threading.Event()
        self.outcome = CellOutcome()
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._callbacks: list[Callable[[BaseException | None], None]] = []
        self._lock = threading.Lock()
        self._pump = threading.Thread(target=self._read, name="nbray-ray-cell-output", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        outcome = CellOutcome(error=RuntimeError("the remote cell ended without a result"))
        try:
            items = (self.ray.get(ref) for ref in self.generator) if self.streaming else [self.ray.get(self.generator)]
            for item in items:
                if item[0] == "out":
                    self._publish(item[1])
                elif item[0] == "result":
                    outcome = CellOutcome(value=item[1], reply=item[2])
                elif item[0] == "error":
                    outcome = CellOutcome(error=item[1])
        except Exception as exc:  # cancelled, worker or actor died: the cell's outcome
            outcome = CellOutcome(error=exc)
        self._finish(outcome)

    def _publish(self, pieces: list[tuple[bool, str]]) -> None:
        if self.handler is None:
            return
        entries = [LogEntry(text=text, is_err=is_err, context_tag=self.tag, task_name=self.task_name)
                   for is_err, text in pieces]
        self.handler(LogBatch(entries))

    def _finish(self, outcome: CellOutcome) -> None:
        with self._lock:
            self.outcome = outcome
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        if outcome.error is not None:
            self.future.set_exception(outcome.error)
        else:
            self.future.set_result(outcome.value)
        for callback in callbacks:
            callback(outcome.error)

    def add_callback(self, callback: Callable[[BaseException | None], None]) -> None:
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback(self.outcome.error)


class RayBackend(NotebookBackend):
    name = "ray"

    def __init__(self) -> None:
        self.ray = import_ray()
        self._stream_task: Any = None
        self._session_class: Any = None
        self._handler: OutputHandler | None = None
        self._tag = ""
        self._connection: object | None = None
        self._output = RayOutputRouter(self._task_row, self._print_as_ray_does)
        self._ray_printer: Callable[[dict[str, Any]], None] | None = None
        self._cell_tasks = CellTasks(ready=self._finished)
        self._submissions: SubmissionHook | None = None
        self._client = False
        self._client_tap: ClientLogTap | None = None
        self._once_task: Any = None
        self._own_submission = threading.local()
        """Set while this backend submits a remote cell: dispatch cancels those itself."""

    # ---- connection -----------------------------------------------------------------------------------------

    def connect(self, address: str | None, **init_kwargs: Any) -> Any:
        """``ray.init(address, ...)``. Raises ConnectionError naming `address`
        when nothing answers there."""
        target = tcp_target(address)
        if target is not None:
            try:
                socket.create_connection(target, timeout=CONNECT_CHECK_TIMEOUT_S).close()
            except OSError as exc:
                raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        init_kwargs.setdefault("log_to_driver", True)
        marks = init_kwargs["log_to_driver"] and not _client_mode(address) and \
            _log_dispatcher() is not None
        if marks:
            init_kwargs["runtime_env"] = with_setup_hook(init_kwargs.get("runtime_env"))
        context = self.ray.init(address=address, **init_kwargs)
        if marks:
            self._take_over_printing()
        self._client = _client_mode(address)
        # Ray Client submits through its own stubs: the hook wraps those there
        self._submissions = SubmissionHook(self.ray, self._record_submission, client=self._client)
        self._submissions.install()
        if self._client and init_kwargs["log_to_driver"] and (stream := client_log_stream(self.ray)) is not None:
            self._client_tap = ClientLogTap(stream, lambda: self._output.windows.current, lambda: self._handler)
            self._client_tap.install()
        self._connection = object()
        return context

    def _take_over_printing(self) -> None:
        """Route forwarded worker output through ``ray_logs`` instead of Ray's printer."""
        dispatcher = _log_dispatcher()
        printers = [h for name, h in getattr(dispatcher, "handlers", []) if name == RAY_PRINT_HANDLER]
        if dispatcher is None or not printers or printers[0] == self._output.on_ray_logs:
            return
        self._ray_printer = printers[0]
        dispatcher.remove_handler(RAY_PRINT_HANDLER)
        # under Ray's name: ray.shutdown removes it as it would remove its own
        dispatcher.add_handler(RAY_PRINT_HANDLER, self._output.on_ray_logs)

    def _print_as_ray_does(self, data: dict[str, Any]) -> None:
        if self._ray_printer is not None:
            self._ray_printer(data)

    def _state_address(self) -> str:
        """The cluster's address for Ray's state API (which otherwise guesses,
        and refuses when several Ray clusters run on this machine)."""
        return str(self.ray.get_runtime_context().gcs_address)

    def _task_row(self, task_id: str) -> TaskRow | None:
        """A task's row from Ray's state API; None when it is not there (yet)
        or the state API cannot be reached."""
        from ray.util.state import list_tasks
        from ray.util.state.exception import RayStateApiException

        try:
            rows = list_tasks(address=self._state_address(), filters=[("task_id", "=", task_id)], detail=True,
                              raise_on_missing_output=False, timeout=STATE_API_TIMEOUT_S)
        except (OSError, RayStateApiException):
            return None  # its output then goes to the running cell
        return _row(rows[0]) if rows else None

    def disconnect(self) -> None:
        if self._submissions is not None:
            self._submissions.uninstall()
            self._submissions = None
        if self._client_tap is not None:
            self._client_tap.uninstall()
            self._client_tap = None
        self.ray.shutdown()
        self._output.stop()
        self._connection = None

    def connected(self) -> bool:
        return self._connection is not None and bool(self.ray.is_initialized())

    def connection(self) -> Any:
        return self._connection if self.connected() else None

    def job_id(self) -> str:
        return str(self.ray.get_runtime_context().get_job_id())

    # ---- cells ----------------------------------------------------------------------------------------------

    def _task(self) -> Any:
        if self._stream_task is None:
            from nbray.jupyter.backends.ray_worker import stream_cell

            self._stream_task = self.ray.remote(stream_cell)
        return self._stream_task

    def _start(self, submit: Callable[[], Any], task_name: str) -> RayCellRun:
        self._own_submission.active = True
        try:
            generator = submit()
        finally:
            self._own_submission.active = False
        return RayCellRun(self.ray, generator, self._tag, task_name, self._handler, streaming=not self._client)

    def submit_cell(self, request: Any, resources: dict[str, Any], *, task_name: str, node_id: str = "") -> Any:
        opts: dict[str, Any] = dict(resources, max_retries=0, name=task_name)
        if node_id:
            opts["scheduling_strategy"] = self._affinity(node_id)
        if self._client:  # Ray Client has no streaming generators: the output comes by its log stream
            if self._once_task is None:
                from nbray.jupyter.backends.ray_worker import run_cell_once

                self._once_task = self.ray.remote(run_cell_once)
            return self._start(lambda: self._once_task.options(**opts).remote(request), task_name)
        return self._start(lambda: self._task().options(num_returns="streaming", **opts).remote(request), task_name)

    def create_session(self, name: str, options: dict[str, Any], node_id: str = "") -> Any:
        if self._session_class is None:
            from nbray.jupyter.backends.ray_worker import RaySessionActor

            self._session_class = self.ray.remote(RaySessionActor)
        actor_options: dict[str, Any] = dict(options, max_restarts=0, max_concurrency=1)
        if node_id:
            actor_options["scheduling_strategy"] = self._affinity(node_id)
        return self._session_class.options(**actor_options).remote(name, f"{REMOTE_CELL_TASK} --session {name}")

    def submit_session_cell(self, session: Any, request: Any, *, task_name: str) -> Any:
        if self._client:
            return self._start(lambda: session.run_once.options(name=task_name).remote(request), task_name)
        return self._start(lambda: session.run.options(num_returns="streaming", name=task_name).remote(request),
                           task_name)

    def kill_session(self, session: Any) -> None:
        if self.connected():
            try:
                self.ray.kill(session)
            except ValueError:
                pass  # already gone

    def session_id(self, session: Any) -> str:
        return str(session._actor_id.hex())

    def wait_cells(self, runs: list[Any], timeout_s: float | None) -> list[Any]:
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for run in runs:
            while not run.done.is_set():
                left = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, deadline - time.monotonic())
                if left <= 0 or run.done.wait(left):
                    break
        return [run for run in runs if not run.done.is_set()]

    def outcome(self, run: Any) -> CellOutcome:
        return run.outcome  # type: ignore[no-any-return]

    def cancel_cell(self, run: Any, force: bool) -> None:
        if run.done.is_set():
            return
        try:
            self.ray.cancel(run.generator, force=force)
        except (ValueError, TypeError, self.ray.exceptions.RayError):
            pass  # finished meanwhile, or an actor task (the session is killed instead)

    def interrupt_cell_tasks(self, grace_s: float) -> int:
        """Cancel what the interrupted cell submitted; the grace period and
        the forced cancel run on a thread of their own, so the kernel is
        free at once. Returns how many tasks were asked to stop."""
        tasks = self._cell_tasks.take()
        if tasks and self.connected():
            threading.Thread(target=cancel_tasks, args=(self.ray, tasks, grace_s), name="nbray-ray-cancel",
                             daemon=True).start()
        return len(tasks)

    def _record_submission(self, returned: Any, actor_call: bool) -> None:
        if getattr(self._own_submission, "active", False):
            return
        task = tracked(returned, actor_call, self.ray.ObjectRefGenerator)
        if task is not None:
            self._cell_tasks.add(task)

    def _finished(self, refs: list[Any]) -> list[Any]:
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        return list(ready)

    def on_cell_done(self, run: Any, callback: Callable[[BaseException | None], None]) -> bool:
        run.add_callback(callback)
        return True

    def async_value(self, run: Any) -> Any:
        return run.future

    # ---- output ---------------------------------------------------------------------------------------------

    def attach_output(self, handler: OutputHandler) -> bool:
        if not self.connected():
            return False
        self._handler = self._output.handler = handler
        return True

    def detach_output(self, handler: OutputHandler) -> None:
        if self._handler == handler:
            self._handler = self._output.handler = None

    def tag_cell(self, tag: str) -> None:
        self._tag = tag
        self._cell_tasks.begin(tag)
        self._output.begin_cell(tag)

    def flush_output(self, timeout_s: float) -> None:
        """A cell's output is handed over before its outcome: nothing waits."""

    # ---- objects ------------------------------------------------------------------------------------------

    def object_ref_types(self) -> tuple[type, type]:
        return self.ray.ObjectRef, self.ray.ObjectRefGenerator

    def wait_objects(self, refs: list[Any], timeout_s: float) -> tuple[list[Any], list[Any]]:
        ready, pending = self.ray.wait(refs, num_returns=len(refs), timeout=timeout_s, fetch_local=False)
        return list(ready), list(pending)

    def object_failed(self, ref: Any) -> bool:
        """Reads the value (Ray has no public way to ask whether an object is an error)."""
        try:
            self.ray.get(ref, timeout=0)
        except self.ray.exceptions.GetTimeoutError:
            return False
        except self.ray.exceptions.RayError:
            return True
        return False

    # ---- the cluster ----------------------------------------------------------------------------------------

    def _affinity(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id, soft=False)

    def nodes(self) -> list[NodeInfo]:
        available = {} if self._client else _available_per_node(self.ray)  # a driver-only call
        out = []
        for n in self.ray.nodes():
            if not n.get("Alive"):
                continue
            total = {k: float(v) for k, v in n.get("Resources", {}).items() if not k.startswith("node:")}
            node_id = str(n["NodeID"])
            out.append(NodeInfo(node_id=node_id, node_ip=str(n.get("NodeManagerAddress", "")),
                                is_head="node:__internal_head__" in n.get("Resources", {}), total=total,
                                available=available.get(node_id, total),
                                object_store_bytes=int(n.get("Resources", {}).get("object_store_memory", 0))))
        return out

    def list_tasks(self, limit: int = 1000) -> list[dict[str, Any]]:
        from ray.util.state import list_tasks

        return [_row(t) for t in list_tasks(address=self._state_address(), limit=min(limit, STATE_API_MAX_ROWS),
                                              raise_on_missing_output=False)]

    def list_actors(self, limit: int = 1000) -> list[dict[str, Any]]:
        from ray.util.state import list_actors

        return [_row(a) for a in list_actors(address=self._state_address(), limit=min(limit, STATE_API_MAX_ROWS),
                                               raise_on_missing_output=False)]

    def list_jobs(self) -> list[dict[str, Any]]:
        from ray.util.state import list_jobs

        return [_row(j) for j in list_jobs(address=self._state_address(), raise_on_missing_output=False)]


def mark_task_output() -> None:
    """The job's ``worker_process_setup_hook``: each task's output, in a
    Ray worker, starts with a line naming the task (``ray_logs``)."""
    import sys

    import ray

    def task_id() -> str | None:
        return ray.get_runtime_context().get_task_id()

    if not isinstance(sys.stdout, TaskMarkingStream):
        sys.stdout = TaskMarkingStream(sys.stdout, task_id)
    if not isinstance(sys.stderr, TaskMarkingStream):
        sys.stderr = TaskMarkingStream(sys.stderr, task_id)


def with_setup_hook(runtime_env: Any) -> dict[str, Any]:
    """`runtime_env` (a dict or None) with ``mark_task_output`` as its
    worker setup hook; one the user set is kept (their output then goes to
    the running cell, as Ray prints it)."""
    if runtime_env is not None and not isinstance(runtime_env, dict):
        runtime_env = dict(runtime_env)
    env = dict(runtime_env or {})
    env.setdefault("worker_process_setup_hook", mark_task_output)
    return env


def _client_mode(address: str | None) -> bool:
    return str(address or "").startswith("ray://")


def _log_dispatcher() -> Any:
    """Ray's dispatcher of forwarded worker output (None where this Ray has none)."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher  # no public surface for this
    except ImportError:
        return None
    needed = ("handlers", "add_handler", "remove_handler")
    return global_worker_stdstream_dispatcher if all(hasattr(global_worker_stdstream_dispatcher, n)
                                                     for n in needed) else None


def _row(state: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.asdict(state)
    return dict(state)


def _available_per_node(ray: Any) -> dict[str, dict[str, float]]:
    """Per-node available resources; {} when this Ray does not say (the
    cluster view then shows totals)."""
    try:
        from ray._private.state import available_resources_per_node  # no public per-node call in Ray 2.x
    except ImportError:
        return {}
    return {node: {k: float(v) for k, v in res.items()} for node, res in available_resources_per_node().items()}
