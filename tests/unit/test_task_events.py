"""The GCS's bounded store of task attempts."""

from nbray.gcs.task_events import TaskEventStore
from nbray.protocol import gcs_pb2
from tests.unit.task_records import record


def test_out_of_order_reports_resolve_to_the_terminal_state():
    store = TaskEventStore(100)
    info = gcs_pb2.TaskInfo(name="f", job_id=b"\x00\x00\x00\x01", arg_object_ids=[b"a" * 28])
    store.add([record(b"t" * 24, 0, [(gcs_pb2.FINISHED, 30)])])
    store.add([record(b"t" * 24, 0, [(gcs_pb2.PENDING_ARGS_AVAIL, 10)], info=info),
               record(b"t" * 24, 0, [(gcs_pb2.RUNNING, 20)], worker_pid=42)])
    rows = store.query([], 10).tasks
    assert len(rows) == 1
    assert rows[0].state == gcs_pb2.FINISHED
    assert rows[0].worker_pid == 42
    assert list(rows[0].info.arg_object_ids) == [b"a" * 28]


def test_filters_and_limit():
    store = TaskEventStore(100)
    for i in range(10):
        info = gcs_pb2.TaskInfo(name="even" if i % 2 == 0 else "odd")
        store.add([record(bytes([i]) * 24, 0, [(gcs_pb2.FINISHED, i)], info=info)])
    reply = store.query([gcs_pb2.StateFilter(key="name", op="=", value="even")], 3)
    assert [r.info.name for r in reply.tasks] == ["even"] * 3
    assert reply.num_truncated == 2
    reply = store.query([gcs_pb2.StateFilter(key="name", op="!=", value="even")], 100)
    assert len(reply.tasks) == 5


def test_finished_attempts_are_evicted_first():
    store = TaskEventStore(3)
    store.add([record(b"r" * 24, 0, [(gcs_pb2.RUNNING, 1)])])
    for i in range(4):
        store.add([record(bytes([i]) * 24, 0, [(gcs_pb2.FINISHED, 2)])])
    ids = {r.task_id for r in store.query([], 10).tasks}
    assert b"r" * 24 in ids and len(ids) == 3
    assert store.num_evicted == 2


def test_unknown_filter_key_is_rejected():
    import pytest

    store = TaskEventStore(10)
    with pytest.raises(ValueError, match="filterable keys"):
        store.query([gcs_pb2.StateFilter(key="nope", op="=", value="x")], 10)
