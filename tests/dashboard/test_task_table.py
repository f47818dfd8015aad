"""The dashboard's task table: merging reports, channel changes, listing, eviction (pure logic)."""

from __future__ import annotations

import json
from typing import Any

from nbray.dashboard.tasks import TaskFilter, TaskTable, row_from_proto
from nbray.protocol import common_pb2, gcs_pb2


def proto(task: str, state: int, ts: int, *, attempt: int = 0, node: bytes = b"", func: str = "f",
          job: bytes = b"\x00\x00\x00\x01", args: list[bytes] | None = None, parent: bytes = b"",
          tag: str = "") -> gcs_pb2.TaskStateRow:
    info = gcs_pb2.TaskInfo(type=common_pb2.NORMAL_TASK, name=func, func_or_class_name=func, job_id=job,
                            parent_task_id=parent, arg_object_ids=args or [],
                            return_object_ids=[bytes.fromhex(task) + b"\x00\x00\x00\x01"], context_tag=tag)
    info.caller.host, info.caller.port = "127.0.0.1", 4000
    return gcs_pb2.TaskStateRow(task_id=bytes.fromhex(task), attempt_number=attempt, info=info, state=state,
                                states=[gcs_pb2.PENDING_ARGS_AVAIL, state], state_ts_ns=[ts - 10, ts],
                                node_id=node, worker_id=b"w" * 28 if node else b"", worker_pid=77 if node else 0,
                                updated_ns=ts)


def tid(i: int) -> str:
    return f"{i:048x}"


def test_row_has_edges_timings_and_owner() -> None:
    row = row_from_proto(proto(tid(1), gcs_pb2.FINISHED, 3_000_000_000, node=b"n" * 28, args=[b"a" * 28],
                               parent=bytes.fromhex(tid(9)), tag="cell-3"))
    assert row["state"] == "FINISHED"
    assert row["arg_object_ids"] == [(b"a" * 28).hex()]
    assert row["return_object_ids"] == [tid(1) + "00000001"]
    assert row["parent_task_id"] == tid(9)
    assert row["context_tag"] == "cell-3"
    assert row["owner_address"] == "127.0.0.1:4000"
    assert row["end_time_ms"] == 3000 and row["creation_time_ms"] == 2999
    json.dumps(row)


def test_newer_reports_win_and_executor_fields_are_kept() -> None:
    table = TaskTable(100)
    running = row_from_proto(proto(tid(1), gcs_pb2.RUNNING, 100, node=b"n" * 28))
    assert table.upsert([running]) == [running]
    finished_without_node = row_from_proto(proto(tid(1), gcs_pb2.FINISHED, 200))
    table.upsert([finished_without_node])
    row = table.get(tid(1))
    assert row is not None and row["state"] == "FINISHED" and row["node_id"] == (b"n" * 28).hex()
    assert row["worker_pid"] == 77
    # An older report changes nothing.
    assert table.upsert([row_from_proto(proto(tid(1), gcs_pb2.RUNNING, 150, node=b"n" * 28))]) == []
    # A retry (higher attempt) replaces a finished attempt.
    retry = row_from_proto(proto(tid(1), gcs_pb2.PENDING_NODE_ASSIGNMENT, 50, attempt=1))
    assert table.upsert([retry])[0]["attempt_number"] == 1


def test_channel_changes_make_minimal_rows_and_report_the_oldest_time() -> None:
    table = TaskTable(100)
    changes = [gcs_pb2.TaskStateChange(task_id=bytes.fromhex(tid(1)), state=gcs_pb2.RUNNING, ts_ns=500,
                                       job_id=b"\x00\x00\x00\x02"),
               gcs_pb2.TaskStateChange(task_id=bytes.fromhex(tid(2)), state=gcs_pb2.FAILED, ts_ns=300)]
    changed, oldest = table.apply_changes(changes)
    assert oldest == 300
    assert [r["state"] for r in changed] == ["RUNNING", "FAILED"]
    assert table.get(tid(1))["job_id"] == "00000002"  # type: ignore[index]
    # A stale change after a terminal state is ignored.
    changed, _ = table.apply_changes([gcs_pb2.TaskStateChange(task_id=bytes.fromhex(tid(2)), state=gcs_pb2.RUNNING,
                                                              ts_ns=400)])
    assert changed == []
    # The complete row fills in the rest.
    table.upsert([row_from_proto(proto(tid(1), gcs_pb2.RUNNING, 500, node=b"n" * 28, func="g"))])
    assert table.get(tid(1))["func_or_class_name"] == "g"  # type: ignore[index]


def listing(table: TaskTable, flt: TaskFilter, offset: int = 0, limit: int = 100) -> tuple[list[Any], int]:
    body, total = table.list_json(flt, offset, limit)
    return json.loads(body), total


def test_listing_filters_and_pages_in_creation_order() -> None:
    table = TaskTable(1000)
    rows = []
    for i in range(30):
        state = gcs_pb2.FAILED if i % 10 == 0 else gcs_pb2.FINISHED
        rows.append(row_from_proto(proto(tid(i), state, 1000 + i, func="even" if i % 2 == 0 else "odd",
                                         node=b"a" * 28 if i < 15 else b"b" * 28,
                                         tag=f"cell-{i % 3}", job=b"\x00\x00\x00\x01" if i < 20 else b"\x00\x00\x00\x02")))
    table.upsert(rows)
    page, total = listing(table, TaskFilter(), offset=5, limit=10)
    assert total == 30 and [r["task_id"] for r in page] == [tid(i) for i in range(5, 15)]
    assert listing(table, TaskFilter(states=frozenset({"FAILED"})))[1] == 3
    assert listing(table, TaskFilter(func="odd"))[1] == 15
    assert listing(table, TaskFilter(node_id=(b"b" * 28).hex()))[1] == 15
    assert listing(table, TaskFilter(job_id="00000002"))[1] == 10
    assert listing(table, TaskFilter(context_tag="cell-1", job_id="00000001"))[1] == 7
    page, total = listing(table, TaskFilter(func="even"), offset=14, limit=10)
    assert total == 15 and [r["task_id"] for r in page] == [tid(28)]
    assert table.state_counts() == {"FINISHED": 27, "FAILED": 3}
    assert table.distinct("context_tag") == ["cell-0", "cell-1", "cell-2"]


def test_finished_tasks_are_evicted_first() -> None:
    table = TaskTable(3)
    table.upsert([row_from_proto(proto(tid(0), gcs_pb2.RUNNING, 1, node=b"n" * 28))])
    table.upsert([row_from_proto(proto(tid(i), gcs_pb2.FINISHED, i)) for i in range(1, 4)])
    assert len(table) == 3 and table.num_evicted == 1
    assert table.get(tid(0)) is not None and table.get(tid(1)) is None


def test_running_task_of_a_worker() -> None:
    table = TaskTable(10)
    table.upsert([row_from_proto(proto(tid(1), gcs_pb2.RUNNING, 1, node=b"n" * 28))])
    worker = (b"w" * 28).hex()
    assert table.running_task_of_worker(worker)["task_id"] == tid(1)  # type: ignore[index]
    table.upsert([row_from_proto(proto(tid(1), gcs_pb2.FINISHED, 2, node=b"n" * 28))])
    assert table.running_task_of_worker(worker) is None
