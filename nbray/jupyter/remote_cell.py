"""Runs a notebook cell on a worker: the remote half of ``%%remote``.

Runs in worker processes (``run_cell`` as a task, ``RemoteCellSession`` as
the actor behind ``--session``). Stdlib only at import time. The cell's
stdout and stderr go to the worker's task output (and from there to the
notebook cell, through the log stream); rich output goes the same way as
marker lines (``remote_display``). The task returns two objects: the value
of the cell's last expression, and a ``CellReply`` with the variables to
bring back. An exception propagates as the task's error, carrying a
traceback rendered with the notebook cell's own line numbers.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import io
import linecache
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from nbray.jupyter import display_wire, remote_display

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
TRACEBACK_ATTR = "_nbray_remote_traceback"
"""Attribute set on a cell's exception: its traceback, rendered remotely."""
_CELL_LABELS: dict[str, str] = {}  # cell filename -> "In[5]" (for tracebacks of later calls)
_MAX_CELL_LABELS = 10_000


@dataclass
class CellRequest:
    """Everything a worker needs to run one cell."""

    code: str
    """The cell's Python source (the ``%%remote`` line excluded)."""
    label: str
    """How tracebacks name the cell: ``In[5]``."""
    run_id: str
    """Unique per run; names the end-of-output markers."""
    header_line: str = ""
    """The magic line shown as line 1 of the cell (``%%remote ...``); "" for ``%remote``."""
    pushed: dict[str, Any] = field(default_factory=dict)
    """Notebook variables the cell reads."""
    pull: tuple[str, ...] = ()
    """Names to send back when bound after the cell."""
    last_expression: bool = False
    uses_await: bool = False
    wants_matplotlib: bool = False
    wants_ipython_display: bool = False
    node_label: str = ""
    """Set when the cell runs on every node (``--all``)."""
    mark_end: bool = False
    """Also write the end marker of a stream that the cell wrote to other than
    through its own ``sys.stdout``/``sys.stderr`` (a logging handler made by
    an earlier cell holds an older one), or when that cannot be told: the
    markers then cover all the cell wrote."""

    @property
    def filename(self) -> str:
        return f"<nbray-cell {self.label} {self.run_id[:8]}>"

    @property
    def line_offset(self) -> int:
        return 1 if self.header_line else 0


@dataclass
class CellReply:
    """What came back besides the value of the last expression."""

    run_id: str
    pulled: dict[str, Any]
    """name -> value, ``Pickled`` or ``ModuleRef`` (unpacked one by one)."""
    pull_errors: dict[str, str]
    """name -> why it could not be sent back."""
    streams_written: tuple[bool, bool]
    """(stdout, stderr) got output: their end markers are on the way."""
    node_id: str
    pid: int
    duration_s: float
    tasks_submitted: int = 0
    """Tasks, actor calls and actors the worker submitted while the cell ran
    (their output is not covered by the cell's end markers)."""


@dataclass(frozen=True)
class Pickled:
    """A value already pickled on the worker (unpickled on its own, so one
    value that cannot be loaded in the notebook does not lose the others)."""

    data: bytes


@dataclass(frozen=True)
class ModuleRef:
    """A module, sent by name and imported on the other side."""

    name: str


class RemoteRepr:
    """Stands in for a value that cannot travel: shows its remote MIME bundle."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any], type_name: str) -> None:
        self.data = data
        self.metadata = metadata
        self.type_name = type_name

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", f"<remote {self.type_name}>"))


# ---- values ------------------------------------------------------------------------------------------------

_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _travels_as_is(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray) and value.dtype != object


def pack_value(value: Any) -> Any:
    """`value` ready to be returned: as is, by module name, or pre-pickled.
    Raises TypeError (from pickling) when it cannot travel."""
    if _travels_as_is(value):
        return value
    if inspect.ismodule(value):
        return ModuleRef(value.__name__)
    import cloudpickle

    return Pickled(cloudpickle.dumps(value))


def unpack_value(packed: Any) -> Any:
    """The inverse of ``pack_value`` (in the notebook). Raises what loading raises."""
    if isinstance(packed, Pickled):
        import pickle

        return pickle.loads(packed.data)
    if isinstance(packed, ModuleRef):
        import importlib

        return importlib.import_module(packed.name)
    return packed


def _result_value(value: Any) -> Any:
    """The last expression's value as the task returns it: the object itself
    when it can travel, otherwise its rendering here."""
    if value is None or _travels_as_is(value):
        return value
    module = type(value).__module__ or ""
    if module.startswith("matplotlib"):  # figures are shown as images already
        return RemoteRepr({"text/plain": remote_display._plain_repr(value)}, {}, type(value).__name__)
    try:
        import cloudpickle

        cloudpickle.dumps(value)
        return value
    except Exception:
        data, metadata = remote_display.mime_bundle(value)
        return RemoteRepr(data, metadata, type(value).__name__)


# ---- streams ------------------------------------------------------------------------------------------------


class TextSink(io.TextIOBase):
    """A write-only text stream standing in for sys.stdout/sys.stderr; when
    it wraps another stream (``inner``) it takes that one's encoding and fd."""

    inner: Any = None

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self.inner is None:
            raise io.UnsupportedOperation("fileno")
        return int(self.inner.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.inner, "encoding", None) or "utf-8")


class _WatchedStream(TextSink):
    """sys.stdout/sys.stderr during a cell: notes whether anything was written."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written = False

    def write(self, s: str) -> int:
        if s:
            self.written = True
        return self.inner.write(s)  # type: ignore[no-any-return]

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_UNKNOWN = object()


def _stream_state(stream: Any) -> Any:
    """The task a worker's output stream last wrote for (it notes each task
    before the task's first write); ``_UNKNOWN`` for other streams."""
    return getattr(stream, "_last", _UNKNOWN)


def _written_since(stream: Any, state: Any) -> bool:
    """Whether `stream` may have been written to by this task since it was
    in `state` (True when that cannot be told)."""
    return state is _UNKNOWN or _stream_state(stream) is not state


def _write_end_marker(stream: Any, run_id: str, is_err: bool) -> None:
    for line in display_wire.encode("end", {"run": run_id, "err": is_err}):
        stream.write(line)
    stream.flush()


# ---- a notebook-like environment --------------------------------------------------------------------------


class _RemoteShell:
    """What ``get_ipython()`` gives remote code: shell commands run on the
    worker's node (``!nvidia-smi``); magics are not available."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.user_ns = namespace

    def system(self, cmd: str) -> int:
        import subprocess

        proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
        return proc.wait()

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> Any:
        import subprocess

        out = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        return out.splitlines() if split else out

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        if name == "matplotlib":
            return None  # figures already come back as images
        raise NotImplementedError(f"%{name} is not available in a remote cell (it runs on a worker)")

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        raise NotImplementedError(f"%%{name} is not available in a remote cell (it runs on a worker)")


def new_namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    ns["display"] = remote_display.display
    ns["get_ipython"] = lambda: _RemoteShell(ns)
    return ns


def _prepare_matplotlib() -> None:
    from nbray.jupyter.mpl_backend import NAME

    if "matplotlib" not in sys.modules:
        os.environ["MPLBACKEND"] = NAME
        return
    import matplotlib

    if matplotlib.get_backend() != NAME:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].switch_backend(NAME)
        else:
            matplotlib.use(NAME)


def _register_source(req: CellRequest) -> None:
    lines = ([req.header_line + "\n"] if req.header_line else []) + req.code.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[req.filename] = (sum(map(len, lines)), None, lines, req.filename)
    _CELL_LABELS[req.filename] = req.label
    while len(_CELL_LABELS) > _MAX_CELL_LABELS:
        _CELL_LABELS.pop(next(iter(_CELL_LABELS)))


# ---- running ------------------------------------------------------------------------------------------------


def run_cell(req: CellRequest) -> tuple[Any, CellReply]:
    """The ``%%remote`` task: run `req` in a fresh namespace."""
    return run_in_namespace(req, new_namespace())


def run_in_namespace(req: CellRequest, ns: dict[str, Any]) -> tuple[Any, CellReply]:
    start = time.perf_counter()
    submitted_before = _tasks_submitted()
    streams_before = (_stream_state(sys.stdout), _stream_state(sys.stderr))
    ns.update(req.pushed)
    out, err = _WatchedStream(sys.stdout), _WatchedStream(sys.stderr)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    saved_target = remote_display.set_target(out)
    try:
        if req.wants_matplotlib:
            _prepare_matplotlib()
        if req.wants_ipython_display:
            remote_display.patch_ipython_display()
        try:
            value = _run_code(req, ns)
            if "matplotlib.pyplot" in sys.modules:
                remote_display.flush_figures(close=True)
        except BaseException as exc:
            _attach_traceback(exc, req)
            raise
        result = _result_value(value)
        pulled, pull_errors = _collect(req, ns)
    finally:
        remote_display.set_target(saved_target)
        sys.stdout, sys.stderr = saved
        marked = (out.written or (req.mark_end and _written_since(saved[0], streams_before[0])),
                  err.written or (req.mark_end and _written_since(saved[1], streams_before[1])))
        if marked[0]:
            _write_end_marker(saved[0], req.run_id, False)
        if marked[1]:
            _write_end_marker(saved[1], req.run_id, True)
    reply = CellReply(run_id=req.run_id, pulled=pulled, pull_errors=pull_errors,
                      streams_written=marked, node_id=_node_id(), pid=os.getpid(),
                      duration_s=time.perf_counter() - start,
                      tasks_submitted=_tasks_submitted() - submitted_before)
    return result, reply


def _run_code(req: CellRequest, ns: dict[str, Any]) -> Any:
    _register_source(req)
    tree = ast.parse(req.code, filename=req.filename, mode="exec")
    if req.line_offset:
        ast.increment_lineno(tree, req.line_offset)
    last = tree.body.pop() if req.last_expression and tree.body and isinstance(tree.body[-1], ast.Expr) else None
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if req.uses_await else 0
    code = compile(tree, req.filename, "exec", flags=flags, dont_inherit=True)
    _run_compiled(code, ns)
    if last is None:
        return None
    assert isinstance(last, ast.Expr)
    expr = compile(ast.Expression(last.value), req.filename, "eval", flags=flags, dont_inherit=True)
    return _run_compiled(expr, ns)


def _run_compiled(code: Any, ns: dict[str, Any]) -> Any:
    if code.co_flags & inspect.CO_COROUTINE:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(eval(code, ns))
        finally:
            loop.close()
    return eval(code, ns)


def _collect(req: CellRequest, ns: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    pulled: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in req.pull:
        if name not in ns:
            continue
        try:
            pulled[name] = pack_value(ns[name])
        except Exception as exc:
            errors[name] = f"{type(ns[name]).__name__} cannot be sent back ({type(exc).__name__}: {exc})"
    return pulled, errors


def _node_id() -> str:
    """This worker's node (never connects: run outside a worker, it is "")."""
    from nbray.object_ref import _core

    core = _core[0]
    return core.node_id.hex() if core is not None and hasattr(core, "node_id") else ""


def _tasks_submitted() -> int:
    """How many tasks this process has submitted so far (0 outside nbray)."""
    core = sys.modules.get("nbray.object_ref")
    runtime = core._core[0] if core is not None else None
    return int(getattr(runtime, "tasks_submitted", 0))


# ---- tracebacks ---------------------------------------------------------------------------------------------


def _attach_traceback(exc: BaseException, req: CellRequest) -> None:
    try:
        setattr(exc, TRACEBACK_ATTR, format_cell_traceback(exc, where=req.node_label))
    except Exception:
        pass  # an exception type that refuses attributes keeps the plain traceback


def format_cell_traceback(exc: BaseException, where: str = "") -> str:
    """The traceback of `exc` as IPython shows one, naming cells ``Cell In[5],
    line 3`` with their code around it; nbray's own frames are left out."""
    parts: list[str] = []
    seen: set[int] = set()
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, ""))
        if current.__cause__ is not None:
            link = "\nThe above exception was the direct cause of the following exception:\n\n"
            nxt = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            link = "\nDuring handling of the above exception, another exception occurred:\n\n"
            nxt = current.__context__
        else:
            break
        chain[-1] = (current, link)
        current = nxt
    for item, link in reversed(chain):
        parts.append(_format_one(item))
        if link:
            parts.append(link)
    head = "Traceback (most recent call last)" + (f" [{where}]" if where else "") + ":\n"
    return head + "".join(parts)


def _format_one(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_PKG_DIR)]
    out: list[str] = []
    for frame in frames:
        lineno = frame.lineno or 0
        label = _CELL_LABELS.get(frame.filename)
        if label is not None:
            out.append(f"Cell {label}, line {lineno}\n")
            lines = linecache.getlines(frame.filename)
            for n in range(max(1, lineno - 2), min(len(lines), lineno + 1) + 1):
                marker = "---->" if n == lineno else "     "
                out.append(f"{marker} {n:<3} {lines[n - 1].rstrip()}\n")
        else:
            where = f", in {frame.name}()" if frame.name != "<module>" else ""
            out.append(f"File {frame.filename}:{lineno}{where}\n")
            if frame.line:
                out.append(f"----> {lineno:<3} {frame.line.strip()}\n")
        out.append("\n")
    out.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(out)


# ---- sessions -----------------------------------------------------------------------------------------------


class RemoteCellSession:
    """A persistent remote namespace (``%%remote --session NAME``): an actor
    that runs cells one at a time and keeps their variables."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ns = new_namespace()
        self.cells_run = 0

    def run(self, req: CellRequest) -> tuple[Any, CellReply]:
        self.cells_run += 1
        return run_in_namespace(req, self.ns)

    def names(self) -> list[str]:
        return sorted(k for k in self.ns if not k.startswith("_") and k not in ("display", "get_ipython"))

    def __repr__(self) -> str:
        return f"RemoteCellSession({self.name!r})"
