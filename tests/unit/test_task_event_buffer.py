"""When a core worker's task-event buffer reports: periodically while busy, soon after a final state."""

from types import SimpleNamespace

import pytest

from nbray.common.task_event_columns import read_columns, read_running
from nbray.protocol import gcs_pb2
from nbray.worker.task_events import TaskEventBuffer, record_state
from tests.unit.task_records import ManualTimers

pytestmark = pytest.mark.timeout(30)


def make():
    loop = ManualTimers()
    sent = []
    buf = TaskEventBuffer(1000, report_interval_ms=250, final_report_delay_ms=100)
    buf.info_parts = lambda task: (gcs_pb2.TaskInfo(name="f"), [], [task.task_id + bytes(4)])

    def flush():  # as the core worker does
        request = buf.drain()
        if request is not None:
            sent.append(request)

    buf.start(loop.schedule, flush)
    return buf, loop, sent


def states_by_task(request):
    """Each task's reported states, from the columns and the records."""
    states = {e.task_id: e.states for e in read_columns(request.columns)}
    states.update({r.task_id: list(r.states) for r in request.events})
    return states


def task(i):
    return SimpleNamespace(task_id=bytes([i]) * 24, attempt=0, ev=[(0, gcs_pb2.PENDING_ARGS_AVAIL, 1)], ev_sent=0,
                           ev_info_sent=False, ev_done=False, ev_queued=False, ev_waiting=False,
                           ev_buffer=None)


def test_an_idle_process_sets_no_timer():
    buf, loop, sent = make()
    assert loop.timers == []
    loop.fire_all()
    assert sent == []


def test_events_arm_one_periodic_report():
    buf, loop, sent = make()
    for i in range(5):
        buf.running(bytes([i]) * 24, 0, b"n", b"w", 1)
    assert [t[0] for t in loop.timers] == [0.25]
    loop.fire_all()
    assert len(sent) == 1 and len(list(read_running(sent[0].columns))) == 5
    assert loop.timers == []  # nothing in flight: no more wake-ups


def test_a_final_state_is_reported_soon_once_per_period():
    buf, loop, sent = make()
    t = task(1)
    buf.track(t)
    assert [d for d, _, _ in loop.timers] == [0.25]
    record_state(t, gcs_pb2.FINISHED)
    t.ev_done = True
    buf.report_soon()
    buf.report_soon()
    buf.failed(b"x" * 24, 0, 3, "boom", "")
    assert [d for d, _, _ in loop.timers] == [0.25, 0.1]  # one soon report for all three
    loop.fire_all()  # the periodic timer was superseded: one report only
    assert len(sent) == 1
    states = states_by_task(sent[0])
    assert states[t.task_id] == [gcs_pb2.PENDING_ARGS_AVAIL, gcs_pb2.FINISHED]
    assert states[b"x" * 24] == [gcs_pb2.FAILED]
    assert loop.timers == []


def test_tasks_in_flight_keep_the_periodic_report_going():
    buf, loop, sent = make()
    t = task(2)
    buf.track(t)
    loop.fire_all()
    assert len(sent) == 1 and [d for d, _, _ in loop.timers] == [0.25]
    record_state(t, gcs_pb2.SUBMITTED_TO_WORKER)
    loop.fire_all()
    assert states_by_task(sent[1]) == {t.task_id: [gcs_pb2.SUBMITTED_TO_WORKER]}
    loop.fire_all()  # nothing new: no empty message
    assert len(sent) == 2
    t.ev_done = True
    loop.fire_all()
    assert loop.timers == []


def test_running_reports_of_one_worker_go_in_columns_and_others_as_records():
    buf, loop, sent = make()
    buf.running(b"a" * 24, 0, b"n", b"w", 1)
    buf.running(b"b" * 24, 1, b"n", b"w", 1)
    buf.running(b"c" * 24, 0, b"n", b"w", 1, actor_repr="Counter(3)")
    buf.running(b"d" * 24, 0, b"n", b"other", 1)
    loop.fire_all()
    (req,) = sent
    assert [(t, a) for t, a, _ in read_running(req.columns)] == [(b"a" * 24, 0), (b"b" * 24, 1)]
    assert (req.columns.node_id, req.columns.worker_id, req.columns.worker_pid) == (b"n", b"w", 1)
    assert {(r.task_id, r.actor_repr_name, r.worker_id) for r in req.events} == {
        (b"c" * 24, "Counter(3)", b"w"), (b"d" * 24, "", b"other")}
