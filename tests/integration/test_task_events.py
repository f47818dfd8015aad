"""Task events end to end: actor creation tasks, reporting latency, paging, facts-only publications."""

import os
import threading
import time

import pytest

import nbray
from nbray.protocol import gcs_pb2
from nbray.testing import wait_for_condition
from nbray.util import state

pytestmark = pytest.mark.timeout(90)


def creation_rows(actor):
    return state.list_tasks(filters=[("actor_id", "=", actor._actor_id.hex()), ("type", "=", "ACTOR_CREATION_TASK")],
                            detail=True)


def settled_creation(actor, final_state):
    def check():
        rows = creation_rows(actor)
        row = max(rows, key=lambda r: r["attempt_number"]) if rows else None
        if row and row["state"] == final_state and row["worker_pid"] and row["name"]:
            return row
        return None
    return check


def states(row):
    return [e["state"] for e in row["events"]]


def test_actor_creation_task_runs_on_the_actors_worker_and_finishes(shared_cluster):
    @nbray.remote
    class Holder:
        def pid(self):
            return os.getpid()

    holder = Holder.remote()
    pid = nbray.get(holder.pid.remote())
    row = wait_for_condition(settled_creation(holder, "FINISHED"), timeout=15)
    assert row["name"] == "Holder.__init__" and row["type"] == "ACTOR_CREATION_TASK"
    assert row["worker_pid"] == pid
    assert row["node_id"] == nbray.get_runtime_context().get_node_id()
    assert states(row)[0] == "PENDING_ARGS_AVAIL" and states(row)[-2:] == ["RUNNING", "FINISHED"]
    assert row["start_time_ms"] <= row["end_time_ms"] and row["error_type"] is None


def test_creation_task_fails_with_the_traceback_of_init(shared_cluster):
    @nbray.remote
    class Broken:
        def __init__(self):
            raise ValueError("init kaboom")

        def ping(self):
            return 1

    broken = Broken.remote()
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(broken.ping.remote(), timeout=30)
    row = wait_for_condition(settled_creation(broken, "FAILED"), timeout=15)
    assert row["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "init kaboom" in row["error_message"] and "raise ValueError" in row["error_traceback"]
    assert "RUNNING" in states(row) and row["node_id"]


def test_creation_task_fails_when_the_actor_cannot_be_created(shared_cluster):
    @nbray.remote
    class Never:
        def ping(self):
            return 1

    pending = Never.options(resources={"no_such_resource": 1}).remote()
    row = wait_for_condition(lambda: creation_rows(pending), timeout=15)[0]
    assert row["state"] == "PENDING_ARGS_AVAIL"
    nbray.kill(pending)
    row = wait_for_condition(lambda: [r for r in creation_rows(pending) if r["state"] == "FAILED"],
                             timeout=15)[0]
    details = state.get_task(row["task_id"])
    assert details["error_type"] == "ACTOR_DIED" and "kill" in details["error_message"]
    assert "RUNNING" not in states(details)


def test_creation_task_fails_when_the_worker_dies_in_init(shared_cluster):
    @nbray.remote
    class Crash:
        def __init__(self):
            os._exit(1)

        def ping(self):
            return 1

    crash = Crash.remote()
    with pytest.raises(nbray.exceptions.RayActorError):
        nbray.get(crash.ping.remote(), timeout=30)
    row = wait_for_condition(settled_creation(crash, "FAILED"), timeout=15)
    assert row["error_type"] == "ACTOR_DIED" and "died" in row["error_message"]
    assert states(row)[-2:] == ["RUNNING", "FAILED"]  # the worker said where it ran before dying


@nbray.remote
def quick(i):
    return i


def test_a_finished_task_is_listed_within_a_second(shared_cluster):
    nbray.get([quick.remote(i) for i in range(10)])  # warm: leases and workers exist
    for i in range(3):
        ref = quick.remote(i)
        assert nbray.get(ref) == i
        returned = time.monotonic()
        task_id = ref.task_id().hex()

        def listed(task_id=task_id):
            rows = state.list_tasks(filters=[("task_id", "=", task_id)])
            return rows and rows[0]["state"] == "FINISHED" and rows[0]["node_id"] and rows[0]["worker_pid"]

        wait_for_condition(listed, timeout=1.0, retry_interval_ms=10)
        assert time.monotonic() - returned < 1.0


def test_a_report_that_only_adds_facts_is_published(shared_cluster):
    from nbray.object_ref import _core

    core = _core[0]
    seen = []
    lock = threading.Lock()

    def on_task(msg):
        with lock:
            seen.extend(msg.task_changes.changes)

    core.gcs.subscribe(gcs_pb2.TASK, b"", on_task, wait=True)
    try:
        task_id = os.urandom(24)
        first = gcs_pb2.AddTaskEventsRequest()
        rec = first.events.add(task_id=task_id)
        rec.states.append(gcs_pb2.FINISHED)
        rec.state_ts_ns.append(time.time_ns())
        core.gcs.send("AddTaskEvents", first)
        late = gcs_pb2.AddTaskEventsRequest()
        late.events.add(task_id=task_id, node_id=os.urandom(28), worker_pid=4242)
        core.gcs.send("AddTaskEvents", late)

        def published():
            with lock:
                mine = [(c.state, c.facts_only) for c in seen if c.task_id == task_id]
            return mine if len(mine) == 2 else None

        assert wait_for_condition(published, timeout=10) == [(gcs_pb2.FINISHED, False), (gcs_pb2.FINISHED, True)]
    finally:
        core.gcs.unsubscribe(gcs_pb2.TASK, b"", on_task)
