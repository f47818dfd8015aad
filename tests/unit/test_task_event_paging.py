"""The GCS's task-event store: paging, following changes, facts-only changes, actor creation ends."""

import pytest

from nbray.gcs.task_events import ActorCreationEvents, TaskEventStore
from nbray.protocol import common_pb2, gcs_pb2
from tests.unit.task_records import record

pytestmark = pytest.mark.timeout(30)


def tid(i):
    return i.to_bytes(4, "big") * 6


def fill(store, n):
    for i in range(n):
        store.add([record(tid(i), states=[(gcs_pb2.FINISHED, i + 1)])], now_ns=i + 1)


def read_all(store, limit, **kw):
    rows, cursor, pages = [], 0, 0
    while True:
        reply = store.query([], limit, cursor=cursor, **kw)
        rows += reply.tasks
        pages += 1
        if not reply.next_cursor:
            return rows, pages
        cursor = reply.next_cursor


def test_a_reader_pages_through_every_row_past_the_limit():
    store = TaskEventStore(100_000)
    fill(store, 25_000)
    rows, pages = read_all(store, 10_000)
    assert pages == 3
    assert [r.task_id for r in rows] == [tid(i) for i in range(25_000)]


def test_newest_first_gives_the_newest_rows_under_a_limit_and_pages_backwards():
    store = TaskEventStore(100)
    fill(store, 25)
    reply = store.query([], 10, newest_first=True)
    assert [r.task_id for r in reply.tasks] == [tid(i) for i in range(24, 14, -1)]
    assert reply.num_truncated == 15
    rows, pages = read_all(store, 10, newest_first=True)
    assert pages == 3 and [r.task_id for r in rows] == [tid(i) for i in range(24, -1, -1)]


def test_paging_is_stable_while_rows_change_and_arrive():
    store = TaskEventStore(100)
    fill(store, 20)
    first = store.query([], 10)
    # meanwhile: a listed row changes and new rows arrive
    store.add([record(tid(0), worker_pid=7)])
    store.add([record(tid(99), states=[(gcs_pb2.RUNNING, 50)])])
    second = store.query([], 10, cursor=first.next_cursor)
    third = store.query([], 10, cursor=second.next_cursor)
    ids = [r.task_id for r in list(first.tasks) + list(second.tasks) + list(third.tasks)]
    assert ids == [tid(i) for i in range(20)] + [tid(99)] and not third.next_cursor
    # a follower starting from the first page's last_change sees what changed meanwhile
    changed = store.query([], 10, changed_after=first.last_change)
    assert [r.task_id for r in changed.tasks] == [tid(0), tid(99)]
    assert changed.tasks[0].worker_pid == 7


def test_filters_apply_to_pages():
    store = TaskEventStore(100)
    for i in range(30):
        info = gcs_pb2.TaskInfo(name="even" if i % 2 == 0 else "odd")
        store.add([record(tid(i), states=[(gcs_pb2.FINISHED, i)], info=info)])
    even = [gcs_pb2.StateFilter(key="name", op="=", value="even")]
    first = store.query(even, 10)
    assert first.num_truncated == 5 and len(first.tasks) == 10
    second = store.query(even, 10, cursor=first.next_cursor)
    assert len(second.tasks) == 5 and not second.next_cursor
    assert {r.info.name for r in list(first.tasks) + list(second.tasks)} == {"even"}


def test_a_follower_of_changes_pages_and_misses_nothing():
    store = TaskEventStore(1000)
    fill(store, 5)
    cursor = store.query([], 100).last_change
    for i in range(5, 30):
        store.add([record(tid(i), states=[(gcs_pb2.RUNNING, i)])])
    store.add([record(tid(2), worker_pid=9)])  # an old row changes again
    seen = []
    while True:
        reply = store.query([], 7, changed_after=cursor)
        seen += [r.task_id for r in reply.tasks]
        cursor = reply.last_change
        if not reply.num_truncated:
            break
    assert seen == [tid(i) for i in range(5, 30)] + [tid(2)]
    assert store.query([], 7, changed_after=cursor).tasks == []


def test_a_report_that_adds_facts_without_a_new_state_is_a_change():
    store = TaskEventStore(100)
    info = gcs_pb2.TaskInfo(name="f", job_id=b"\0\0\0\1")
    changes = store.add([record(tid(1), states=[(gcs_pb2.PENDING_ARGS_AVAIL, 1), (gcs_pb2.FINISHED, 3)],
                                info=info)])
    assert [(c.state, c.facts_only) for c in changes] == [(gcs_pb2.FINISHED, False)]
    # the executor's report arrives after the owner's final one
    changes = store.add([record(tid(1), states=[(gcs_pb2.RUNNING, 2)], node_id=b"n" * 28, worker_pid=42)])
    assert len(changes) == 1 and changes[0].facts_only and changes[0].state == gcs_pb2.FINISHED
    assert changes[0].change > 0 and changes[0].job_id == b"\0\0\0\1"
    assert store.get(tid(1), 0).worker_pid == 42
    # the same report again changes nothing
    assert store.add([record(tid(1), node_id=b"n" * 28, worker_pid=42)]) == []


def test_the_executors_error_with_traceback_wins_over_summaries_in_any_order():
    for order in ((0, 1), (1, 0)):
        store = TaskEventStore(10)
        summary = record(tid(1), states=[(gcs_pb2.FAILED, 5)],
                         error=common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED, message="actor died"))
        executor = record(tid(1), states=[(gcs_pb2.FAILED, 4)],
                          error=common_pb2.ErrorInfo(type=common_pb2.TASK_EXECUTION_EXCEPTION,
                                                     message="ValueError: boom"),
                          error_traceback="Traceback ... ValueError: boom")
        reports = (summary, executor)
        for i in order:
            store.add([reports[i]])
        att = store.get(tid(1), 0)
        assert att.error_type == common_pb2.TASK_EXECUTION_EXCEPTION and att.error_message == "ValueError: boom"
        assert att.states.count(gcs_pb2.FAILED) == 1  # the same end is kept once


def actor(state, restarts=0, cause=None, preempted=False):
    info = gcs_pb2.ActorInfo(actor_id=b"a" * 16, state=state, num_restarts=restarts, max_restarts=1,
                             preempted=preempted)
    if cause is not None:
        info.death_cause.CopyFrom(cause)
    return info


A = gcs_pb2.ActorInfo
CREATION = b"c" * 24


def test_actor_killed_before_creation_fails_its_creation_task():
    store = TaskEventStore(100)
    events = ActorCreationEvents(store)
    store.add([record(CREATION, states=[(gcs_pb2.PENDING_ARGS_AVAIL, 1)],
                      info=gcs_pb2.TaskInfo(type=common_pb2.ACTOR_CREATION_TASK, name="A.__init__"))])
    assert events.on_actor(CREATION, actor(A.PENDING_CREATION), now_ns=2) == []
    cause = common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED, message="the actor was killed with nbray.kill()")
    changes = events.on_actor(CREATION, actor(A.DEAD, cause=cause), now_ns=3)
    assert [c.state for c in changes] == [gcs_pb2.FAILED]
    att = store.get(CREATION, 0)
    assert att.error_type == common_pb2.ACTOR_DIED and "killed" in att.error_message


def test_actor_that_was_created_keeps_finished_and_gets_it_if_the_worker_could_not_say():
    store = TaskEventStore(100)
    events = ActorCreationEvents(store)
    events.on_actor(CREATION, actor(A.ALIVE), now_ns=10)
    # the worker died right after __init__, before it reported: the GCS records the end
    changes = events.on_actor(CREATION, actor(A.RESTARTING, restarts=1), now_ns=20)
    assert store.get(CREATION, 0).state == gcs_pb2.FINISHED
    assert store.get(CREATION, 0).ts == [10]
    assert store.get(CREATION, 1).state == gcs_pb2.PENDING_NODE_ASSIGNMENT
    assert {(c.attempt_number, c.state) for c in changes} == {(0, gcs_pb2.FINISHED),
                                                              (1, gcs_pb2.PENDING_NODE_ASSIGNMENT)}
    # attempt 1's worker died during __init__; then the actor is out of restarts
    events.on_actor(CREATION, actor(A.DEAD, restarts=1, cause=common_pb2.ErrorInfo(
        type=common_pb2.ACTOR_DIED, message="the actor's worker died")), now_ns=30)
    assert store.get(CREATION, 1).state == gcs_pb2.FAILED
    assert store.get(CREATION, 0).state == gcs_pb2.FINISHED


def test_restart_during_creation_fails_that_attempt_and_copies_the_facts():
    store = TaskEventStore(100)
    events = ActorCreationEvents(store)
    info = gcs_pb2.TaskInfo(type=common_pb2.ACTOR_CREATION_TASK, name="A.__init__")
    store.add([record(CREATION, states=[(gcs_pb2.PENDING_ARGS_AVAIL, 1)], info=info)])
    store.add([record(CREATION, states=[(gcs_pb2.RUNNING, 2)], worker_pid=5)])
    events.on_actor(CREATION, actor(A.RESTARTING, restarts=1, preempted=True), now_ns=3)
    first = store.get(CREATION, 0)
    assert first.state == gcs_pb2.FAILED and first.error_type == common_pb2.NODE_DIED
    assert store.get(CREATION, 1).info.name == "A.__init__"


def test_a_follower_that_started_on_an_empty_store_gets_every_row():
    store = TaskEventStore(1000)
    cursor = store.query([], 10).last_change
    assert cursor == 0
    fill(store, 25)
    seen = []
    while True:
        reply = store.query([], 10, changed_after=cursor)
        seen += [r.task_id for r in reply.tasks]
        cursor = reply.last_change
        if not reply.num_truncated:
            break
    assert seen == [tid(i) for i in range(25)]


def test_later_attempts_get_the_static_facts_in_either_order():
    store = TaskEventStore(100)
    info = gcs_pb2.TaskInfo(name="retried", job_id=b"\0\0\0\1")
    # retries reported before the owner's first report with the facts
    store.add([record(tid(1), 1, states=[(gcs_pb2.RUNNING, 2)]), record(tid(1), 2, states=[(gcs_pb2.RUNNING, 3)])])
    changes = store.add([record(tid(1), 0, states=[(gcs_pb2.PENDING_ARGS_AVAIL, 1)], info=info)])
    assert {c.attempt_number for c in changes} == {0, 1, 2}
    assert [store.get(tid(1), a).info.name for a in range(3)] == ["retried"] * 3
    # an attempt reported afterwards takes them from the one before
    store.add([record(tid(1), 3, states=[(gcs_pb2.RUNNING, 4)])])
    assert store.get(tid(1), 3).info.name == "retried"
    named = store.query([gcs_pb2.StateFilter(key="name", op="=", value="retried")], 10)
    assert [r.attempt_number for r in named.tasks] == [1, 2, 0, 3]


def test_the_gcs_fills_in_the_worker_of_a_created_actor_that_could_not_report():
    store = TaskEventStore(100)
    events = ActorCreationEvents(store)
    alive = actor(A.ALIVE)
    alive.node_id, alive.pid = b"n" * 28, 77
    alive.address.worker_id = b"w" * 28
    events.on_actor(CREATION, alive, now_ns=10)
    events.on_actor(CREATION, actor(A.DEAD, cause=common_pb2.ErrorInfo(message="killed")), now_ns=20)
    att = store.get(CREATION, 0)
    assert (att.state, att.node_id, att.worker_pid, att.error_type) == (gcs_pb2.FINISHED, b"n" * 28, 77, 0)
