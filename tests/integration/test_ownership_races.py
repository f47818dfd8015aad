"""Ownership races that used to hang: borrowers asking for objects still
being computed, and the death of an actor that created other actors."""

import os
import random
import signal

import pytest

import nbray
from nbray.exceptions import ActorDiedError, RayActorError
from nbray.node.launcher import process_running
from nbray.testing import wait_for_condition

pytestmark = pytest.mark.timeout(180)

# A get that would hang fails with GetTimeoutError well before the test's timeout.
GET_BOUND_S = 30.0


@nbray.remote
def instant(tag):
    return tag


@nbray.remote
def gather(refs):
    return nbray.get(refs, timeout=GET_BOUND_S)


@nbray.remote
def gather_nested(box):
    return [nbray.get(r, timeout=GET_BOUND_S) for r in box["refs"]]


def test_borrower_gets_a_list_of_refs_still_being_computed(shared_cluster):
    # The refs reach the borrower while their tasks may run, finish or
    # have their replies in flight; whichever comes first, get returns.
    rng = random.Random(20240611)
    for round_ in range(200):
        n = rng.choice((2, 3, 3))
        tags = [round_ * 10 + i for i in range(n)]
        refs = [instant.remote(t) for t in tags]
        if rng.random() < 0.75:
            out = gather.remote(refs)
        else:
            out = gather_nested.remote({"refs": refs})
        if rng.random() < 0.5:
            del refs  # only the borrowing task keeps the objects alive now
        assert nbray.get(out, timeout=GET_BOUND_S) == tags, f"round {round_}"


@nbray.remote(max_restarts=0)
class Node:
    def pid(self):
        return os.getpid()

    def ping(self, x):
        return x

    def spawn(self, detached_name, wait_until_up):
        detached = Node.options(name=detached_name, lifetime="detached").remote()
        child = Node.remote()
        if wait_until_up:
            nbray.get([detached.pid.remote(), child.pid.remote()], timeout=GET_BOUND_S)
        self.kin = [detached, child]
        return child


def _actor_error(handle):
    try:
        nbray.get(handle.pid.remote(), timeout=GET_BOUND_S)
    except RayActorError as exc:
        return exc
    return None


@pytest.mark.parametrize("kin_up", [True, False], ids=["kin-running", "kin-being-created"])
def test_sigkilled_creator_leaves_its_detached_actor_serving_and_kills_its_child(shared_cluster, kin_up):
    name = f"survivor-of-its-creator-{kin_up}"
    parent = Node.remote()
    parent_pid = nbray.get(parent.pid.remote(), timeout=GET_BOUND_S)
    child = nbray.get(parent.spawn.remote(name, kin_up), timeout=GET_BOUND_S)
    os.kill(parent_pid, signal.SIGKILL)
    try:
        wait_for_condition(lambda: _actor_error(parent), timeout=GET_BOUND_S,
                           message="calls to the killed parent fail")
        # the detached actor has no owner: it keeps serving, by name
        survivor = nbray.get_actor(name)
        detached_pid = nbray.get(survivor.pid.remote(), timeout=GET_BOUND_S)
        assert detached_pid != parent_pid
        assert nbray.get([survivor.ping.remote(i) for i in range(20)], timeout=GET_BOUND_S) == list(range(20))
        # the child fate-shares with its owner, and says so
        error = wait_for_condition(lambda: _actor_error(child), timeout=GET_BOUND_S,
                                   message="the child dies with its owner")
        assert isinstance(error, ActorDiedError)
        assert "owner" in str(error) and "died" in str(error), str(error)
        assert "nbray.kill" not in str(error), str(error)
        # and the survivor still answers after its sibling's death
        assert nbray.get(nbray.get_actor(name).ping.remote("still"), timeout=GET_BOUND_S) == "still"
    finally:
        try:
            nbray.kill(nbray.get_actor(name))
        except ValueError:
            pass
    wait_for_condition(lambda: not process_running(detached_pid), timeout=GET_BOUND_S,
                       message="the detached actor exits once killed")
