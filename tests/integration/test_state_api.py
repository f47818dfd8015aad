"""The state API and its command line."""

import json
import os
import subprocess
import sys

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util import state

pytestmark = pytest.mark.timeout(60)


@nbray.remote
def produce(n):
    return list(range(n))


@nbray.remote
def consume(xs):
    return sum(xs)


def test_list_tasks_has_states_parents_and_data_edges(shared_cluster):
    p = produce.remote(10)
    c = consume.remote(p)
    assert nbray.get(c) == 45

    def rows():
        found = {r["task_id"]: r for r in state.list_tasks(detail=True)}
        pr, cr = found.get(p.task_id().hex()), found.get(c.task_id().hex())
        if pr and cr and pr["state"] == "FINISHED" and cr["state"] == "FINISHED" and cr["worker_pid"]:
            return pr, cr
        return None

    pr, cr = wait_for_condition(rows, timeout=15)
    assert pr["return_object_ids"] == [p.hex()]
    assert cr["arg_object_ids"] == [p.hex()]          # the data edge
    assert cr["name"] == "consume" and cr["type"] == "NORMAL_TASK"
    assert cr["node_id"] == nbray.get_runtime_context().get_node_id()
    states = [e["state"] for e in cr["events"]]
    assert states[0] == "PENDING_ARGS_AVAIL" and "RUNNING" in states and states[-1] == "FINISHED"
    assert cr["start_time_ms"] <= cr["end_time_ms"]


def test_failed_task_row_carries_error_and_traceback(shared_cluster):
    @nbray.remote
    def explode():
        raise ValueError("kaboom")

    ref = explode.remote()
    with pytest.raises(ValueError):
        nbray.get(ref)
    row = wait_for_condition(lambda: [r for r in state.list_tasks(
        filters=[("task_id", "=", ref.task_id().hex()), ("state", "=", "FAILED")], detail=True)
        if r["error_message"]], timeout=15)[0]
    assert row["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "kaboom" in row["error_message"] and "raise ValueError" in row["error_traceback"]


def test_nested_task_parent_edges(shared_cluster):
    @nbray.remote
    def parent():
        return nbray.get(produce.remote(3))

    ref = parent.remote()
    assert nbray.get(ref) == [0, 1, 2]
    parent_id = ref.task_id().hex()
    children = wait_for_condition(lambda: state.list_tasks(filters=[("parent_task_id", "=", parent_id)]),
                                  timeout=15)
    assert children[0]["name"] == "produce"


def test_list_actors_nodes_objects_and_summaries(shared_cluster):
    @nbray.remote
    class Holder:
        def __init__(self):
            self.ref = nbray.put(list(range(100)))

        def ping(self):
            return 1

    h = Holder.options(name="holder").remote()
    nbray.get(h.ping.remote())
    keep = nbray.put(b"x" * 200_000)
    actors = state.list_actors(filters=[("class_name", "=", "Holder")])
    assert actors and actors[0]["state"] == "ALIVE" and actors[0]["name"] == "holder"
    nodes = state.list_nodes()
    assert len(nodes) == 1 and nodes[0]["state"] == "ALIVE" and nodes[0]["is_head_node"]
    objects = state.list_objects(limit=1000)
    mine = [o for o in objects if o["object_id"] == keep.hex()]
    assert mine and mine[0]["object_size"] >= 200_000 and mine[0]["reference_type"] == "LOCAL_REFERENCE"
    summary = state.summarize_tasks()["cluster"]
    assert summary["total_tasks"] >= 1
    assert "Holder" in state.summarize_actors()["cluster"]["summary"]


def test_timeline_writes_chrome_trace(shared_cluster, tmp_path):
    nbray.get([produce.remote(2) for _ in range(3)])
    path = tmp_path / "trace.json"

    def written():
        nbray.timeline(str(path))
        events = json.loads(path.read_text())
        return [e for e in events if e["name"] == "produce"]

    events = wait_for_condition(written, timeout=15)
    assert all(e["ph"] == "X" and e["dur"] > 0 for e in events)


def test_cli_list_and_summary(shared_cluster):
    nbray.get(produce.remote(1))
    env = dict(os.environ, NBRAY_ADDRESS=shared_cluster.address)
    address = shared_cluster.address

    def listed():
        out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "list", "tasks", "--address", address,
                              "--filter", "name=produce", "--format", "json"],
                             capture_output=True, text=True, timeout=30, env=env)
        rows = json.loads(out.stdout) if out.returncode == 0 else []
        return rows if rows and all(r["name"] == "produce" for r in rows) else None

    assert wait_for_condition(listed, timeout=15)
    out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "summary", "tasks", "--address", address],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0 and "produce" in out.stdout


def test_bad_filter_is_a_clear_error(shared_cluster):
    with pytest.raises(Exception, match="filterable keys"):
        state.list_tasks(filters=[("colour", "=", "red")])
