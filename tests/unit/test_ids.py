"""Task ids stay unique across forked workers and user seeding."""

import os
import random

import pytest

from nbray.common import ids

pytestmark = pytest.mark.timeout(30)

ACTOR = ids.nil_actor_id(b"\x00\x00\x00\x01")


def test_a_forked_child_draws_different_task_ids_than_its_parent():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first ids and leave at once
        os.write(w, b"".join(ids.new_task_id(ACTOR) for _ in range(4)))
        os._exit(0)
    os.close(w)
    child = os.read(r, 4 * ids.TASK_ID_SIZE)
    os.close(r)
    os.waitpid(pid, 0)
    parent = b"".join(ids.new_task_id(ACTOR) for _ in range(4))
    assert len(child) == len(parent) == 4 * ids.TASK_ID_SIZE
    child_ids = {child[i:i + ids.TASK_ID_SIZE] for i in range(0, len(child), ids.TASK_ID_SIZE)}
    parent_ids = {parent[i:i + ids.TASK_ID_SIZE] for i in range(0, len(parent), ids.TASK_ID_SIZE)}
    assert not child_ids & parent_ids


def test_seeding_the_random_module_does_not_repeat_task_ids():
    random.seed(7)
    first = ids.new_task_id(ACTOR)
    random.seed(7)
    assert ids.new_task_id(ACTOR) != first
    assert first.endswith(ACTOR) and len(first) == ids.TASK_ID_SIZE
