"""When a core worker's task-event buffer reports: periodically while busy, soon after a final state."""

from types import SimpleNamespace

import pytest

from nbray.protocol import gcs_pb2
from nbray.worker.task_events import TaskEventBuffer, record_state
from tests.unit.task_records import ManualTimers

pytestmark = pytest.mark.timeout(30)


def make():
    loop = ManualTimers()
    sent = []
    buf = TaskEventBuffer(1000, report_interval_ms=250, final_report_delay_ms=100)
    buf.info_builder = lambda task, info: None

    def flush():  # as the core worker does
        request = buf.drain()
        if request is not None:
            sent.append(request)

    buf.start(loop.schedule, flush)
    return buf, loop, sent


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
    assert len(sent) == 1 and len(sent[0].events) == 5
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
    states = {r.task_id: list(r.states) for r in sent[0].events}
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
    assert list(sent[1].events[0].states) == [gcs_pb2.SUBMITTED_TO_WORKER]
    loop.fire_all()  # nothing new: no empty message
    assert len(sent) == 2
    t.ev_done = True
    loop.fire_all()
    assert loop.timers == []
