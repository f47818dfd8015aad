"""Pure logic of the notebook integration: no kernel, no cluster."""

from __future__ import annotations

import base64
import time

import pytest
from IPython.core.error import UsageError

from nbray.jupyter import display_wire
from nbray.jupyter.magic_options import parse_bytes, parse_names, parse_remote_args, parse_resources, remote_parser
from nbray.jupyter.output import CellOutputRouter, line_prefix, make_tag
from nbray.jupyter.remote_cell import (
    CellRequest,
    ModuleRef,
    Pickled,
    RemoteCellSession,
    pack_value,
    run_in_namespace,
    unpack_value,
)
from nbray.jupyter.remote_display import mime_bundle
from nbray.jupyter.settings import NotebookSettings
from nbray.protocol import gcs_pb2
from nbray.widgets import graph_model

pytestmark = pytest.mark.timeout(30)


# ---- the wire protocol -------------------------------------------------------------------------------


def test_wire_roundtrip_with_chunks_and_plain_text_around() -> None:
    payload = {"data": {"image/png": "A" * (3 * display_wire.CHUNK_CHARS + 5)}, "metadata": {}}
    lines = display_wire.encode("display", payload)
    assert len(lines) == 4 and all(len(line) < 64 * 1024 for line in lines)
    asm = display_wire.Assembler()
    # the log router may deliver the chunks in separate batches
    first = asm.feed("w1", "before\n" + "".join(lines[:2]))
    second = asm.feed("w1", "".join(lines[2:]) + "after\n")
    assert first == ["before\n"]
    assert second[0] == display_wire.Message("display", payload)
    assert second[1:] == ["after\n"]


def test_wire_keeps_streams_apart_and_drops_broken_messages() -> None:
    a = display_wire.encode("end", {"run": "a" * 40000})
    b = display_wire.encode("end", {"run": "b"})
    asm = display_wire.Assembler()
    assert asm.feed("s1", a[0]) == []
    assert asm.feed("s2", b[0]) == [display_wire.Message("end", {"run": "b"})]
    assert asm.feed("s1", a[2]) == []  # chunk 1 lost: the message is dropped, not garbled
    assert asm.feed("x", display_wire.MARKER + "bogus\n") == []


def test_text_without_markers_is_untouched() -> None:
    asm = display_wire.Assembler()
    assert asm.feed("s", "no newline at end") == ["no newline at end"]
    assert asm.feed("s", "a\nb\n") == ["a\nb\n"]


# ---- MIME bundles made on workers --------------------------------------------------------------------------


def test_mime_bundle_of_repr_methods() -> None:
    class Rich:
        def _repr_html_(self) -> str:
            return "<i>x</i>"

        def _repr_png_(self) -> bytes:
            return b"\x89PNG..."

        def __repr__(self) -> str:
            return "Rich()"

    data, _ = mime_bundle(Rich())
    assert data["text/html"] == "<i>x</i>"
    assert base64.b64decode(data["image/png"]) == b"\x89PNG..."
    assert data["text/plain"] == "Rich()"


def test_mime_bundle_of_matplotlib_figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([1, 2])
    data, _ = mime_bundle(fig)
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")


# ---- running a cell (the worker side, called directly) -----------------------------------------------------


def test_run_in_namespace_value_pulls_and_traceback() -> None:
    ns: dict = {}
    req = CellRequest(code="y = x * 2\nimport math\ny + 1", label="In[3]", run_id="r1", header_line="%%remote",
                      pushed={"x": 4}, pull=("y", "math"), last_expression=True)
    value, reply = run_in_namespace(req, ns)
    assert value == 9
    assert unpack_value(reply.pulled["y"]) == 8
    assert reply.pulled["math"] == ModuleRef("math")
    assert reply.streams_written == (False, False)

    bad = CellRequest(code="a = 1\n\nraise KeyError('k')", label="In[4]", run_id="r2", header_line="%%remote",
                      last_expression=False)
    with pytest.raises(KeyError) as info:
        run_in_namespace(bad, {})
    text = info.value._nbray_remote_traceback  # type: ignore[attr-defined]
    assert "Cell In[4], line 4" in text and "----> 4   raise KeyError('k')" in text
    assert "remote_cell.py" not in text


def test_unpicklable_pull_is_reported_not_fatal() -> None:
    import threading

    req = CellRequest(code="lock = threading.Lock()\nok = 1", label="In[5]", run_id="r3",
                      pushed={"threading": threading}, pull=("lock", "ok"))
    _, reply = run_in_namespace(req, {})
    assert "lock" in reply.pull_errors and unpack_value(reply.pulled["ok"]) == 1


def test_running_a_cell_outside_a_worker_does_not_connect() -> None:
    import nbray

    _, reply = run_in_namespace(CellRequest(code="1", label="In[6]", run_id="r4"), {})
    assert reply.node_id == ""
    assert not nbray.is_initialized()  # no local cluster was started implicitly


def test_pack_value_kinds() -> None:
    assert pack_value(3) == 3
    assert isinstance(pack_value({"a": [1]}), Pickled)
    assert unpack_value(pack_value({"a": [1]})) == {"a": [1]}


def test_session_namespace_persists() -> None:
    session = RemoteCellSession("s")
    session.run(CellRequest(code="k = 1", label="In[1]", run_id="a"))
    value, _ = session.run(CellRequest(code="k + 1", label="In[2]", run_id="b", last_expression=True))
    assert value == 2 and session.names() == ["k"]


# ---- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [("1000", 1000), ("2GB", 2_000_000_000), ("512MiB", 512 * 2**20),
                                         ("1e3", 1000), ("1.5k", 1500)])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_parse_bytes_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_bytes("two gigs")


def test_parse_resources_and_names() -> None:
    assert parse_resources('{"accel": 2}') == {"accel": 2.0}
    with pytest.raises(ValueError):
        parse_resources("[1]")
    assert parse_names(" a, b ,c") == ["a", "b", "c"]
    with pytest.raises(ValueError):
        parse_names("a, 1b")


def test_remote_args() -> None:
    parser = remote_parser("%%remote")
    opts = parse_remote_args(parser, ["--num-gpus", "1", "--memory", "1GB", "--push", "a,b", "--session", "s"])
    assert opts.resource_options() == {"num_gpus": 1.0, "memory": 1_000_000_000}
    assert opts.push == ("a", "b") and opts.session == "s"
    for bad in (["--all", "--session", "s"], ["--pull", "x", "--no-pull"], ["--async", "1x"], ["--bogus"]):
        with pytest.raises(UsageError):
            parse_remote_args(parser, bad)


def test_settings_from_env() -> None:
    s = NotebookSettings.from_env({"NBRAY_NOTEBOOK_CANCEL_GRACE_S": "0.5", "NBRAY_NOTEBOOK_MAX_TRACKED_CELLS": "7"})
    assert (s.cancel_grace_s, s.max_tracked_cells) == (0.5, 7)
    with pytest.raises(ValueError):
        NotebookSettings.from_env({"NBRAY_NOTEBOOK_MAX_TRACKED_CELLS": "many"})


# ---- routing outside a kernel ------------------------------------------------------------------------------


def test_line_prefixes() -> None:
    assert line_prefix("%%remote", 1, "127.0.0.1") == ""
    assert line_prefix("%%remote@0:abcd", 1, "127.0.0.1") == "[0:abcd] "
    assert line_prefix("f", 12, "127.0.0.1") == "(f pid=12) "
    assert line_prefix("A.m", 12, "10.0.0.2") == "(A.m pid=12, ip=10.0.0.2) "


def test_router_without_kernel_prints_and_tracks_end_markers() -> None:
    router = CellOutputRouter(shell=None)
    written: list[tuple[str, bool]] = []
    router.fallback_write = lambda text, is_err: written.append((text, is_err))
    router.begin_cell("c1", 1)
    router.expect_end("run-1")
    batch = gcs_pb2.LogBatch()
    batch.entries.add(task_name="f", pid=7, context_tag=make_tag("c1", 1), text="hello\n")
    batch.entries.add(task_name="%%remote", pid=8, context_tag=make_tag("c1", 1), is_err=True,
                      text="oops\n" + "".join(display_wire.encode("end", {"run": "run-1", "err": True})))
    router.handle_batch(batch)
    assert written == [("(f pid=7) hello\n", False), ("oops\n", True)]
    assert router.wait_for_end("run-1", (False, True), timeout_s=0)
    assert not router.wait_for_end("run-1", (True, True), timeout_s=0)


# ---- the task graph ------------------------------------------------------------------------------------------


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        fn = ("load", "map", "reduce")[i % 3]
        rows.append({"task_id": f"{i:08x}", "attempt_number": 0, "name": fn, "func_or_class_name": fn,
                     "state": ("FINISHED", "RUNNING", "PENDING_NODE_ASSIGNMENT", "FAILED")[i % 4],
                     "parent_task_id": f"{i // 10:08x}" if i >= 10 else "ff",
                     "arg_object_ids": [f"o{i - 1}"] if i else [], "return_object_ids": [f"o{i}"]})
    return rows


def test_detailed_graph_has_tasks_objects_and_both_edge_kinds() -> None:
    graph = graph_model.build_graph(_rows(12), collapse_above=100)
    g = graph.to_networkx()
    assert not graph.collapsed and graph.num_tasks == 12 and graph.num_objects == 12
    assert g.has_edge("00000000", "o:o0") and g.has_edge("o:o0", "00000001")      # data edges
    assert g.edges["00000001", "0000000a"]["kind"] == "parent"                     # parent edge (10 // 10)
    assert g.nodes["00000001"]["state"] == "RUNNING"
    assert g.nodes["00000002"]["state"] == "PENDING"
    assert all(0 <= n.x <= 1 and 0 <= n.y <= 1 for n in graph.nodes)
    assert graph_model.to_svg(graph).startswith("<svg")


def test_retried_task_shows_its_latest_attempt() -> None:
    rows = [{"task_id": "t", "attempt_number": 0, "name": "f", "state": "FAILED"},
            {"task_id": "t", "attempt_number": 1, "name": "f", "state": "FINISHED"}]
    graph = graph_model.build_graph(rows)
    assert [n.state for n in graph.nodes] == ["FINISHED"]


def test_ten_thousand_tasks_collapse_per_function_quickly() -> None:
    rows = _rows(10_000)
    start = time.perf_counter()
    graph = graph_model.build_graph(rows, collapse_above=300)
    svg = graph_model.to_svg(graph)
    elapsed = time.perf_counter() - start
    assert graph.collapsed and sorted(n.label for n in graph.nodes) == ["load", "map", "reduce"]
    assert sum(sum(n.counts.values()) for n in graph.nodes) == 10_000
    assert len(svg) < 20_000
    assert elapsed < 2.0, elapsed
