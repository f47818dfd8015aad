"""Output of ordinary Ray tasks and actors into the cell that submitted them.

Runs in two places. In each Ray worker of the notebook's job,
``TaskMarkingStream`` (put on ``sys.stdout``/``sys.stderr`` by the job's
``worker_process_setup_hook``) writes a marker line naming the running task
before the first output of each task; Ray forwards worker output to the
driver (``log_to_driver``) line by line with the worker's pid and task or
actor name, but without the task's id, which the marker adds. In the kernel,
``RayOutputRouter`` receives those batches, drops the markers, gives each
line the task that wrote it (``LineAttributor``), finds the task that the
kernel itself submitted at the root of that task's parent chain (Ray's state
API: ``parent_task_id``, ``creation_time_ms``) and the cell that was running
when it was created (``CellWindows``). A line whose task cannot be placed
goes to the cell running now, as Ray itself would print it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nbray.jupyter.backends.base import LogBatch, LogEntry, OutputHandler
from nbray.jupyter.remote_cell import TextSink

TASK_MARK = ":nbray_task:"
"""A line starting with this names the task whose output follows (hex id)."""
MAX_TRACKED_WORKER_STREAMS = 4096
"""Worker streams (node, pid, stdout/stderr) whose current task is remembered."""
MAX_TRACKED_TASKS = 20_000
"""Tasks whose cell is remembered."""
MAX_CELL_WINDOWS = 10_000
TASK_LOOKUP_TIMEOUT_S = 10.0
"""How long a task's row may take to show in Ray's state API (its events are
reported about once a second) before its output goes to the running cell."""
PARENT_LOOKUP_TIMEOUT_S = 3.0
"""The same for each parent further up a task's chain."""
TASK_LOOKUP_RETRY_S = 0.25

TaskRow = dict[str, Any]
TaskLookup = Callable[[str], "TaskRow | None"]


# ---- the worker side -------------------------------------------------------------------------------------


class TaskMarkingStream(TextSink):
    """Writes to `inner`, with a ``TASK_MARK`` line whenever the writing task
    changes. `task_id` gives the running task's hex id (None or "" in a
    thread that runs no task: its output counts for the last task seen)."""

    def __init__(self, inner: Any, task_id: Callable[[], str | None]) -> None:
        self.inner = inner
        self._task_id = task_id
        self._last = ""
        self._at_line_start = True
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        if not s:
            return 0
        task = self._task_id() or ""
        with self._lock:
            if task and task != self._last:
                self.inner.write(("" if self._at_line_start else "\n") + f"{TASK_MARK}{task}\n")
                self._last = task
            self.inner.write(s)
            self._at_line_start = s.endswith("\n")
        return len(s)

    def flush(self) -> None:
        self.inner.flush()


# ---- the kernel side: pure parts ---------------------------------------------------------------------------


class LineAttributor:
    """The task of each forwarded line, from the markers seen on its stream."""

    def __init__(self, max_streams: int = MAX_TRACKED_WORKER_STREAMS) -> None:
        self._tasks: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._max = max_streams

    def feed(self, stream: tuple[Any, ...], lines: list[str]) -> list[tuple[str, str]]:
        """(task id or "", line) for each line of `stream` that is not a marker."""
        out = []
        task = self._tasks.get(stream, "")
        for line in lines:
            if line.startswith(TASK_MARK):
                task = line[len(TASK_MARK):].strip()
                continue
            out.append((task, line))
        if task:
            self._tasks[stream] = task
            self._tasks.move_to_end(stream)
            while len(self._tasks) > self._max:
                self._tasks.popitem(last=False)
        return out


def without_marks(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith(TASK_MARK)]


class CellWindows:
    """Which cell was running at a time (ms since the epoch)."""

    def __init__(self, max_cells: int = MAX_CELL_WINDOWS) -> None:
        self._starts: list[tuple[int, str]] = []
        self._max = max_cells

    def begin(self, tag: str, now_ms: int) -> None:
        if self._starts and self._starts[-1][1] == tag:
            return
        self._starts.append((now_ms, tag))
        if len(self._starts) > self._max:
            del self._starts[: len(self._starts) - self._max]

    @property
    def current(self) -> str:
        return self._starts[-1][1] if self._starts else ""

    def cell_at(self, ms: int) -> str:
        """The cell that began last at or before `ms` ("" before the first)."""
        found = ""
        for start, tag in self._starts:
            if start > ms:
                break
            found = tag
        return found


def root_task(task_id: str, lookup: Callable[[str, float], TaskRow | None]) -> TaskRow | None:
    """The row of the task the driver submitted at the root of `task_id`'s
    parent chain (None when `task_id` is unknown). ``lookup(id, timeout_s)``
    gives a task's row, or None when it did not show in time."""
    row = lookup(task_id, TASK_LOOKUP_TIMEOUT_S)
    seen = {task_id}
    while row is not None:
        parent_id = str(row.get("parent_task_id") or "")
        if not parent_id or parent_id in seen:
            return row
        seen.add(parent_id)
        parent = lookup(parent_id, PARENT_LOOKUP_TIMEOUT_S)
        if parent is None or parent.get("type") == "DRIVER_TASK":
            return row
        row = parent
    return None


# ---- the kernel side: the router --------------------------------------------------------------------------


class RayOutputRouter:
    """Receives Ray's forwarded worker output (``on_ray_logs``, on Ray's log
    thread), places it on its own thread and hands ``LogBatch``es to the
    notebook's output handler; without a handler, `fallback` (Ray's own
    printer) gets the batch with the markers removed."""

    def __init__(self, find_task: TaskLookup, fallback: Callable[[dict[str, Any]], None],
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.find_task = find_task
        self.fallback = fallback
        self.clock_ms = clock_ms
        self.handler: OutputHandler | None = None
        self.windows = CellWindows()
        self._attributor = LineAttributor()
        self._cells: OrderedDict[str, str] = OrderedDict()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def begin_cell(self, tag: str) -> None:
        self.windows.begin(tag, self.clock_ms())

    def on_ray_logs(self, data: dict[str, Any]) -> None:
        pid = data.get("pid")
        if self.handler is None or not str(pid).isdigit():  # raylet, autoscaler, ...: Ray prints those
            self.fallback(dict(data, lines=without_marks(list(data.get("lines", [])))))
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nbray-ray-task-output", daemon=True)
                self._thread.start()
        self._queue.put(data)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            self.route(data)

    def route(self, data: dict[str, Any]) -> None:
        """Hand `data`'s lines to the handler, each tagged with its cell."""
        ip = str(data.get("ip", ""))
        pid = int(data.get("pid") or 0)
        is_err = bool(data.get("is_err"))
        name = str(data.get("actor_name") or data.get("task_name") or "")
        entries = []
        for task, line in self._attributor.feed((ip, pid, is_err), list(data.get("lines", []))):
            tag = (self.cell_of(task) if task else "") or self.windows.current
            entries.append(LogEntry(text=line + "\n", is_err=is_err, context_tag=tag, task_name=name, pid=pid,
                                    node_ip=ip))
        handler = self.handler
        if entries and handler is not None:
            handler(LogBatch(entries))

    def cell_of(self, task_id: str) -> str:
        """The tag of the cell that submitted `task_id` (or its root task); "" when unknown."""
        if task_id in self._cells:
            return self._cells[task_id]
        root = root_task(task_id, self._lookup)
        created = root.get("creation_time_ms") if root is not None else None
        tag = self.windows.cell_at(int(created)) if created else ""
        self._cells[task_id] = tag  # "" too: one wait per unknown task, not one per line
        while len(self._cells) > MAX_TRACKED_TASKS:
            self._cells.popitem(last=False)
        return tag

    def _lookup(self, task_id: str, timeout_s: float) -> TaskRow | None:
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.find_task(task_id)
            if row is not None or time.monotonic() >= deadline:
                return row
            time.sleep(TASK_LOOKUP_RETRY_S)  # the task's events reach Ray's state API about once a second
