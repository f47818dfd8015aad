"""Owned tasks' event reports in columns: written by core workers, read and merged by the GCS."""

import pytest

from nbray.common.task_event_columns import ColumnsError, ColumnWriter, read_columns, split_ids
from nbray.gcs.task_events import TaskEventStore
from nbray.protocol import gcs_pb2
from tests.unit.task_records import record

pytestmark = pytest.mark.timeout(30)

P, S, R, F = gcs_pb2.PENDING_ARGS_AVAIL, gcs_pb2.SUBMITTED_TO_WORKER, gcs_pb2.RUNNING, gcs_pb2.FINISHED


def tid(i):
    return bytes([i]) * 24


def oid(i, k):
    return tid(i) + k.to_bytes(4, "little")


def request(writer):
    req = gcs_pb2.AddTaskEventsRequest()
    writer.fill(req.columns)
    wire = gcs_pb2.AddTaskEventsRequest()
    wire.ParseFromString(req.SerializeToString())
    return wire


def test_entries_read_back_as_written_with_one_template_per_batch():
    template = gcs_pb2.TaskInfo(name="f", job_id=b"\x00\x00\x00\x01")
    other = gcs_pb2.TaskInfo(name="g")
    w = ColumnWriter()
    w.add_task(tid(1), [(0, P, 10), (0, S, 11)], 0, (template, [], [oid(1, 1)]))
    w.add_task(tid(2), [(0, P, 12)], 0, (template, [oid(1, 1)], [oid(2, 1), oid(2, 2)]))
    w.add_task(tid(3), [(0, F, 13)])
    w.add_task(tid(4), [], 0, (other, [], []))
    req = request(w)
    assert len(req.columns.infos) == 2  # `template` travels once
    entries = list(read_columns(req.columns))
    assert [(e.task_id, e.attempt, e.states, e.ts) for e in entries] == [
        (tid(1), 0, [P, S], [10, 11]), (tid(2), 0, [P], [12]), (tid(3), 0, [F], [13]), (tid(4), 0, [], [])]
    assert [e.info.name if e.info else None for e in entries] == ["f", "f", None, "g"]
    assert split_ids(entries[1].arg_ids) == [oid(1, 1)]
    assert split_ids(entries[1].return_ids) == [oid(2, 1), oid(2, 2)]
    assert entries[2].arg_ids == entries[2].return_ids == b""


def test_a_retry_in_the_same_report_is_an_entry_of_its_own_and_the_facts_go_with_the_first_attempt():
    w = ColumnWriter()
    w.add_task(tid(1), [(0, P, 1), (0, F, 2), (1, P, 3)], 0, (gcs_pb2.TaskInfo(name="f"), [], [oid(1, 1)]))
    entries = list(read_columns(request(w).columns))
    assert [(e.attempt, e.states, e.info is not None) for e in entries] == [(0, [P, F], True), (1, [P], False)]


def test_facts_of_an_attempt_without_new_states_still_go():
    w = ColumnWriter()
    w.add_task(tid(1), [(1, R, 5)], 0, (gcs_pb2.TaskInfo(name="f"), [], []))
    entries = list(read_columns(request(w).columns))
    assert [(e.attempt, e.states, e.info is not None) for e in entries] == [(1, [R], False), (0, [], True)]


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.attempts.append(0), "num_states has"),
    (lambda c: setattr(c, "task_ids", c.task_ids[:-1]), "task_ids holds"),
    (lambda c: c.states.append(F), "num_states adds up"),
    (lambda c: c.info_index.__setitem__(0, 7), "info_index"),
    (lambda c: setattr(c, "return_ids", c.return_ids + b"x"), "return_ids holds"),
    (lambda c: c.num_args.__setitem__(0, -1), "arg_ids holds"),
])
def test_columns_that_do_not_fit_together_are_refused_whole(damage, message):
    w = ColumnWriter()
    w.add_task(tid(1), [(0, P, 1)], 0, (gcs_pb2.TaskInfo(name="f"), [], [oid(1, 1)]))
    req = request(w)
    damage(req.columns)
    store = TaskEventStore(100)
    with pytest.raises(ColumnsError, match=message):
        store.add_request(req)
    assert store.query([], 10).tasks == []


def test_the_store_merges_columns_with_records_and_builds_facts_when_read():
    store = TaskEventStore(100)
    w = ColumnWriter()
    template = gcs_pb2.TaskInfo(name="f", job_id=b"\x00\x00\x00\x07")
    for i in range(3):
        w.add_task(tid(i), [(0, P, 10 + i), (0, S, 20 + i)], 0, (template, [], [oid(i, 1)]))
    req = request(w)
    req.events.append(record(tid(1), 0, [(R, 30)], worker_pid=42))
    changes = store.add_request(req)
    assert [c.job_id for c in changes][:3] == [b"\x00\x00\x00\x07"] * 3
    store.add_request(request_of_states(tid(1), [(0, F, 40)]))
    rows = {r.task_id: r for r in store.query([], 10).tasks}
    assert [r.task_id for r in store.query([], 10).tasks] == [tid(0), tid(1), tid(2)]  # order first seen
    assert rows[tid(1)].state == F and rows[tid(1)].worker_pid == 42
    assert list(rows[tid(1)].states) == [P, S, R, F]
    assert rows[tid(2)].state == S
    assert list(rows[tid(2)].info.return_object_ids) == [oid(2, 1)]
    assert rows[tid(0)].info.name == "f"
    only_f = store.query([gcs_pb2.StateFilter(key="name", op="=", value="f")], 10).tasks
    assert len(only_f) == 3


def test_a_retry_reported_before_the_first_attempt_gets_its_facts():
    store = TaskEventStore(100)
    store.add_request(request_of_states(tid(1), [(1, P, 5)]))
    w = ColumnWriter()
    w.add_task(tid(1), [(0, P, 1), (0, F, 2)], 0, (gcs_pb2.TaskInfo(name="f"), [], [oid(1, 1)]))
    store.add_request(request(w))
    rows = store.query([], 10).tasks
    assert {(r.attempt_number, r.info.name) for r in rows} == {(0, "f"), (1, "f")}


def request_of_states(task_id, events):
    w = ColumnWriter()
    w.add_task(task_id, events)
    return request(w)


def test_running_columns_set_the_runner_and_the_state():
    store = TaskEventStore(100)
    w = ColumnWriter()
    w.add_task(tid(1), [(0, P, 1), (0, S, 2)], 0, (gcs_pb2.TaskInfo(name="f"), [], []))
    store.add_request(request(w))
    w = ColumnWriter()
    assert w.add_running(tid(1), 0, 3, b"n" * 28, b"w" * 28, 77)
    assert w.add_running(tid(2), 0, 4, b"n" * 28, b"w" * 28, 77)
    assert not w.add_running(tid(3), 0, 5, b"m" * 28, b"w" * 28, 77)  # another worker: a record instead
    changes = store.add_request(request(w))
    assert [(c.task_id, c.state) for c in changes] == [(tid(1), R), (tid(2), R)]
    rows = {r.task_id: r for r in store.query([], 10).tasks}
    assert rows[tid(1)].state == R and list(rows[tid(1)].states) == [P, S, R]
    assert (rows[tid(1)].node_id, rows[tid(1)].worker_pid) == (b"n" * 28, 77)
    assert rows[tid(2)].info.name == ""  # its owner has not reported yet


def test_running_columns_that_do_not_fit_are_refused_with_the_rest_of_the_request():
    w = ColumnWriter()
    w.add_task(tid(2), [(0, P, 1)])
    w.add_running(tid(1), 0, 3, b"n", b"w", 1)
    req = request(w)
    req.columns.running_ts_ns.append(9)
    store = TaskEventStore(10)
    with pytest.raises(ColumnsError, match="running attempts"):
        store.add_request(req)
    assert store.query([], 10).tasks == []
