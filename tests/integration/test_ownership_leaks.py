"""Borrower registrations that nothing would ever undo (found by the
ownership stress run): the owner must free its object once every ref is
dropped, even when a task carrying the ref was pushed to a worker that had
already died, or was handed back by a live worker without running."""

import os
import signal

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.worker import context

pytestmark = pytest.mark.timeout(120)

GET_BOUND_S = 30.0
# One CPU: a single leased worker, kept between the steps of a test.
ONE_KEPT_WORKER = {"num_cpus": 1, "_system_config": {"idle_lease_return_ms": 60_000}}


@nbray.remote
def whoami():
    return nbray.get_runtime_context().get_worker_id(), os.getpid()


@nbray.remote
def read_boxed(box):
    """The value of the ref nested in `box`, and this run's attempt number."""
    return nbray.get(box[0], timeout=GET_BOUND_S), context.current().attempt


@nbray.remote
def busy(duration_s):
    # Long enough for the worker to hand back what is queued behind it.
    deadline = os.times().elapsed + duration_s
    while os.times().elapsed < deadline:
        pass
    return duration_s


def _driver():
    from nbray.object_ref import _core

    core = _core[0]
    assert core is not None
    return core


def _borrowers(object_id):
    core = _driver()
    with core.lock:
        ref = core.refs.get(object_id)
        return None if ref is None else dict(ref.borrowers or {})


def _await_freed(object_id):
    wait_for_condition(lambda: _borrowers(object_id) is None, timeout=GET_BOUND_S,
                       message=f"the driver still holds {object_id.hex()}: borrowers {_borrowers(object_id)}")


@pytest.mark.parametrize("ray_start", [ONE_KEPT_WORKER], indirect=True)
def test_push_to_a_worker_known_dead_does_not_pin_the_object(ray_start):
    worker_id, pid = nbray.get(whoami.remote(), timeout=GET_BOUND_S)
    os.kill(pid, signal.SIGKILL)
    core = _driver()
    dead = bytes.fromhex(worker_id)

    def death_handled():
        with core.lock:
            return dead in core.refs._dead_borrowers

    wait_for_condition(death_handled, timeout=GET_BOUND_S)
    x = nbray.put("value")
    object_id = x.binary()
    # The driver still caches the dead worker's lease: the push fails there
    # and the task runs again on a new worker.
    value, attempt = nbray.get(read_boxed.remote([x]), timeout=GET_BOUND_S)
    assert value == "value"
    assert attempt >= 1, "the task never went to the dead worker: the race was not exercised"
    del x
    _await_freed(object_id)


@pytest.mark.parametrize("ray_start", [ONE_KEPT_WORKER], indirect=True)
def test_task_handed_back_unrun_does_not_pin_the_object(ray_start):
    core = _driver()
    requeued = []
    on_pushed = core.normal_submitter._on_pushed

    def recording(cq, lw, task, reply, error):
        if error is None and reply.requeued and task.spec.nested_refs:
            requeued.append(task.task_id)
        return on_pushed(cq, lw, task, reply, error)

    core.normal_submitter._on_pushed = recording
    try:
        for attempt in range(5):
            # short tasks first: the submitter then pipelines behind a slow one
            nbray.get([whoami.remote() for _ in range(4)], timeout=GET_BOUND_S)
            x = nbray.put(f"value {attempt}")
            object_id = x.binary()
            slow = busy.remote(0.5)
            out = read_boxed.remote([x])
            assert nbray.get(out, timeout=GET_BOUND_S)[0] == f"value {attempt}"
            assert nbray.get(slow, timeout=GET_BOUND_S) == 0.5
            del x, out
            _await_freed(object_id)
            if requeued:
                break
        assert requeued, "no task was handed back: the race was not exercised"
    finally:
        core.normal_submitter._on_pushed = on_pushed
