"""Placing Ray's forwarded worker output into cells: the pure parts (no Ray, no cluster)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from nbray.jupyter.backends import ray_backend, ray_logs
from nbray.jupyter.backends.ray_logs import TASK_MARK, CellWindows, LineAttributor, RayOutputRouter, TaskMarkingStream


def test_the_marking_stream_names_each_task_before_its_output() -> None:
    inner = io.StringIO()
    running = ["t1"]
    stream = TaskMarkingStream(inner, lambda: running[0])
    stream.write("a\nb")
    stream.write("c\n")
    running[0] = "t2"
    stream.write("partial")
    running[0] = ""  # a thread that runs no task: its output counts for the last task
    stream.write(" rest\n")
    running[0] = "t1"
    stream.write("again\n")
    assert inner.getvalue() == (f"{TASK_MARK}t1\na\nbc\n{TASK_MARK}t2\npartial rest\n{TASK_MARK}t1\nagain\n")


def test_the_marking_stream_starts_a_marker_on_a_line_of_its_own() -> None:
    inner = io.StringIO()
    running = ["t1"]
    stream = TaskMarkingStream(inner, lambda: running[0])
    stream.write("no newline")
    running[0] = "t2"
    stream.write("x\n")
    assert inner.getvalue() == f"{TASK_MARK}t1\nno newline\n{TASK_MARK}t2\nx\n"


def test_lines_get_the_task_of_the_last_marker_on_their_stream() -> None:
    attributor = LineAttributor(max_streams=2)
    a, b = ("ip", 1, False), ("ip", 2, False)
    assert attributor.feed(a, ["before", f"{TASK_MARK}t1", "one"]) == [("", "before"), ("t1", "one")]
    assert attributor.feed(b, [f"{TASK_MARK}t9", "nine"]) == [("t9", "nine")]
    assert attributor.feed(a, ["two", f"{TASK_MARK}t2", "three"]) == [("t1", "two"), ("t2", "three")]
    attributor.feed(("ip", 3, False), [f"{TASK_MARK}t3"])  # the bound forgets the stream used least recently
    assert attributor.feed(b, ["ten"]) == [("", "ten")]
    assert attributor.feed(a, ["four"]) == [("t2", "four")]


def test_cell_windows_find_the_cell_running_at_a_time() -> None:
    windows = CellWindows(max_cells=3)
    assert windows.cell_at(5) == "" and windows.current == ""
    windows.begin("c1", 10)
    windows.begin("c1", 15)  # the same cell again (a new attach) opens no window
    windows.begin("c2", 20)
    assert (windows.cell_at(9), windows.cell_at(10), windows.cell_at(19), windows.cell_at(20)) == ("", "c1", "c1",
                                                                                                   "c2")
    windows.begin("c3", 30)
    windows.begin("c4", 40)
    assert windows.cell_at(12) == "" and windows.cell_at(35) == "c3" and windows.current == "c4"


def _chain(rows: dict[str, dict[str, Any]]) -> Any:
    return lambda task_id, timeout_s: rows.get(task_id)


def test_the_root_task_is_the_one_the_driver_submitted() -> None:
    rows = {"drv": {"task_id": "drv", "type": "DRIVER_TASK", "parent_task_id": ""},
            "root": {"task_id": "root", "type": "NORMAL_TASK", "parent_task_id": "drv", "creation_time_ms": 1},
            "child": {"task_id": "child", "type": "NORMAL_TASK", "parent_task_id": "root", "creation_time_ms": 9},
            "orphan": {"task_id": "orphan", "type": "ACTOR_TASK", "parent_task_id": "unknown"}}
    assert ray_logs.root_task("child", _chain(rows))["task_id"] == "root"
    assert ray_logs.root_task("root", _chain(rows))["task_id"] == "root"
    assert ray_logs.root_task("orphan", _chain(rows))["task_id"] == "orphan"
    assert ray_logs.root_task("missing", _chain(rows)) is None


class _Recorder:
    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.printed: list[dict[str, Any]] = []


def _router(rows: dict[str, dict[str, Any]], recorder: _Recorder) -> RayOutputRouter:
    clock = [0]
    router = RayOutputRouter(rows.get, recorder.printed.append, clock_ms=lambda: clock[0])
    router.handler = recorder.batches.append
    for start, tag in ((100, "cell:a:1"), (200, "cell:b:2")):
        clock[0] = start
        router.begin_cell(tag)
    return router


def test_a_late_line_goes_to_the_cell_that_created_its_root_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_logs, "TASK_LOOKUP_TIMEOUT_S", 0.0)
    monkeypatch.setattr(ray_logs, "PARENT_LOOKUP_TIMEOUT_S", 0.0)
    rows = {"t1": {"type": "NORMAL_TASK", "parent_task_id": "drv", "creation_time_ms": 150},
            "drv": {"type": "DRIVER_TASK", "parent_task_id": ""}}
    recorder = _Recorder()
    router = _router(rows, recorder)
    router.route({"ip": "10.0.0.2", "pid": 42, "is_err": False, "task_name": "late", "actor_name": "",
                  "lines": [f"{TASK_MARK}t1", "hello"]})
    router.route({"ip": "10.0.0.2", "pid": 43, "is_err": True, "task_name": "", "actor_name": "Talker",
                  "lines": ["unmarked"]})
    router.route({"ip": "10.0.0.2", "pid": 44, "is_err": False, "task_name": "f", "lines": [f"{TASK_MARK}tx", "?"]})
    entries = [e for batch in recorder.batches for e in batch.entries]
    assert [(e.text, e.context_tag, e.task_name, e.pid, e.is_err) for e in entries] == [
        ("hello\n", "cell:a:1", "late", 42, False),
        ("unmarked\n", "cell:b:2", "Talker", 43, True),  # no task known: the running cell, as Ray prints it
        ("?\n", "cell:b:2", "f", 44, False)]  # a task the state API does not know


def test_without_a_handler_ray_prints_the_lines_less_the_markers() -> None:
    recorder = _Recorder()
    router = _router({}, recorder)
    router.handler = None
    router.on_ray_logs({"pid": 7, "lines": [f"{TASK_MARK}t1", "shown"]})
    router.handler = recorder.batches.append
    router.on_ray_logs({"pid": "raylet", "lines": ["raylet says"]})
    assert [d["lines"] for d in recorder.printed] == [["shown"], ["raylet says"]]
    assert recorder.batches == []


def test_the_setup_hook_joins_a_users_runtime_env_without_replacing_their_hook() -> None:
    env = ray_backend.with_setup_hook({"env_vars": {"A": "1"}})
    assert env == {"env_vars": {"A": "1"}, "worker_process_setup_hook": ray_backend.mark_task_output}
    assert ray_backend.with_setup_hook(None) == {"worker_process_setup_hook": ray_backend.mark_task_output}
    assert ray_backend.with_setup_hook({"worker_process_setup_hook": "mine.setup"}) == {
        "worker_process_setup_hook": "mine.setup"}
