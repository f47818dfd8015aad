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

import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

import nbray
from nbray.exceptions import RayError, RayTaskError
from nbray.jupyter.cell_analysis import CellAnalysis, analyze_cell
from nbray.jupyter.magic_options import RemoteOptions
from nbray.jupyter.output import REMOTE_CELL_TASK, CellOutputRouter, CellTarget, running_execution_count
from nbray.jupyter.remote_cell import TRACEBACK_ATTR, CellReply, CellRequest, run_cell, unpack_value
from nbray.jupyter.sessions import SessionInfo, SessionRegistry
from nbray.jupyter.settings import NotebookSettings, get_settings

# IPython's own entries in the user namespace that a cell never means to ship
_IPYTHON_NAMES = re.compile(r"^(_+|_\d+|_i+|_i\d+|_ih|_oh|_dh|In|Out|exit|quit|get_ipython|__\w+__)$")
_NOT_PULLED = {"display", "get_ipython"}


@dataclass
class _Run:
    """One submitted remote cell (one task per node with --all)."""

    value_refs: list[Any]
    meta_refs: list[Any]
    labels: list[str]
    node_ids: list[str]
    run_ids: list[str]
    pull: tuple[str, ...]
    target: CellTarget | None
    session: SessionInfo | None = None
    started_s: float = field(default_factory=time.perf_counter)


@dataclass
class AsyncCell:
    """A ``%%remote --async NAME`` cell still running (or not yet collected)."""

    name: str
    run: _Run
    done: bool = False
    futures: list[Any] = field(default_factory=list)


class RemoteCellRunner:
    def __init__(self, shell: Any, router: CellOutputRouter, sessions: SessionRegistry,
                 settings: NotebookSettings | None = None) -> None:
        self.shell = shell
        self.router = router
        self.sessions = sessions
        self.settings = settings or get_settings()
        self._run_cell_task = nbray.remote(run_cell)
        self.async_cells: dict[str, AsyncCell] = {}
        self.collected_async: set[str] = set()
        self._async_lock = threading.Lock()

    # ---- entry points ---------------------------------------------------------------------------------

    def run(self, code: str, opts: RemoteOptions, header_line: str = "") -> Any:
        """Run `code` remotely per `opts`; returns the last expression's value."""
        if not nbray.is_initialized():
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
            return analyze_cell(code)
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
            wants_ipython_display="IPython" in code)

    # ---- submitting --------------------------------------------------------------------------------

    def _submit(self, request: CellRequest, opts: RemoteOptions, assigns: tuple[str, ...]) -> _Run:
        resources = opts.resource_options()
        target = self.router.current
        if opts.all_nodes:
            nodes = [n for n in nbray.nodes() if n["Alive"]]
            requests = []
            for i, node in enumerate(nodes):
                label = f"{i}:{node['NodeID'][:8]}"
                requests.append((CellRequest(**{**request.__dict__, "run_id": uuid.uuid4().hex,
                                                "node_label": label}), label, node["NodeID"]))
        else:
            node_id = self._resolve_node(opts.node) if opts.node else ""
            requests = [(request, "", node_id)]
        run = _Run([], [], [], [], [], request.pull, target)
        for req, label, node_id in requests:
            self.router.expect_end(req.run_id)
            try:
                value_ref, meta_ref = self._submit_one(req, opts, resources, label, node_id, assigns)
            except BaseException:
                self.router.forget_run(req.run_id)
                raise
            if opts.session is not None:
                run.session = self.sessions.get(opts.session)
            run.value_refs.append(value_ref)
            run.meta_refs.append(meta_ref)
            run.labels.append(label)
            run.node_ids.append(node_id)
            run.run_ids.append(req.run_id)
        return run

    def _submit_one(self, req: CellRequest, opts: RemoteOptions, resources: dict[str, Any], label: str,
                    node_id: str, assigns: tuple[str, ...]) -> Any:
        if opts.session is not None:
            return self._submit_session(req, opts.session, resources, node_id, assigns)
        task_opts: dict[str, Any] = dict(resources, num_returns=2, max_retries=0,
                                         name=f"{REMOTE_CELL_TASK}@{label}" if label else REMOTE_CELL_TASK)
        if node_id:
            from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            task_opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return self._call(lambda: self._run_cell_task.options(**task_opts).remote(req), req)

    def _submit_session(self, req: CellRequest, name: str, resources: dict[str, Any], node_id: str,
                        assigns: tuple[str, ...]) -> Any:
        strategy = None
        if node_id:
            from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        info = self.sessions.get_or_create(name, resources, node_id or None, strategy)
        info.cells_run += 1
        info.names.update(assigns)  # bound in the session by this cell: later cells read them there
        method = info.handle.run.options(num_returns=2, name=f"{REMOTE_CELL_TASK} --session {name}")
        return self._call(lambda: method.remote(req), req)

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
        alive = [n for n in nbray.nodes() if n["Alive"]]
        if wanted == "head":
            matches = [n for n in alive if n["IsHead"]]
        else:
            matches = [n for n in alive if n["NodeID"].startswith(wanted.lower())]
        if len(matches) != 1:
            listing = ", ".join(n["NodeID"][:12] + (" (head)" if n["IsHead"] else "") for n in alive)
            what = "matches no alive node" if not matches else "matches several nodes"
            raise UsageError(f"--node {wanted} {what}; alive nodes: {listing}")
        return str(matches[0]["NodeID"])

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
            return {node: value for node, value in zip(run.node_ids, values)} if any(
                v is not None for v in values) else None
        return values[0]

    def _wait(self, run: _Run) -> None:
        refs = run.meta_refs
        try:
            nbray.wait(refs, num_returns=len(refs), timeout=None, fetch_local=False)
        except KeyboardInterrupt:
            self._cancel(run)
            raise _interrupted(forced=False) from None

    def _cancel(self, run: _Run) -> None:
        """Ctrl-C: cancel, give the cell `cancel_grace_s` to stop, then force."""
        settings = self.settings
        for ref in run.value_refs:
            _quiet(nbray.cancel, ref)
        forced = False
        try:
            _ready, pending = nbray.wait(run.meta_refs, num_returns=len(run.meta_refs),
                                         timeout=settings.cancel_grace_s, fetch_local=False)
        except KeyboardInterrupt:  # a second Ctrl-C: force now
            pending = list(run.meta_refs)
        if pending:
            forced = True
            if run.session is not None:
                _quiet(nbray.kill, run.session.handle)
                self.sessions.mark_dead(run.session.name)
            else:
                for ref in run.value_refs:
                    _quiet(nbray.cancel, ref, force=True)
            try:
                nbray.wait(run.meta_refs, num_returns=len(run.meta_refs), timeout=settings.cancel_force_wait_s,
                           fetch_local=False)
            except KeyboardInterrupt:
                pass
        self._settle_output(run)
        if forced:
            raise _interrupted(forced=True, session=run.session.name if run.session else None)

    def _settle_output(self, run: _Run) -> None:
        """Wait until the cell's output reached the notebook, so it is complete
        when the cell returns (a flush barrier, then each run's end markers)."""
        from nbray.jupyter import runtime_hooks

        runtime_hooks.flush_logs(self.settings.flush_logs_timeout_s)
        deadline = time.monotonic() + self.settings.output_wait_s
        for ref, run_id in zip(run.meta_refs, run.run_ids):
            try:
                ready, _ = nbray.wait([ref], timeout=0, fetch_local=False)
                if ready:
                    reply = nbray.get(ref)
                    if isinstance(reply, CellReply):
                        self.router.wait_for_end(run_id, reply.streams_written,
                                                 max(0.0, deadline - time.monotonic()))
            except (RayError, KeyboardInterrupt):
                pass  # failed cells: their markers were written before the error; nothing more to wait for
            finally:
                self.router.forget_run(run_id)

    def _collect(self, run: _Run) -> tuple[list[Any], list[tuple[str, BaseException]]]:
        values: list[Any] = []
        errors: list[tuple[str, BaseException]] = []
        pulled_by_name: dict[str, dict[str, Any]] = {}
        for value_ref, meta_ref, label, node_id in zip(run.value_refs, run.meta_refs, run.labels, run.node_ids):
            try:
                reply: CellReply = nbray.get(meta_ref)
                values.append(nbray.get(value_ref))
            except RayError as exc:
                errors.append((label, exc))
                values.append(None)
                continue
            for name, packed in reply.pulled.items():
                pulled_by_name.setdefault(name, {})[node_id or reply.node_id] = packed
            for name, why in reply.pull_errors.items():
                print(f"[nbray] {name} stays on the cluster: {why}", file=sys.stderr)
        single = len(run.meta_refs) == 1
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
        user_ns[name] = run.value_refs[0] if len(run.value_refs) == 1 else dict(zip(run.node_ids, run.value_refs))
        try:
            cell.futures = [ref.future() for ref in run.meta_refs]
        except (AttributeError, RuntimeError, NotImplementedError):
            cell.futures = []  # no futures here: collected at the next cell boundary
        for fut in cell.futures:
            fut.add_done_callback(lambda _f, c=cell: self._async_progress(c))
        return None

    def _async_progress(self, cell: AsyncCell) -> None:
        """A task of an async cell ended (called on an nbray thread: only
        looks at the futures, never blocks)."""
        with self._async_lock:
            if cell.done or not all(f.done() for f in cell.futures):
                return
            cell.done = True
        for run_id in cell.run.run_ids:
            self.router.forget_run(run_id)
        errors = [(label, fut.exception()) for fut, label in zip(cell.futures, cell.run.labels)
                  if fut.exception() is not None]
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
            refs = cell.run.meta_refs
            if wait:
                self._wait(cell.run)
                self._settle_output(cell.run)
            ready, _ = nbray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            if len(ready) < len(refs):
                continue
            del self.async_cells[name]
            self.collected_async.add(name)
            _values, errors = self._collect(cell.run)
            collected.append(name)
            if errors and wait:
                _raise_remote(errors)
        return collected


# ---- helpers -------------------------------------------------------------------------------------------------


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


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except (RayError, ValueError, TypeError):
        pass  # already finished, or gone


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
