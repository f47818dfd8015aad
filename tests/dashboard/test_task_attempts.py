"""Earlier attempts of retried tasks: kept by the dashboard's table and served by ``/api/tasks?attempts=true``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import nbray
from nbray.dashboard.tasks import TaskFilter, TaskTable, row_from_proto, superseded_attempt
from nbray.protocol import gcs_pb2
from nbray.testing import wait_for_condition
from tests.dashboard.conftest import DashboardClient, DashboardCluster
from tests.dashboard.test_task_table import proto, tid

NODE = b"n" * 28


def earlier_of(table: TaskTable, flt: TaskFilter | None = None) -> list[dict[str, Any]]:
    body, total = table.earlier_json(flt or TaskFilter(), 1000)
    rows: list[dict[str, Any]] = json.loads(body)
    assert total == len(rows)
    return rows


# ---- the table (pure) ------------------------------------------------------------------------------------------


def test_a_retry_keeps_the_failed_first_attempt_whatever_the_order_of_reports() -> None:
    first_failed = row_from_proto(proto(tid(1), gcs_pb2.FAILED, 2_000_000_000, node=NODE))
    second = row_from_proto(proto(tid(1), gcs_pb2.FINISHED, 3_000_000_000, node=NODE, attempt=1))
    for order in ([first_failed, second], [second, first_failed]):
        table = TaskTable(max_tasks=10)
        changed = [c for rows in order for c in table.upsert([rows])]
        assert [(r["attempt_number"], r["state"]) for r in changed][-1] in ((0, "FAILED"), (1, "FINISHED"))
        latest = table.get(tid(1))
        assert latest is not None and latest["attempt_number"] == 1
        assert [(r["attempt_number"], r["state"]) for r in earlier_of(table)] == [(0, "FAILED")]
        assert table.earlier_attempts(tid(1))[0]["end_time_ms"] == 2000
        assert len(table) == 1  # the task list still has one row per task


def test_an_attempt_replaced_without_an_end_is_closed_as_failed_when_the_retry_was_created() -> None:
    table = TaskTable(max_tasks=10)
    table.upsert([row_from_proto(proto(tid(1), gcs_pb2.RUNNING, 1_000_000_000, node=NODE))])
    changed, _ = table.apply_changes([gcs_pb2.TaskStateChange(
        task_id=bytes.fromhex(tid(1)), attempt_number=1, state=gcs_pb2.PENDING_NODE_ASSIGNMENT,
        ts_ns=1_500_000_000)])
    assert [(r["attempt_number"], r["state"]) for r in changed] == [(1, "PENDING_NODE_ASSIGNMENT"), (0, "FAILED")]
    [first] = earlier_of(table)
    assert (first["start_time_ms"], first["end_time_ms"]) == (1000, 1500)
    retry = table.get(tid(1))
    # The retry has not run yet: it does not inherit the first attempt's worker or start.
    assert retry is not None and retry["worker_id"] is None and retry["start_time_ms"] is None
    assert table.running_task_of_worker((b"w" * 28).hex()) is None
    # A finished attempt stays as it was reported.
    done = row_from_proto(proto(tid(2), gcs_pb2.FINISHED, 5, node=NODE))
    assert superseded_attempt(done, {**done, "attempt_number": 1}) is done


def test_earlier_attempts_are_bounded_and_leave_with_their_task() -> None:
    table = TaskTable(max_tasks=3)
    for i in range(5):
        table.upsert([row_from_proto(proto(tid(i), gcs_pb2.FAILED, 10 + i, node=NODE)),
                      row_from_proto(proto(tid(i), gcs_pb2.FINISHED, 20 + i, node=NODE, attempt=1))])
    kept = earlier_of(table)
    assert table.num_earlier_attempts <= 3
    # Only attempts of tasks still in the table are served, the newest ones.
    assert {r["task_id"] for r in kept} == {tid(2), tid(3), tid(4)} == {r["task_id"] for r in table.rows()}


def test_the_filter_applies_to_earlier_attempts() -> None:
    table = TaskTable(max_tasks=10)
    table.upsert([row_from_proto(proto(tid(1), gcs_pb2.FAILED, 10, node=NODE, func="f")),
                  row_from_proto(proto(tid(1), gcs_pb2.FINISHED, 20, node=NODE, func="f", attempt=1)),
                  row_from_proto(proto(tid(2), gcs_pb2.FAILED, 10, node=NODE, func="g")),
                  row_from_proto(proto(tid(2), gcs_pb2.RUNNING, 20, node=NODE, func="g", attempt=1))])
    assert [r["task_id"] for r in earlier_of(table, TaskFilter(func="g"))] == [tid(2)]
    # By state: the task's latest state decides, so a finished task keeps its failed first attempt.
    assert [r["task_id"] for r in earlier_of(table, TaskFilter(states=frozenset({"FINISHED"})))] == [tid(1)]


# ---- the route, on a real cluster ------------------------------------------------------------------------------


@nbray.remote(max_retries=2, retry_exceptions=True)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).touch()
        raise RuntimeError("the first attempt fails")
    return "second attempt"


def both_attempts(client: DashboardClient, task_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    reply = client.get("/api/tasks?attempts=true&limit=100000").json()
    latest = [r for r in reply["tasks"] if r["task_id"] == task_id]
    earlier = [r for r in reply["earlier_attempts"] if r["task_id"] == task_id]
    if not latest or latest[0]["state"] != "FINISHED" or not earlier or not earlier[0]["end_time_ms"]:
        return None
    if not (latest[0]["func_or_class_name"] and earlier[0]["func_or_class_name"]):
        # A state change is shown at once, the task's facts once the complete rows are fetched.
        return None
    return earlier[0], latest[0]


@pytest.mark.timeout(120)
def test_the_dashboard_serves_both_attempts_of_a_retried_task(dash: DashboardCluster, tmp_path: Path) -> None:
    ref = flaky.remote(str(tmp_path / "ran-once"))
    assert nbray.get(ref, timeout=60) == "second attempt"
    task_id = ref.task_id().hex()
    first, second = wait_for_condition(lambda: both_attempts(dash.client, task_id), timeout=30,
                                       message="the dashboard serves both attempts of the retried task")
    assert (first["attempt_number"], first["state"]) == (0, "FAILED")
    assert (second["attempt_number"], second["state"]) == (1, "FINISHED")
    assert first["func_or_class_name"] == second["func_or_class_name"] and "flaky" in first["func_or_class_name"]
    assert first["start_time_ms"] is not None and first["worker_id"]
    assert first["end_time_ms"] <= second["end_time_ms"]
    # Without the parameter the reply is as before: one row per task, no earlier attempts.
    plain = dash.client.get("/api/tasks?limit=100000").json()
    assert "earlier_attempts" not in plain
    assert [r["attempt_number"] for r in plain["tasks"] if r["task_id"] == task_id] == [1]
    assert dash.client.get("/api/tasks?attempts=maybe").status == 400
