"""The interface between the notebook layer and the cluster it runs on.

Runs in the notebook kernel. The magics (``dispatch``, ``sessions``), the
output routing (``output``) and the widgets talk to a ``NotebookBackend``
only; two implement it: the nbray runtime (``nbray_runtime``, the default)
and Ray 2.x (``ray_backend``, imports ``ray`` only when chosen).

A remote cell is submitted as a task (``submit_cell``) or to a session actor
(``create_session`` + ``submit_session_cell``) and is then known by the opaque
*run* the backend returned: ``wait_cells`` waits for runs, ``outcome`` gives
the cell's value and ``CellReply`` (the names it sends back) or its error,
``cancel_cell`` stops it. Everything a cell writes (text, ``display()``
markers, end-of-output markers) reaches the output handler given to
``attach_output`` as log batches tagged with the cell's tag (``tag_cell``),
so a cell's output lands under that cell even when it arrives later.

Every method that talks to the cluster raises what its runtime raises for a
lost connection; ``connect`` raises ``ConnectionError`` naming the address it
could not reach and ``BackendUnavailable`` when the runtime is missing or
too old.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BackendUnavailable(RuntimeError):
    """The chosen backend's runtime is not installed, or is too old."""


@dataclass
class CellOutcome:
    """How a finished run ended."""

    value: Any = None
    """The value of the cell's last expression."""
    reply: Any = None
    """The cell's ``remote_cell.CellReply`` (None when it failed)."""
    error: BaseException | None = None
    """The cell's exception (its remote traceback in ``TRACEBACK_ATTR``), or the runtime's error."""


@dataclass
class LogEntry:
    """One piece of a worker's output, shaped like the runtime's ``LogEntry``."""

    text: str
    is_err: bool = False
    context_tag: str = ""
    task_name: str = ""
    pid: int = 0
    node_ip: str = ""


@dataclass
class LogBatch:
    entries: list[LogEntry] = field(default_factory=list)


@dataclass(frozen=True)
class NodeInfo:
    """An alive node, as the magics and the cluster view show it."""

    node_id: str
    node_ip: str
    is_head: bool
    total: dict[str, float]
    available: dict[str, float]
    object_store_used_bytes: int = 0
    object_store_bytes: int = 0
    object_store_spilled_bytes: int = 0
    pending: int = 0
    """Tasks queued on the node (0 where the runtime does not say)."""


OutputHandler = Callable[[Any], None]
"""Called with a log batch (``entries`` of ``LogEntry``-shaped items) on any thread."""


class NotebookBackend(abc.ABC):
    """What the notebook layer needs from a cluster runtime."""

    name: str = ""

    # ---- connection ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def connect(self, address: str | None, **init_kwargs: Any) -> Any:
        """Connect (or start a local cluster); returns the runtime's context."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Leave the cluster (sessions die with the connection)."""

    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    def connection(self) -> Any:
        """An object that changes when the connection does (None when not connected)."""

    @abc.abstractmethod
    def job_id(self) -> str:
        """This driver's job id, hex (the task graph shows its tasks)."""

    # ---- cells ---------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def submit_cell(self, request: Any, resources: dict[str, Any], *, task_name: str, node_id: str = "") -> Any:
        """Run ``remote_cell.run_cell(request)`` as a task with `resources`
        (``num_cpus``/``num_gpus``/``memory``/``resources``), on `node_id` when
        given; returns the run. Raises TypeError when a pushed value cannot
        be serialized."""

    @abc.abstractmethod
    def create_session(self, name: str, options: dict[str, Any], node_id: str = "") -> Any:
        """A new ``remote_cell.RemoteCellSession`` actor holding `options`' resources."""

    @abc.abstractmethod
    def submit_session_cell(self, session: Any, request: Any, *, task_name: str) -> Any:
        """Run `request` in the session actor's namespace; returns the run."""

    @abc.abstractmethod
    def kill_session(self, session: Any) -> None:
        """Kill the session actor (quietly when it is gone already)."""

    @abc.abstractmethod
    def session_id(self, session: Any) -> str:
        """The session actor's id, hex."""

    @abc.abstractmethod
    def wait_cells(self, runs: list[Any], timeout_s: float | None) -> list[Any]:
        """Wait until every run finished or `timeout_s` passed; returns the
        runs still going. KeyboardInterrupt propagates."""

    @abc.abstractmethod
    def outcome(self, run: Any) -> CellOutcome:
        """How a finished run ended."""

    @abc.abstractmethod
    def cancel_cell(self, run: Any, force: bool) -> None:
        """Ask the run to stop (KeyboardInterrupt in the cell); `force`
        stops its worker. Quiet when it finished already."""

    def interrupt_cell_tasks(self, grace_s: float) -> int:
        """The running cell was interrupted: cancel the tasks it submitted,
        forcing those still running after `grace_s`; returns how many were
        asked to stop. Backends whose runtime does this itself keep this
        default (nothing to do)."""
        return 0

    @abc.abstractmethod
    def on_cell_done(self, run: Any, callback: Callable[[BaseException | None], None]) -> bool:
        """Call `callback` with the run's error (None: it succeeded), on any
        thread and without blocking, once the run finished; False when this
        backend cannot notify (the run is then polled)."""

    @abc.abstractmethod
    def async_value(self, run: Any) -> Any:
        """What ``%%remote --async NAME`` binds NAME to: a reference to the
        cell's last expression (an ObjectRef, or a Future on Ray)."""

    # ---- output --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def attach_output(self, handler: OutputHandler) -> bool:
        """Send worker output to `handler`; False when not connected."""

    @abc.abstractmethod
    def detach_output(self, handler: OutputHandler) -> None: ...

    @abc.abstractmethod
    def tag_cell(self, tag: str) -> None:
        """Work submitted from now on belongs to the cell tagged `tag`."""

    @abc.abstractmethod
    def flush_output(self, timeout_s: float) -> None:
        """Barrier: output written so far has reached the handler."""

    def cells_mark_their_end(self) -> bool:
        """Whether remote cells mark the end of all they write (``CellRequest.mark_end``),
        so that seeing their end markers shows all their output has arrived."""
        return False

    def output_checkpoint(self) -> Any:
        """The runtime's task activity now, to hand to ``settle_by_markers``
        (None when it cannot tell)."""
        return None

    def settle_by_markers(self, checkpoint: Any, own_submissions: int) -> Any:
        """Called after remote cells, which submitted `own_submissions` tasks
        since `checkpoint` and none from inside, finished: a token for
        ``output_settled`` when their end markers suffice in place of a
        ``flush_output`` barrier, else None (run the barrier)."""
        return None

    def output_settled(self, token: Any) -> None:
        """The end markers arrived: no barrier is due for what came before `token`."""
        return None

    # ---- objects ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def object_ref_types(self) -> tuple[type, type]:
        """The runtime's (ObjectRef, ObjectRefGenerator) classes."""

    @abc.abstractmethod
    def wait_objects(self, refs: list[Any], timeout_s: float) -> tuple[list[Any], list[Any]]:
        """(ready, pending) of `refs` after at most `timeout_s`, fetching nothing."""

    @abc.abstractmethod
    def object_failed(self, ref: Any) -> bool:
        """True when the ready `ref` holds a task's error."""

    # ---- the cluster ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]:
        """The alive nodes."""

    @abc.abstractmethod
    def list_tasks(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Task rows (``task_id``, ``name``, ``state``, ``parent_task_id``, ``node_id``, ...)."""

    @abc.abstractmethod
    def list_actors(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Actor rows (``actor_id``, ``state``, ``node_id``, ``class_name``, ...)."""

    @abc.abstractmethod
    def list_jobs(self) -> list[dict[str, Any]]:
        """Job rows (``job_id``/``submission_id``, ``status``, ``entrypoint``, ...)."""
