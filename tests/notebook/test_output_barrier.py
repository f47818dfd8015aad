"""The end-of-cell log barrier: skipped when nothing can be in flight, never
at the cost of output arriving after its cell ended.

Pure decisions (``log_barrier``, ``dispatch.markers_cover``), the remote half
(``run_in_namespace`` with ``mark_end``), and live kernels: output written
past the cell's own ``sys.stdout``/``sys.stderr`` (a logging handler made by
an earlier cell) or by a task the cell submitted still arrives before the
cell's idle status, and trivial cells run no barrier at all once the
driver is settled.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.jupyter import display_wire
from nbray.jupyter.dispatch import markers_cover
from nbray.jupyter.log_barrier import Activity, barrier_needed, settled_by_markers
from nbray.jupyter.remote_cell import CellReply, CellRequest, run_in_namespace
from nbray.testing import Cluster
from tests.notebook.kernels import LiveKernel, connected_kernel, stream_text

A = b"driver-a"


# ---- pure decisions ----------------------------------------------------------------------------------------


def test_barrier_needed_only_after_new_or_running_work() -> None:
    settled = Activity(A, submitted=5, pending=0)
    assert not barrier_needed(settled, Activity(A, 5, 0))  # nothing submitted since
    assert barrier_needed(settled, Activity(A, 6, 0))  # a task came and went since: it may have printed
    assert barrier_needed(settled, Activity(A, 6, 1))
    running = Activity(A, submitted=5, pending=1)  # a task was still running at the last barrier
    assert barrier_needed(running, Activity(A, 5, 0))
    assert barrier_needed(running, Activity(A, 5, 1))


def test_barrier_needed_when_unknown_or_reconnected() -> None:
    assert barrier_needed(None, Activity(A, 0, 0))  # no barrier yet
    assert barrier_needed(Activity(A, 0, 0), None)  # a client: activity unknown
    assert barrier_needed(Activity(A, 3, 0), Activity(b"driver-b", 3, 0))  # a new connection


def test_settled_by_markers_only_for_the_cells_own_runs() -> None:
    settled = Activity(A, 4, 0)
    before = Activity(A, 4, 0)
    assert settled_by_markers(settled, before, Activity(A, 5, 0), own_submissions=1) == Activity(A, 5, 0)
    assert settled_by_markers(settled, before, Activity(A, 7, 0), own_submissions=3) == Activity(A, 7, 0)
    # something else was submitted meanwhile (another thread of the notebook)
    assert settled_by_markers(settled, before, Activity(A, 6, 0), own_submissions=1) is None
    # a task is still in flight
    assert settled_by_markers(settled, before, Activity(A, 5, 1), own_submissions=1) is None
    # a barrier was already due before the cell (work of an earlier cell)
    assert settled_by_markers(Activity(A, 3, 0), before, Activity(A, 5, 0), own_submissions=1) is None
    assert settled_by_markers(Activity(A, 4, 1), before, Activity(A, 5, 0), own_submissions=1) is None
    assert settled_by_markers(None, before, Activity(A, 5, 0), own_submissions=1) is None
    # unknown activity (a client) or a new connection
    assert settled_by_markers(settled, None, Activity(A, 5, 0), own_submissions=1) is None
    assert settled_by_markers(settled, before, None, own_submissions=1) is None
    assert settled_by_markers(settled, before, Activity(b"driver-b", 5, 0), own_submissions=1) is None


def _reply(streams: tuple[bool, bool] = (True, True), tasks: int = 0) -> CellReply:
    return CellReply(run_id="r", pulled={}, pull_errors={}, streams_written=streams, node_id="", pid=1,
                     duration_s=0.0, tasks_submitted=tasks)


def test_markers_cover_needs_every_run_marking_its_end_and_no_task_of_its_own() -> None:
    assert markers_cover([_reply()], 1, mark_end=True)
    assert markers_cover([_reply((False, False))], 1, mark_end=True)  # wrote nothing: no marker needed
    assert markers_cover([_reply(), _reply()], 2, mark_end=True)
    assert not markers_cover([_reply()], 1, mark_end=False)  # markers only for the cell's own streams
    assert not markers_cover([_reply()], 2, mark_end=True)  # a run failed or is unfinished: no reply
    assert not markers_cover([], 0, mark_end=True)
    assert not markers_cover([_reply(tasks=1)], 1, mark_end=True)  # a nested task writes from another process


# ---- the remote half --------------------------------------------------------------------------------------


def _end_markers(text: str) -> list[dict[str, Any]]:
    segments = display_wire.Assembler().feed("s", text)
    return [s.payload for s in segments if isinstance(s, display_wire.Message) and s.kind == "end"]


class _TaskStream(io.StringIO):
    """Stands in for a worker's output stream, which notes the task it last wrote for."""

    def __init__(self) -> None:
        super().__init__()
        self._last = "an earlier task"

    def write(self, s: str) -> int:
        self._last = "this task"
        return super().write(s)


def test_mark_end_marks_a_stream_written_through_a_kept_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _TaskStream(), _TaskStream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    silent = CellRequest(code="1 + 1", label="In[1]", run_id="silent", last_expression=True, mark_end=True)
    value, reply = run_in_namespace(silent, {})
    assert value == 2
    assert reply.streams_written == (False, False)  # nothing written: nothing to wait for
    assert out.getvalue() == err.getvalue() == ""

    # `kept` is the worker's stderr as an earlier cell's logging handler holds it
    kept = CellRequest(code='kept.write("through a kept handle\\n")', label="In[2]", run_id="kept",
                       pushed={"kept": err}, mark_end=True)
    _, reply = run_in_namespace(kept, {})
    assert reply.streams_written == (False, True)
    assert err.getvalue().startswith("through a kept handle\n")
    assert _end_markers(err.getvalue()) == [{"run": "kept", "err": True}]
    assert _end_markers(out.getvalue()) == []


def test_mark_end_marks_both_streams_when_it_cannot_tell(capsys: pytest.CaptureFixture[str]) -> None:
    req = CellRequest(code="1 + 1", label="In[1]", run_id="unknown", last_expression=True, mark_end=True)
    _, reply = run_in_namespace(req, {})
    assert reply.streams_written == (True, True)  # these streams do not say what they wrote for
    captured = capsys.readouterr()
    assert _end_markers(captured.out) == [{"run": "unknown", "err": False}]
    assert _end_markers(captured.err) == [{"run": "unknown", "err": True}]

    _, plain = run_in_namespace(CellRequest(code="1", label="In[2]", run_id="plain"), {})
    assert plain.streams_written == (False, False)  # without mark_end only the cell's own writes count
    assert capsys.readouterr().out == ""


def test_reply_counts_the_tasks_a_cell_submits() -> None:
    from nbray import object_ref

    class FakeCore:
        tasks_submitted = 10

    core = FakeCore()
    saved = object_ref._core[0]
    object_ref._core[0] = core
    try:
        _, reply = run_in_namespace(CellRequest(code="core.tasks_submitted += 2", label="In[3]", run_id="n",
                                                pushed={"core": core}), {})
        _, idle = run_in_namespace(CellRequest(code="x = 1", label="In[4]", run_id="m"), {})
    finally:
        object_ref._core[0] = saved
    assert reply.tasks_submitted == 2
    assert idle.tasks_submitted == 0


# ---- live kernels --------------------------------------------------------------------------------------------


@pytest.fixture
def kernel(single_node_address: str) -> Iterator[LiveKernel]:
    with connected_kernel(single_node_address) as k:
        yield k


@pytest.mark.timeout(120)
def test_output_through_an_earlier_cells_stream_arrives_before_the_cell_ends(kernel: LiveKernel) -> None:
    # the handler keeps the first cell's sys.stderr: later cells write through it, not their own
    reply, _ = kernel.run("""%%remote --session logs
import logging, sys
logger = logging.getLogger("barrier-test")
logger.addHandler(logging.StreamHandler(sys.stderr))
logger.propagate = False""")
    assert reply["status"] == "ok", reply
    for i in range(3):  # much output: it takes a while to arrive, the reply does not wait for it
        reply, messages = kernel.run(f"""%%remote --session logs
for j in range(3000):
    logger.warning("filler line %d of a long log", j)
logger.warning("logged by cell {i}")""")
        assert reply["status"] == "ok", reply
        assert stream_text(messages, "stderr").endswith(f"logged by cell {i}\n")


@pytest.mark.timeout(120)
def test_nested_task_output_arrives_before_the_cell_ends(kernel: LiveKernel) -> None:
    for i in range(3):
        reply, messages = kernel.run(f"""%%remote
import nbray

@nbray.remote
def child():
    print("\\n".join(f"filler line {{j}} of a long output" for j in range(20000)))
    print("nested {i} printed this")

nbray.get(child.remote())""")
        assert reply["status"] == "ok", reply
        assert stream_text(messages).endswith(f"nested {i} printed this\n")


@pytest.mark.timeout(120)
def test_local_task_output_after_a_settled_remote_cell(kernel: LiveKernel) -> None:
    assert kernel.run("%%remote\n1 + 1")[0]["status"] == "ok"
    reply, messages = kernel.run("""@nbray.remote
def local_task():
    print("printed by a task of a local cell")

nbray.get(local_task.remote())""")
    assert reply["status"] == "ok", reply
    assert "printed by a task of a local cell" in stream_text(messages)


@pytest.fixture
def driver_kernel(single_node_cluster: Cluster) -> Iterator[LiveKernel]:
    with connected_kernel(single_node_cluster.address) as k:
        yield k


@pytest.mark.timeout(120)
def test_trivial_cells_run_no_barrier_once_settled(driver_kernel: LiveKernel) -> None:
    reply, _ = driver_kernel.run("""from nbray import driver_hooks
barriers = []
_flush = driver_hooks.flush_logs
def counting_flush(timeout_s):
    barriers.append(timeout_s)
    return _flush(timeout_s)
driver_hooks.flush_logs = counting_flush""")
    assert reply["status"] == "ok", reply
    assert driver_kernel.run("%%remote\nprint('settle')")[0]["status"] == "ok"
    assert driver_kernel.run("barriers.clear()")[0]["status"] == "ok"
    for code in ("%%remote\n1 + 1", "1 + 1", "%%remote\nx = 2", "%%remote\nprint('hello')\nx"):
        reply, _ = driver_kernel.run(code)
        assert reply["status"] == "ok", (code, reply)
    _, messages = driver_kernel.run("len(barriers)")
    results = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
    assert results == ["0"]
    # a cell that submits a task of its own still gets its barrier
    driver_kernel.run("@nbray.remote\ndef f():\n    return 1\nnbray.get(f.remote())")
    _, messages = driver_kernel.run("len(barriers) > 0")
    assert [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"] == ["True"]
