"""Submits a notebook cell to the cluster and brings its results back.

Runs in the notebook kernel (the local half of ``%%remote``). Steps: parse
the cell (``cell_analysis``), pick the notebook variables it reads, submit
``remote_cell.run_cell`` as a task (or a session actor call, or one task
per node), wait (Ctrl-C cancels: gently, then by force), wait for the
cell's output to have arrived, assign the variables it bound, and return
the value of its last expression or raise its exception as the original
type with the remote traceback.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

from nbray.exceptions import RayTaskError
from nbray.jupyter import backends
from nbray.jupyter.backends import NotebookBackend
from nbray.jupyter.cell_analysis import CellAnalysis, analyze_cell
from nbray.jupyter.magic_options import RemoteOptions
from nbray.jupyter.output import REMOTE_CELL_TASK, CellOutputRouter, CellTarget, running_execution_count
from nbray.jupyter.remote_cell import TRACEBACK_ATTR, CellReply, CellRequest, unpack_value
from nbray.jupyter.sessions import SessionInfo, SessionRegistry
from nbray.jupyter.settings import NotebookSettings, get_settings

# IPython's own entries in the user namespace that a cell never means to ship
_IPYTHON_NAMES = re.compile(r"^(_+|_\d+|_i+|_i\d+|_ih|_oh|_dh|In|Out|exit|quit|get_ipython|__\w+__)$")
_NOT_PULLED = {"display", "get_ipython"}


@dataclass
class _Run:
    """One submitted remote cell (one task per node with --all)."""

    runs: list[Any]
    """The backend's handle of each submitted task."""
    labels: list[str]
    node_ids: list[str]
    run_ids: list[str]
    pull: tuple[str, ...]
    target: CellTarget | None
    session: SessionInfo | None = None
    started_s: float = field(default_factory=time.perf_counter)
    checkpoint: Any = None
    """The backend's ``output_checkpoint`` before the runs were submitted."""
    mark_end: bool = False
    """The runs mark the end of all they write (``CellRequest.mark_end``)."""


@dataclass
class AsyncCell:
    """A ``%%remote --async NAME`` cell still running (or not yet collected)."""

    name: str
    run: _Run
    done: bool = False
    ended: dict[int, BaseException | None] = field(default_factory=dict)
    """Run index -> its error, for the runs whose end was reported."""


class RemoteCellRunner:
    def __init__(self, shell: Any, router: CellOutputRouter, sessions: SessionRegistry,
                 settings: NotebookSettings | None = None) -> None:
        self.shell = shell
        self.router = router
        self.sessions = sessions
        self.settings = settings or get_settings()
        self.async_cells: dict[str, AsyncCell] = {}
        self.collected_async: set[str] = set()
        self._async_lock = threading.Lock()

    @property
    def backend(self) -> NotebookBackend:
        return backends.current()

    # ---- entry points ---------------------------------------------------------------------------------

    def run(self, code: str, opts: RemoteOptions, header_line: str = "") -> Any:
        """Run `code` remotely per `opts`; returns the last expression's value."""
        if not self.backend.connected():
            raise UsageError("nbray is not connected: run '%nbray init [ADDRESS]' (or nbray.init()) first")
        self.router.attach()
        code = self._ipython_syntax(code)
        analysis = self._analyze(code, header_line)
        request = self._request(code, analysis, opts, header_line)
        run = self._submit(request, opts, analysis.assigns)
        if opts.async_name:
            return self._start_async(opts.async_name, run)
        return self._finish(run, opts)

    # ---- preparing -----------------------------------------------------------------------------------

    def _ipython_syntax(self, code: str) -> str:
        """``!cmd`` and ``%magic`` lines become calls on the remote shell stand-in
        (line numbers do not change)."""
        if not re.search(r"^\s*[!%]", code, re.MULTILINE) or self.shell is None:
            return code
        transformed: str = self.shell.transform_cell(code)
        if not code.endswith("\n") and transformed.endswith("\n"):
            transformed = transformed[:-1]
        return transformed

    def _analyze(self, code: str, header_line: str) -> CellAnalysis:
        try:
            return _analysis_of(code)
        except SyntaxError as exc:
            # IPython shows SyntaxErrors itself; naming the notebook cell's own
            # file and line makes it read "Cell In[n], line k"
            offset = 1 if header_line else 0
            lineno = (exc.lineno or 0) + offset
            end_lineno = exc.end_lineno + offset if exc.end_lineno else None
            filename = self._cell_filename() or exc.filename
            raise SyntaxError(exc.msg, (filename, lineno, exc.offset, exc.text, end_lineno,
                                        exc.end_offset)) from None

    def _cell_filename(self) -> str | None:
        """The file name IPython compiled the running cell under."""
        names = getattr(getattr(self.shell, "compile", None), "_filename_map", {})
        count = running_execution_count(self.shell)
        matches = [name for name, number in names.items() if number == count]
        return matches[-1] if matches else None

    def _label(self) -> str:
        return f"In[{running_execution_count(self.shell)}]"

    def _request(self, code: str, analysis: CellAnalysis, opts: RemoteOptions, header_line: str) -> CellRequest:
        user_ns = self.shell.user_ns if self.shell is not None else {}
        hidden = getattr(self.shell, "user_ns_hidden", {})
        missing = [n for n in opts.push if n not in user_ns]
        if missing:
            raise UsageError(f"--push: no variable named {', '.join(missing)} in the notebook")
        names = [n for n in sorted(analysis.reads) if n in user_ns and not _is_ipython_name(n, user_ns, hidden)]
        session = self.sessions.get(opts.session) if opts.session is not None else None
        if session is not None and session.alive:
            names = [n for n in names if n not in session.names]  # the session's own values win
        names += [n for n in opts.push if n not in names]
        pushed = {n: user_ns[n] for n in names}
        if opts.no_pull or (opts.all_nodes and opts.pull is None):
            pull: tuple[str, ...] = ()  # --all brings back only what --pull names (one value per node)
        elif opts.pull is not None:
            pull = opts.pull
        else:
            pull = tuple(n for n in analysis.assigns if n not in _NOT_PULLED and not _IPYTHON_NAMES.match(n))
        return CellRequest(
            code=code, label=self._label(), run_id=uuid.uuid4().hex, header_line=header_line, pushed=pushed,
            pull=pull, last_expression=analysis.last_expression, uses_await=analysis.uses_await,
            wants_ipython_display="IPython" in code, mark_end=self.backend.cells_mark_their_end())

    # ---- submitting --------------------------------------------------------------------------------

    def _submit(self, request: CellRequest, opts: RemoteOptions, assigns: tuple[str, ...]) -> _Run:
        resources = opts.resource_options()
        target = self.router.current
        if opts.all_nodes:
            requests = []
            for i, node in enumerate(self.backend.nodes()):
                label = f"{i}:{node.node_id[:8]}"
                requests.append((CellRequest(**{**request.__dict__, "run_id": uuid.uuid4().hex,
                                                "node_label": label}), label, node.node_id))
        else:
            node_id = self._resolve_node(opts.node) if opts.node else ""
            requests = [(request, "", node_id)]
        run = _Run([], [], [], [], request.pull, target, checkpoint=self.backend.output_checkpoint(),
                   mark_end=request.mark_end)
        for req, label, node_id in requests:
            self.router.expect_end(req.run_id)
            try:
                handle = self._submit_one(req, opts, resources, label, node_id, assigns)
            except BaseException:
                self.router.forget_run(req.run_id)
                raise
            if opts.session is not None:
                run.session = self.sessions.get(opts.session)
            run.runs.append(handle)
            run.labels.append(label)
            run.node_ids.append(node_id)
            run.run_ids.append(req.run_id)
        return run

    def _submit_one(self, req: CellRequest, opts: RemoteOptions, resources: dict[str, Any], label: str,
                    node_id: str, assigns: tuple[str, ...]) -> Any:
        if opts.session is not None:
            return self._submit_session(req, opts.session, resources, node_id, assigns)
        name = f"{REMOTE_CELL_TASK}@{label}" if label else REMOTE_CELL_TASK
        return self._call(lambda: self.backend.submit_cell(req, resources, task_name=name, node_id=node_id), req)

    def _submit_session(self, req: CellRequest, name: str, resources: dict[str, Any], node_id: str,
                        assigns: tuple[str, ...]) -> Any:
        info = self.sessions.get_or_create(name, resources, node_id or None)
        info.cells_run += 1
        info.names.update(assigns)  # bound in the session by this cell: later cells read them there
        task_name = f"{REMOTE_CELL_TASK} --session {name}"
        return self._call(lambda: self.backend.submit_session_cell(info.handle, req, task_name=task_name), req)

    def _call(self, submit: Any, req: CellRequest) -> Any:
        try:
            return submit()
        except TypeError as exc:
            culprit = _unpicklable(req.pushed)
            if culprit is None:
                raise
            name, reason = culprit
            raise UsageError(
                f"the cell reads {name!r}, which cannot be sent to the cluster: {reason}. Create it inside "
                "the cell instead (or give the cell's own variable another name).") from exc

    def _resolve_node(self, wanted: str) -> str:
        alive = self.backend.nodes()
        if wanted == "head":
            matches = [n for n in alive if n.is_head]
        else:
            matches = [n for n in alive if n.node_id.startswith(wanted.lower())]
        if len(matches) != 1:
            listing = ", ".join(n.node_id[:12] + (" (head)" if n.is_head else "") for n in alive)
            what = "matches no alive node" if not matches else "matches several nodes"
            raise UsageError(f"--node {wanted} {what}; alive nodes: {listing}")
        return matches[0].node_id

    # ---- waiting -----------------------------------------------------------------------------------------

    def _finish(self, run: _Run, opts: RemoteOptions) -> Any:
        try:
            self._wait(run)
        finally:
            self._settle_output(run)
        values, errors = self._collect(run)
        if errors:
            _raise_remote(errors)
        if opts.all_nodes:
            return dict(zip(run.node_ids, values)) if any(
                v is not None for v in values) else None
        return values[0]

    def _wait(self, run: _Run) -> None:
        try:
            self.backend.wait_cells(run.runs, None)
        except KeyboardInterrupt:
            self._cancel(run)
            raise _interrupted(forced=False) from None

    def _cancel(self, run: _Run) -> None:
        """Ctrl-C: cancel, give the cell `cancel_grace_s` to stop, then force."""
        settings, backend = self.settings, self.backend
        for handle in run.runs:
            backend.cancel_cell(handle, force=False)
        forced = False
        try:
            pending = backend.wait_cells(run.runs, settings.cancel_grace_s)
        except KeyboardInterrupt:  # a second Ctrl-C: force now
            pending = list(run.runs)
        if pending:
            forced = True
            if run.session is not None:
                backend.kill_session(run.session.handle)
                self.sessions.mark_dead(run.session.name)
            else:
                for handle in run.runs:
                    backend.cancel_cell(handle, force=True)
            try:
                backend.wait_cells(run.runs, settings.cancel_force_wait_s)
            except KeyboardInterrupt:
                pass
        self._settle_output(run)
        if forced:
            raise _interrupted(forced=True, session=run.session.name if run.session else None)

    def _settle_output(self, run: _Run) -> None:
        """Wait until the cell's output reached the notebook, so it is complete
        when the cell returns: each run's end markers, after a flush barrier
        unless the markers alone cover all the cell may have written."""
        backend = self.backend
        try:
            replies = self._replies(run)
        except KeyboardInterrupt:  # stop waiting for output: the cell's values are still collected
            replies = None
        token = None
        if replies is not None and markers_cover(list(replies.values()), len(run.runs), run.mark_end):
            token = backend.settle_by_markers(run.checkpoint, len(run.runs))
        if token is None:
            backend.flush_output(self.settings.flush_logs_timeout_s)
        deadline = time.monotonic() + self.settings.output_wait_s
        arrived = replies is not None
        for run_id in run.run_ids:
            try:
                reply = replies.get(run_id) if replies is not None else None
                if reply is not None:
                    arrived = self.router.wait_for_end(run_id, reply.streams_written,
                                                       max(0.0, deadline - time.monotonic())) and arrived
            except KeyboardInterrupt:
                arrived = False  # stop waiting for output: the cell's values are still collected
            finally:
                self.router.forget_run(run_id)
        if token is not None and arrived:
            backend.output_settled(token)

    def _replies(self, run: _Run) -> dict[str, CellReply]:
        """The ``CellReply`` of each finished run that did not fail, by run id."""
        backend = self.backend
        unfinished = {id(handle) for handle in backend.wait_cells(run.runs, 0)}
        replies = {}
        for handle, run_id in zip(run.runs, run.run_ids):
            if id(handle) not in unfinished:
                reply = backend.outcome(handle).reply
                if isinstance(reply, CellReply):
                    replies[run_id] = reply
        return replies

    def _collect(self, run: _Run) -> tuple[list[Any], list[tuple[str, BaseException]]]:
        values: list[Any] = []
        errors: list[tuple[str, BaseException]] = []
        pulled_by_name: dict[str, dict[str, Any]] = {}
        for handle, label, node_id in zip(run.runs, run.labels, run.node_ids):
            outcome = self.backend.outcome(handle)
            if outcome.error is not None:
                errors.append((label, outcome.error))
                values.append(None)
                continue
            reply: CellReply = outcome.reply
            values.append(outcome.value)
            for name, packed in reply.pulled.items():
                pulled_by_name.setdefault(name, {})[node_id or reply.node_id] = packed
            for name, why in reply.pull_errors.items():
                print(f"[nbray] {name} stays on the cluster: {why}", file=sys.stderr)
        single = len(run.runs) == 1
        self._assign(pulled_by_name, single)
        return values, errors

    def _assign(self, pulled_by_name: dict[str, dict[str, Any]], single: bool) -> None:
        user_ns = self.shell.user_ns if self.shell is not None else {}
        for name, per_node in pulled_by_name.items():
            try:
                if single:
                    user_ns[name] = unpack_value(next(iter(per_node.values())))
                else:
                    user_ns[name] = {node: unpack_value(v) for node, v in per_node.items()}
            except Exception as exc:
                print(f"[nbray] could not bring {name} back into the notebook: {type(exc).__name__}: {exc}",
                      file=sys.stderr)

    # ---- async ----------------------------------------------------------------------------------------------

    def _start_async(self, name: str, run: _Run) -> None:
        cell = AsyncCell(name, run)
        self.collected_async.discard(name)
        self.async_cells[name] = cell
        user_ns = self.shell.user_ns if self.shell is not None else {}
        backend = self.backend
        values = [backend.async_value(handle) for handle in run.runs]
        user_ns[name] = values[0] if len(values) == 1 else dict(zip(run.node_ids, values))
        for i, handle in enumerate(run.runs):
            # without notifications the cell is collected at the next cell boundary
            backend.on_cell_done(handle, functools.partial(self._async_progress, cell, i))
        return None

    def _async_progress(self, cell: AsyncCell, index: int, error: BaseException | None) -> None:
        """A task of an async cell ended (called on a runtime thread: never blocks)."""
        with self._async_lock:
            cell.ended[index] = error
            if cell.done or len(cell.ended) < len(cell.run.runs):
                return
            cell.done = True
        for run_id in cell.run.run_ids:
            self.router.forget_run(run_id)
        errors = [(label, cell.ended[i]) for i, label in enumerate(cell.run.labels) if cell.ended[i] is not None]
        if errors and cell.run.target is not None:
            exc, text = _render_errors(errors)  # type: ignore[arg-type]
            self.router.send("error", {"ename": type(exc).__name__, "evalue": str(exc)[:2000],
                                       "traceback": text.splitlines()}, cell.run.target.parent)

    def collect_async(self, names: list[str] | None = None, wait: bool = False) -> list[str]:
        """Assign the variables of finished async cells (all, or `names`);
        with `wait`, wait for them first. Returns the names collected."""
        collected = []
        for name in list(names if names is not None else self.async_cells):
            cell = self.async_cells.get(name)
            if cell is None:
                if name in self.collected_async:
                    continue  # finished and collected at a cell boundary already
                raise UsageError(f"no %%remote --async cell named {name!r}")
            if wait:
                self._wait(cell.run)
                self._settle_output(cell.run)
            if self.backend.wait_cells(cell.run.runs, 0):
                continue
            del self.async_cells[name]
            self.collected_async.add(name)
            _values, errors = self._collect(cell.run)
            collected.append(name)
            if errors and wait:
                _raise_remote(errors)
        return collected


# ---- helpers -------------------------------------------------------------------------------------------------


def markers_cover(replies: list[CellReply], runs: int, mark_end: bool) -> bool:
    """Whether the end markers of a cell's `runs` runs (``CellRequest.mark_end``:
    written for whatever the run wrote), once seen, show all their output
    arrived: every run finished and replied and submitted no task of its own
    (whose output would come from another process)."""
    return mark_end and len(replies) == runs > 0 and not any(r.tasks_submitted for r in replies)


@functools.lru_cache(maxsize=256)
def _analysis_of(code: str) -> CellAnalysis:
    """``analyze_cell``, remembered: a cell is often run again unchanged."""
    return analyze_cell(code)


def _is_ipython_name(name: str, user_ns: dict[str, Any], hidden: dict[str, Any]) -> bool:
    if _IPYTHON_NAMES.match(name):
        return True
    return name in hidden and user_ns.get(name) is hidden[name]


def _unpicklable(values: dict[str, Any]) -> tuple[str, str] | None:
    from nbray.common.serialization import serialize

    for name, value in values.items():
        try:
            serialize(value)
        except TypeError as exc:
            return name, str(exc)
    return None


def _interrupted(forced: bool, session: str | None = None) -> KeyboardInterrupt:
    if forced and session:
        msg = f"remote cell cancelled; session {session!r} was killed to stop it (its variables are lost)"
    elif forced:
        msg = "remote cell cancelled (forced: its worker was stopped)"
    else:
        msg = "remote cell cancelled"
    exc = KeyboardInterrupt(msg)
    exc._render_traceback_ = lambda: [f"KeyboardInterrupt: {msg}"]  # type: ignore[attr-defined]
    return exc


def _remote_text(exc: BaseException) -> tuple[BaseException, str]:
    """(exception to raise, rendered remote traceback) for a failed cell."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    if isinstance(cause, BaseException):
        text = getattr(cause, TRACEBACK_ATTR, None)
        if text:
            return cause, text
        return cause, str(exc)
    own = getattr(exc, TRACEBACK_ATTR, None)
    if own:  # the cell's own exception (backends that hand it back as it is)
        return exc, own
    return exc, str(exc)


def _render_errors(errors: list[tuple[str, BaseException]]) -> tuple[BaseException, str]:
    first, parts = None, []
    for label, exc in errors:
        raised, text = _remote_text(exc)
        first = first or raised
        parts.append(text if not label or label in text else f"[{label}] {text}")
    assert first is not None
    return first, "\n".join(parts)


def _raise_remote(errors: list[tuple[str, BaseException]]) -> None:
    exc, text = _render_errors(errors)
    lines = text.rstrip("\n").splitlines()
    try:
        exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]
    except AttributeError:
        pass
    exc.__cause__ = None
    exc.__suppress_context__ = True
    raise exc.with_traceback(None)
