"""Worker output into the notebook cell that caused it.

Runs in the notebook kernel. Before each cell runs, ``begin_cell`` gives it
a tag (``cell:<cell id>:<execution count>``), stores it in the driver's root
task context (so every task and actor call submitted by the cell, and
their children, carry it) and remembers the cell's IOPub parent header.
Worker output reaches the driver as ``LogEntry`` batches carrying that
tag; ``handle_batch`` (the driver's ``log_handler``, on nbray's I/O
thread) publishes each entry as IOPub ``stream`` / ``display_data``
messages whose parent is that cell's request, so frontends put them under
the right cell even after it finished and another one is running.
Outside a kernel (IPython terminal, plain Python) entries are printed as
``print_logs`` does.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbray.experimental import bar_display
from nbray.jupyter import backends, display_wire
from nbray.jupyter.settings import get_settings

REMOTE_CELL_TASK = "%%remote"
"""Task names of remote cells start with this; ``@label`` names a node (``--all``)."""


def running_execution_count(shell: Any) -> int:
    """The ``In[n]`` number of the cell running now (IPython 9 counts the
    cell before running it, earlier versions after)."""
    count = int(getattr(shell, "execution_count", 0) or 0)
    try:
        import IPython

        if IPython.version_info[0] >= 9:
            return max(count - 1, 0)
    except ImportError:
        pass
    return count


def make_tag(cell_id: str | None, execution_count: int) -> str:
    return f"cell:{cell_id or ''}:{execution_count}"


@dataclass(frozen=True)
class CellTarget:
    """Where a cell's output goes."""

    tag: str
    parent: dict[str, Any]
    """The IOPub parent header of the cell's execute request ({} outside a kernel)."""
    execution_count: int


class _EndWait:
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: set[bool] = set()


def line_prefix(task_name: str, pid: int, node_ip: str) -> str:
    """How an output line is labelled: nothing for a remote cell, ``[label] ``
    for one node of ``--all``, ``(f pid=123) `` for other tasks."""
    if task_name.startswith(REMOTE_CELL_TASK):
        label = task_name.partition("@")[2]
        return f"[{label}] " if label else ""
    if task_name == "nbray":
        return ""
    prefix = f"({task_name or 'worker'} pid={pid}"
    if node_ip and node_ip not in ("127.0.0.1", "localhost"):
        prefix += f", ip={node_ip}"
    return prefix + ") "


def _prefixed(text: str, prefix: str) -> str:
    if not prefix:
        return text
    return "".join(prefix + line for line in text.splitlines(keepends=True))


class CellOutputRouter:
    """The driver's log handler while the nbray extension is loaded."""

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self.kernel = getattr(shell, "kernel", None)
        self._lock = threading.Lock()
        self._cells: OrderedDict[str, CellTarget] = OrderedDict()
        self._current: CellTarget | None = None
        self._assembler = display_wire.Assembler()
        self._ends: dict[str, _EndWait] = {}
        self._ends_cond = threading.Condition(self._lock)
        self._attached_to: Any = None
        self.fallback_write: Callable[[str, bool], None] = _write_std

    # ---- cells --------------------------------------------------------------------------------

    def begin_cell(self, cell_id: str | None = None, execution_count: int | None = None) -> CellTarget:
        """A cell starts: remember where its output goes and tag its work."""
        if execution_count is None:
            execution_count = running_execution_count(self.shell)
        target = CellTarget(make_tag(cell_id, execution_count), self._current_parent(), execution_count)
        limit = get_settings().max_tracked_cells
        with self._lock:
            self._cells[target.tag] = target
            self._cells.move_to_end(target.tag)
            while len(self._cells) > limit:
                self._cells.popitem(last=False)
            self._current = target
        self.tag_context(target.tag)
        return target

    @property
    def current(self) -> CellTarget | None:
        return self._current

    def target_for(self, tag: str) -> CellTarget | None:
        with self._lock:
            return self._cells.get(tag)

    def tag_context(self, tag: str | None = None) -> None:
        """Put the current cell's tag on the driver's root context (if connected)."""
        tag = tag if tag is not None else (self._current.tag if self._current else "")
        if tag:
            backends.current().tag_cell(tag)

    def _current_parent(self) -> dict[str, Any]:
        kernel = self.kernel
        if kernel is None:
            return {}
        parent = None
        get_parent = getattr(kernel, "get_parent", None)
        if get_parent is not None:
            try:
                parent = get_parent("shell")
            except TypeError:
                parent = get_parent()
        if parent and "header" in parent:
            return dict(parent["header"])
        return dict(getattr(self.shell, "parent_header", {}) or {})

    # ---- installation on the runtime ---------------------------------------------------------------------

    def attach(self) -> bool:
        """Become the backend's output handler (again, after a new init)."""
        backend = backends.current()
        if not backend.attach_output(self.handle_batch):
            return False
        self._attached_to = backend
        self.tag_context()
        return True

    def detach(self) -> None:
        if self._attached_to is not None:
            self._attached_to.detach_output(self.handle_batch)
        self._attached_to = None

    # ---- end-of-output waits -------------------------------------------------------------------------

    def expect_end(self, run_id: str) -> None:
        """A remote cell is about to be submitted: record its end markers."""
        with self._lock:
            self._ends[run_id] = _EndWait()

    def wait_for_end(self, run_id: str, streams: tuple[bool, bool], timeout_s: float) -> bool:
        """Wait until the end markers of the written streams (stdout, stderr) arrived."""
        needed = {is_err for is_err, written in ((False, streams[0]), (True, streams[1])) if written}
        with self._ends_cond:
            wait = self._ends.get(run_id)
            if wait is None:
                return False
            ok = self._ends_cond.wait_for(lambda: needed <= wait.seen, timeout=timeout_s)
            return bool(ok)

    def forget_run(self, run_id: str) -> None:
        with self._lock:
            self._ends.pop(run_id, None)

    # ---- routing (I/O thread) -------------------------------------------------------------------------

    def handle_batch(self, batch: Any) -> None:
        """``log_handler``: route each entry to its cell (``tqdm_ray`` bars
        go to the bar display instead)."""
        batch = bar_display.take_bar_reports(batch)
        items: list[tuple[str, CellTarget | None, Any]] = []
        ended = False
        for entry in batch.entries:
            with self._lock:
                target = self._cells.get(entry.context_tag) if entry.context_tag else None
                if target is None:
                    target = self._current
            prefix = line_prefix(entry.task_name, entry.pid, entry.node_ip)
            name = "stderr" if entry.is_err else "stdout"
            for seg in self._assembler.feed((entry.node_ip, entry.pid, entry.is_err), entry.text):
                if isinstance(seg, str):
                    text = _prefixed(seg, prefix)
                    if items and items[-1][0] == name and items[-1][1] is target:
                        items[-1] = (name, target, items[-1][2] + text)
                    else:
                        items.append((name, target, text))
                elif seg.kind == "end":
                    ended |= self._mark_end(str(seg.payload.get("run", "")), bool(seg.payload.get("err")))
                elif seg.kind == "display":
                    if prefix.startswith("["):
                        items.append(("stdout", target, prefix.rstrip() + "\n"))
                    items.append(("display", target, seg.payload))
                elif seg.kind == "clear":
                    items.append(("clear", target, seg.payload))
        if items:
            self._publish_all(items)
        if ended:
            with self._ends_cond:
                self._ends_cond.notify_all()

    def _mark_end(self, run_id: str, is_err: bool) -> bool:
        with self._lock:
            wait = self._ends.get(run_id)
            if wait is None:
                return False
            wait.seen.add(is_err)
            return True

    def _publish_all(self, items: list[tuple[str, CellTarget | None, Any]]) -> None:
        if self.kernel is None:
            with bar_display.bars_hidden():  # bars drawn in place in a terminal step aside
                for kind, _target, payload in items:
                    self._fallback(kind, payload)
            return
        current = self._current
        if any(target is current for _, target, _ in items):
            _flush_kernel_streams()  # keep order with what the running cell printed itself
        for kind, target, payload in items:
            parent = target.parent if target is not None else {}
            if kind in ("stdout", "stderr"):
                self.send("stream", {"name": kind, "text": payload}, parent)
            elif kind == "display":
                msg_type = "update_display_data" if payload.get("update") else "display_data"
                self.send(msg_type, {"data": payload.get("data", {}), "metadata": payload.get("metadata", {}),
                                     "transient": payload.get("transient", {})}, parent)
            elif kind == "clear":
                self.send("clear_output", {"wait": bool(payload.get("wait"))}, parent)

    def _fallback(self, kind: str, payload: Any) -> None:
        if kind in ("stdout", "stderr"):
            self.fallback_write(payload, kind == "stderr")
        elif kind == "display":
            self.fallback_write(str(payload.get("data", {}).get("text/plain", "")) + "\n", False)

    # ---- IOPub -------------------------------------------------------------------------------------------------

    def send(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
        """Publish one IOPub message as a reply to `parent` (thread-safe)."""
        kernel = self.kernel
        if kernel is None:
            if msg_type == "stream":
                self.fallback_write(content["text"], content["name"] == "stderr")
            elif msg_type == "error":
                self.fallback_write("\n".join(content.get("traceback", [])) + "\n", True)
            return
        from jupyter_client.session import msg_header

        session = kernel.session
        # our own msg_id: Session's counter is not safe to bump from this thread
        header = msg_header(uuid.uuid4().hex, msg_type, session.username, session.session)
        topic = f"stream.{content['name']}" if msg_type == "stream" else msg_type
        session.send(kernel.iopub_socket, msg_type, content, parent=parent, ident=topic.encode(),
                     header=header)

    def publish_to(self, tag: str, msg_type: str, content: dict[str, Any]) -> None:
        target = self.target_for(tag) or self._current
        self.send(msg_type, content, target.parent if target is not None else {})


def _flush_kernel_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "pub_thread"):  # ipykernel's OutStream
            try:
                stream.flush()
            except Exception:
                pass


def _write_std(text: str, is_err: bool) -> None:
    stream = sys.stderr if is_err else sys.stdout
    stream.write(text)
    stream.flush()
