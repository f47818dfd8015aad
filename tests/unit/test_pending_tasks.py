"""A pending task kept as a compact record, its spec built on first use;
the task-event buffer that reads only tasks with something due; and when
the collector is kept off a large backlog of pending tasks."""

import gc
import sys
import time

import pytest

from nbray.common.task_event_columns import read_columns
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2
from nbray.worker.gc_policy import BacklogCollector, FreezePolicy
from nbray.worker.pending_task import PendingTask
from nbray.worker.task_events import TaskEventBuffer, record_state
from tests.unit.task_records import ManualTimers

pytestmark = pytest.mark.timeout(30)


def template():
    spec = common_pb2.TaskSpec(type=common_pb2.NORMAL_TASK, name="f", func_or_class_name="m.f", num_returns=1,
                               max_retries=3)
    spec.resources["CPU"] = 1.0
    spec.function.function_id = b"fid"
    return spec


def compact(tid=b"t" * 24, name=""):
    caller = common_pb2.Address(worker_id=b"w" * 28, host="127.0.0.1", port=1)
    return PendingTask.compact(template(), tid, b"job1", b"p" * 24, "cell-7", "ns", caller, b"\x00args",
                               [tid + b"\x01\x00\x00\x00"], tid + b"\x01\x00\x00\x00", name)


def test_a_compact_task_builds_the_same_spec_as_an_eager_one():
    task = compact()
    assert not task.spec_built and task.retries_left == 3 and not task.is_actor and task.name == "f"
    spec = task.spec
    assert task.spec_built
    assert (spec.task_id, spec.job_id, spec.parent_task_id, spec.context_tag, spec.namespace) == \
        (b"t" * 24, b"job1", b"p" * 24, "cell-7", "ns")
    assert spec.args_pickle == b"\x00args" and spec.return_base_id == b"t" * 24 + b"\x01\x00\x00\x00"
    assert spec.caller.worker_id == b"w" * 28 and spec.resources["CPU"] == 1.0
    assert spec.function.function_id == b"fid" and spec.max_retries == 3
    assert task.push_req.spec is spec  # built once, pushed without a copy
    eager = PendingTask(core_worker_pb2.PushTaskRequest(spec=spec), list(task.return_ids), [])
    assert eager.spec_built and eager.parent_task_id == b"p" * 24 and eager.context_tag == "cell-7"


def test_a_name_given_at_the_call_overrides_the_template():
    task = compact(name="custom")
    assert task.name == "custom" and task.spec.name == "custom"
    assert task.template.name == "f"  # the shared template is left as it was


def test_the_attempt_number_follows_retries_before_and_after_the_spec_exists():
    task = compact()
    task.next_attempt()
    assert task.attempt == 1 and task.spec.attempt_number == 1
    task.next_attempt()
    assert task.spec.attempt_number == 2


def buffer(interval_ms=60_000):
    loop = ManualTimers()
    sent = []
    buf = TaskEventBuffer(1000, report_interval_ms=interval_ms, final_report_delay_ms=100)
    buf.info_parts = lambda task: (gcs_pb2.TaskInfo(name=task.name), [], task.return_ids)

    def flush():
        request = buf.drain()
        if request is not None:
            sent.append(request)

    buf.start(loop.schedule, flush)
    return buf, loop, sent


def tracked(buf, tid):
    task = compact(tid)
    task.ev.append((0, gcs_pb2.PENDING_ARGS_AVAIL, time.time_ns()))
    buf.track(task)
    return task


def test_a_short_task_is_reported_once_with_all_its_states_and_a_queued_one_not_at_all():
    buf, loop, sent = buffer()
    short = tracked(buf, b"s" * 24)
    queued = [tracked(buf, bytes([i]) * 24) for i in range(50)]
    record_state(short, gcs_pb2.SUBMITTED_TO_WORKER)
    record_state(short, gcs_pb2.FINISHED)
    short.ev_done = True
    loop.fire_all()
    (entry,) = read_columns(sent[0].columns)
    assert len(sent) == 1 and entry.task_id == b"s" * 24 and not sent[0].events
    assert entry.states == [gcs_pb2.PENDING_ARGS_AVAIL, gcs_pb2.SUBMITTED_TO_WORKER, gcs_pb2.FINISHED]
    assert entry.info.name == "f"
    assert not any(t.spec_built for t in queued)  # reporting never built a queued task's spec
    request = buf.drain(everything=True)  # as before the process exits
    assert request is not None and len(list(read_columns(request.columns))) == 50


def test_states_of_a_task_reported_before_follow_it_and_a_finished_one_is_let_go():
    buf, loop, sent = buffer(interval_ms=0)
    task = tracked(buf, b"a" * 24)
    loop.fire_all()
    assert [e.states for e in read_columns(sent[0].columns)] == [[gcs_pb2.PENDING_ARGS_AVAIL]]
    record_state(task, gcs_pb2.SUBMITTED_TO_WORKER)  # not final: goes with the next report
    loop.fire_all()
    assert [e.states for e in read_columns(sent[1].columns)] == [[gcs_pb2.SUBMITTED_TO_WORKER]]
    record_state(task, gcs_pb2.FINISHED)
    task.ev_done = True
    loop.fire_all()
    assert [e.states for e in read_columns(sent[2].columns)] == [[gcs_pb2.FINISHED]]
    loop.fire_all()
    assert len(sent) == 3 and len(buf) == 0 and loop.timers == []


def test_the_collector_is_frozen_in_steps_while_the_backlog_grows_and_released_after():
    policy = FreezePolicy(step=100)
    assert not policy.on_submitted(99)
    assert policy.on_submitted(100) and policy.frozen
    assert not policy.on_submitted(150)
    assert policy.on_submitted(200)
    assert not policy.on_finished(26)  # still a backlog
    assert policy.on_finished(25) and not policy.frozen
    assert not policy.on_finished(0)
    assert policy.next_freeze == 100
    with pytest.raises(ValueError):
        FreezePolicy(step=0)


def test_the_backlog_collector_freezes_and_unfreezes_this_process():
    assert gc.get_freeze_count() == 0
    collector = BacklogCollector(FreezePolicy(step=10))
    try:
        collector.on_submitted(10)
        assert collector.frozen and gc.get_freeze_count() > 0
        collector.on_finished(2)
        assert not collector.frozen and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_the_backlog_collector_leaves_a_program_that_freezes_itself_alone():
    gc.freeze()
    try:
        collector = BacklogCollector(FreezePolicy(step=10))
        count = gc.get_freeze_count()
        collector.on_submitted(10)
        collector.on_submitted(1000)
        # frozen objects may still be freed meanwhile (another thread), so the
        # count can fall; a freeze by the collector would raise it
        assert not collector.frozen and gc.get_freeze_count() <= count
    finally:
        gc.unfreeze()


def test_a_table_emptied_by_many_deletions_gives_its_room_back():
    from nbray.worker.memory_store import shrunk

    table = {i: i for i in range(100_000)}
    for i in range(99_990):
        del table[i]
    small = shrunk(table)
    assert small == table and small is not table
    assert sys.getsizeof(small) < sys.getsizeof(table) / 10
    assert shrunk(small) is small  # nothing to give back
