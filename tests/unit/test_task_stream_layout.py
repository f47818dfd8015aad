"""The TaskStream widget's pure parts: rows and bars from task attempts, names, details, sparklines."""

from __future__ import annotations

from typing import Any

import pytest

from nbray.widgets.sparkline import sparkline_points, sparklines_html
from nbray.widgets.task_stream import details_html, short_func_name, stream_layout

pytestmark = pytest.mark.timeout(30)


def attempt(task_id: str, n: int = 0, **extra: Any) -> dict[str, Any]:
    row = {"task_id": task_id, "attempt_number": n, "func_or_class_name": "mod.f", "name": "f", "state": "FINISHED",
           "node_id": "n1", "worker_id": "w1", "worker_pid": 10, "creation_time_ms": 990, "start_time_ms": 1000,
           "end_time_ms": 1010, "job_id": "01000000", "context_tag": None}
    row.update(extra)
    return row


def test_one_row_per_worker_grouped_by_node_head_first() -> None:
    rows = [attempt("a", node_id="n2", worker_id="x", worker_pid=5),
            attempt("b", worker_id="w2", worker_pid=200, start_time_ms=1500, end_time_ms=1600),
            attempt("c"),
            attempt("d", start_time_ms=None, worker_id=None)]  # never started: no bar
    layout = stream_layout(rows, node_order=["n2"])
    assert [(r["node_id"], r["worker_id"], r["node_first"]) for r in layout["rows"]] == [
        ("n2", "x", True), ("n1", "w1", True), ("n1", "w2", False)]
    bars = layout["bars"]
    assert layout["t0_ms"] == 1000
    assert bars["key"] == ["a:0", "c:0", "b:0"]  # by start time
    assert bars["row"] == [0, 1, 2]
    assert bars["start"] == [0, 0, 500] and bars["end"] == [10, 10, 600]
    assert layout["funcs"] == ["mod.f"] and layout["short_funcs"] == ["f"]


def test_failed_running_and_retried_attempts() -> None:
    rows = [attempt("a", state="FAILED", func_or_class_name="mod.check"),
            attempt("b", state="RUNNING", end_time_ms=None),
            attempt("c", 0, state="RUNNING", end_time_ms=None),  # its worker died: attempt 1 followed
            attempt("c", 1, state="FINISHED", creation_time_ms=1200, start_time_ms=1300, end_time_ms=1400)]
    layout = stream_layout(rows)
    bars = layout["bars"]
    by_key = {k: i for i, k in enumerate(bars["key"])}
    assert bars["failed"][by_key["a:0"]] == 1 and layout["funcs"][bars["func"][by_key["a:0"]]] == "mod.check"
    assert bars["end"][by_key["b:0"]] == -1 and bars["failed"][by_key["b:0"]] == 0
    assert (bars["end"][by_key["c:0"]], bars["failed"][by_key["c:0"]]) == (200, 1)
    assert (bars["start"][by_key["c:1"]], bars["failed"][by_key["c:1"]]) == (300, 0)


def test_names_and_details() -> None:
    assert short_func_name("tests.mod.run.<locals>.load") == "load"
    assert short_func_name("pkg.Counter.incr") == "Counter.incr"
    assert short_func_name("pkg.sub.square") == "square" and short_func_name("f") == "f"
    text = details_html(attempt("a", state="FAILED", error_type="TASK_EXECUTION_EXCEPTION",
                                error_traceback="ValueError: <kaboom>"))
    assert "<b>f</b>" in text and "FAILED" in text and "ran for</b></td><td>0.010 s" in text
    assert "ValueError: &lt;kaboom&gt;" in text  # escaped


def test_sparklines_put_the_newest_sample_at_the_right_edge() -> None:
    assert sparkline_points([0.0, 1.0, 2.0], 2.0, capacity=5, width=100, height=10) == "50.0,10.0 75.0,5.0 100.0,0.0"
    assert sparkline_points([5.0], 1.0, capacity=2, width=10, height=10) == "10.0,0.0"  # clipped to the max
    html_text = sparklines_html([("CPU", [1.0, 2.0], 4.0)], capacity=600, period_s=1.0)
    assert "data-series='CPU' data-points='2'" in html_text and "the last 10 min" in html_text
    with pytest.raises(ValueError, match="at least 2 samples"):
        sparkline_points([], 1.0, capacity=1)
