"""%%remote, %remote and %nbray through a real kernel (nbclient), against a real cluster.

One notebook is executed per connection mode; each test asserts on the
cells it is about. Output must be in the right cell, values must come
back, errors must keep their type and the cell's line numbers.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.notebook.kernels import ExecutedNotebook, NamedCell, build_notebook, execute

pytestmark = pytest.mark.timeout(180)

CELLS = [
    NamedCell("connect", "%load_ext nbray\nimport os, nbray\nctx = %nbray init {address}"),
    NamedCell("vars", "n = 7\nfactor = 3\nunused = 'not read by any cell'"),
    NamedCell("basic", """%%remote
import os, sys
print("hello from the cluster")
print("a warning line", file=sys.stderr)
result = [i * factor for i in range(n)]
os.getpid()"""),
    NamedCell("local_pid", "os.getpid()"),
    NamedCell("after_basic", "print(result)"),
    NamedCell("pull_only", "%%remote --pull kept\nkept = n + 1\ndropped = 2"),
    NamedCell("after_pull_only", "print(kept, 'dropped' in globals())"),
    NamedCell("no_pull", "%%remote --no-pull\nnothing_back = 1"),
    NamedCell("after_no_pull", "print('nothing_back' in globals())"),
    NamedCell("figure", """%%remote
import matplotlib.pyplot as plt
plt.plot([1, 3, 2])
plt.title("remote figure");"""),
    NamedCell("rich", """%%remote
import pandas as pd

class Badge:
    def _repr_html_(self):
        return "<b>remote badge</b>"

display(Badge())
frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
frame"""),
    NamedCell("frame_type", "type(frame).__name__, int(frame['b'].sum())"),
    NamedCell("error", """%%remote
x = 1

raise ValueError(f"bad value {x}")""", raises=True),
    NamedCell("syntax", "%%remote\nok = 1\nbroken = (", raises=True),
    NamedCell("catch", """try:
    %remote int("not a number")
except ValueError as exc:
    caught = type(exc).__name__
print("caught", caught)"""),
    NamedCell("line", "%remote sum(range(n))"),
    NamedCell("unpicklable", "import threading\nlock = threading.Lock()\n%remote str(lock)", raises=True),
    NamedCell("push", "hidden_var = 5\n%remote --push hidden_var eval('hidden_var') * 2"),
    NamedCell("node", """head = [node["NodeID"] for node in nbray.nodes() if node["IsHead"]][0]
ran_on = %remote --node head --memory 1MB nbray.get_runtime_context().get_node_id()
print(ran_on == head)"""),
    NamedCell("session_1", """%%remote --session gpu --num-gpus 1
import nbray
gpus = nbray.get_gpu_ids()
counter = 1"""),
    NamedCell("session_holds_gpu", """from nbray.testing import wait_for_condition
wait_for_condition(lambda: nbray.available_resources().get("GPU", 0) == 0, timeout=10)
print("gpu held by the session")"""),
    NamedCell("shadow", "counter = 100  # the session's own counter wins over this one"),
    NamedCell("session_2", "%%remote --session gpu\ncounter += 1\n(counter, gpus)"),
    NamedCell("sessions_list", "%nbray sessions"),
    NamedCell("session_close", "%nbray close gpu\nwait_for_condition(lambda: nbray.available_resources().get('GPU', 0) == 1, timeout=10)\nprint('gpu free')"),
    NamedCell("all_nodes", """%%remote --all
import nbray
print("running on", nbray.get_runtime_context().get_node_id()[:8])"""),
    NamedCell("async_start", "%%remote --async bg\nbg_value = 42\nbg_value * 2"),
    NamedCell("async_wait", "%nbray wait bg\nprint(nbray.get(bg), bg_value)"),
    # pinned to this node: its log flush is the barrier that makes the output complete when
    # the cell ends (output from other nodes arrives later, still under this cell)
    NamedCell("task_output", """from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@nbray.remote(scheduling_strategy=NodeAffinitySchedulingStrategy(nbray.get_runtime_context().get_node_id(), soft=False))
def shout(i):
    print(f"task {i} says hi")
    return i

nbray.get([shout.remote(i) for i in range(3)])"""),
    NamedCell("progress", """import nbray.widgets
summary = nbray.widgets.progress([shout.remote(i) for i in range(5)], description="shouts")
summary"""),
    NamedCell("cluster_view", "view = nbray.widgets.ClusterView(live=False)\nview"),
    NamedCell("task_graph", """graph = nbray.widgets.TaskGraph(live=False)

def shouts_finished():
    graph.refresh()
    return sum(1 for _, d in graph.to_networkx().nodes(data=True)
               if d["label"] == "shout" and d["state"] == "FINISHED") == 8

wait_for_condition(shouts_finished, timeout=15)
graph"""),
    NamedCell("context_widget", """from IPython.display import display
from nbray.jupyter.reprs import context_mimebundle
display(context_mimebundle(ctx), raw=True)"""),
    NamedCell("object_ref", "ref = nbray.put(b'x' * 200_000)\nref"),
    NamedCell("actor", """@nbray.remote
class Box:
    def get(self):
        return 1

box = Box.remote()
nbray.get(box.get.remote())
box"""),
    NamedCell("help", "%remote --help"),
    NamedCell("status", "%nbray status"),
]


@pytest.fixture(scope="module")
def notebook(address: str) -> ExecutedNotebook:
    cells = [NamedCell(c.name, c.source.replace("{address}", address), c.raises) for c in CELLS]
    return ExecutedNotebook(execute(build_notebook(cells), timeout_s=60, address=address))


def test_streams_land_in_the_remote_cell(notebook: ExecutedNotebook) -> None:
    assert notebook.stream("basic") == "hello from the cluster\n"
    assert notebook.stream("basic", "stderr") == "a warning line\n"
    assert notebook.stream("after_basic") == "[0, 3, 6, 9, 12, 15, 18]\n"  # read n, factor; result came back


def test_last_expression_is_the_cell_result(notebook: ExecutedNotebook) -> None:
    remote_pid = int(notebook.result("basic")["text/plain"])
    local_pid = int(notebook.result("local_pid")["text/plain"])
    assert remote_pid != local_pid
    assert notebook.result("line")["text/plain"] == "21"


def test_unpicklable_variable_is_named(notebook: ExecutedNotebook) -> None:
    text = notebook.stream("unpicklable", "stderr")
    assert "UsageError: the cell reads 'lock', which cannot be sent to the cluster" in text


def test_push_and_node_placement(notebook: ExecutedNotebook) -> None:
    assert notebook.result("push")["text/plain"] == "10"  # eval() hides the read: --push sends it
    assert notebook.stream("node") == "True\n"


def test_rich_reprs_of_refs_and_actors(notebook: ExecutedNotebook) -> None:
    ref_html = notebook.result("object_ref")["text/html"]
    assert "ready (shared memory)" in ref_html and "200,0" in ref_html
    assert "this process" in ref_html or "this notebook&#x27;s session" in ref_html
    actor_html = notebook.result("actor")["text/html"]
    assert "Actor Box" in actor_html and "ALIVE" in actor_html


def test_pull_and_no_pull(notebook: ExecutedNotebook) -> None:
    assert notebook.stream("after_pull_only") == "8 False\n"
    assert notebook.stream("after_no_pull") == "False\n"


def test_remote_matplotlib_figure_is_a_png(notebook: ExecutedNotebook) -> None:
    pngs = [d["image/png"] for d in notebook.displays("figure") if "image/png" in d]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not any(o.output_type == "execute_result" for o in notebook.outputs("figure"))  # ends with ';'


def test_rich_outputs_keep_their_mime_types(notebook: ExecutedNotebook) -> None:
    html = [d["text/html"] for d in notebook.displays("rich") if "text/html" in d]
    assert html == ["<b>remote badge</b>"]
    result = notebook.result("rich")
    assert "<table" in result["text/html"]  # the DataFrame, rendered by pandas in the notebook
    assert notebook.result("frame_type")["text/plain"] == "('DataFrame', 7)"


def test_remote_error_has_original_type_and_cell_line_numbers(notebook: ExecutedNotebook) -> None:
    error = notebook.error("error")
    assert error.ename == "ValueError"
    assert error.evalue == "bad value 1"
    text = "\n".join(error.traceback)
    assert f"Cell In[{notebook.cells['error'].execution_count}], line 4" in text
    assert '----> 4   raise ValueError(f"bad value {x}")' in text
    assert "dispatch.py" not in text and "remote_cell.py" not in text  # no nbray frames
    assert notebook.stream("catch") == "caught ValueError\n"
    syntax = notebook.error("syntax")
    assert syntax.ename == "SyntaxError"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "".join(syntax.traceback))  # IPython colours syntax errors
    assert f"Cell In[{notebook.cells['syntax'].execution_count}], line 3\n    broken = (" in plain


def test_session_keeps_state_and_holds_its_gpu(notebook: ExecutedNotebook) -> None:
    assert notebook.stream("session_holds_gpu") == "gpu held by the session\n"
    assert notebook.result("session_2")["text/plain"] == "(2, [0])"
    listing = notebook.stream("sessions_list")
    assert "gpu" in listing and "ALIVE" in listing and "num_gpus=1" in listing
    assert notebook.stream("session_close").endswith("gpu free\n")


def test_all_nodes_output_is_labelled_per_node(notebook: ExecutedNotebook) -> None:
    lines = notebook.stream("all_nodes").splitlines()
    assert len(lines) == 2
    labels = {line.split("]")[0] + "]" for line in lines}
    assert len(labels) == 2
    for line in lines:  # "[0:1a2b3c4d] running on 1a2b3c4d": the label names the node it ran on
        label, _, text = line.partition("] ")
        assert text == f"running on {label.split(':')[1]}"


def test_async_cell_binds_ref_and_variables_arrive(notebook: ExecutedNotebook) -> None:
    assert notebook.outputs("async_start") == [] or all(
        o.output_type == "stream" for o in notebook.outputs("async_start"))
    assert notebook.stream("async_wait") == "84 42\n"


def test_task_output_goes_to_submitting_cell(notebook: ExecutedNotebook) -> None:
    text = notebook.stream("task_output")
    for i in range(3):
        assert f"task {i} says hi" in text
    assert text.startswith("(shout pid=")
    # printed before the result is shown (the result waits for the output)
    kinds = [o.output_type for o in notebook.outputs("task_output")]
    assert kinds.index("execute_result") > kinds.index("stream")


def test_progress_widget_state(notebook: ExecutedNotebook) -> None:
    box = notebook.widget_of("progress", output="display_data")
    bar, label = notebook.children(box)
    assert bar["model_name"] == "IntProgressModel"
    assert (bar["state"]["value"], bar["state"]["max"]) == (5, 5)
    assert bar["state"]["bar_style"] == "success"
    assert bar["state"]["description"] == "shouts"
    assert label["state"]["value"].startswith("5 done, 0 failed, 0 pending")
    assert notebook.result("progress")["text/plain"].startswith("ProgressSummary(done=5, failed=0, total=5")


def test_cluster_view_widget_state(notebook: ExecutedNotebook) -> None:
    view = notebook.widget_of("cluster_view")
    models = notebook.descendants(view)
    cpu_bars = sorted(m["state"]["max"] for m in models
                      if m["model_name"] == "FloatProgressModel" and m["state"]["description"] == "CPU")
    assert cpu_bars == [1.0, 2.0]  # one row per node
    gpu_bars = [m["state"]["max"] for m in models
                if m["model_name"] == "FloatProgressModel" and m["state"]["description"] == "GPU"]
    assert max(gpu_bars) == 1.0
    header = next(m for m in models if m["model_name"] == "HTMLModel" and "nbray cluster" in m["state"]["value"])
    assert "2 node(s)" in header["state"]["value"]


def test_task_graph_widget_state(notebook: ExecutedNotebook) -> None:
    graph = notebook.widget_of("task_graph")
    state = graph["state"]
    assert state["num_tasks"] >= 8 + 10  # the shouts and the remote cells
    assert state["state_counts"]["FINISHED"] >= 8
    assert state["collapsed"] is False
    assert state["svg"].startswith("<svg") and "shout" in state["svg"]
    assert "text/html" in notebook.result("task_graph")  # static fallback for non-widget renderers


def test_context_widget(notebook: ExecutedNotebook) -> None:
    box = notebook.widget_of("context_widget", output="display_data")
    table, button = notebook.children(box)
    assert "nbray cluster" in table["state"]["value"] and "Nodes" in table["state"]["value"]
    assert button["state"]["description"] == "Disconnect"


def test_help_has_examples(notebook: ExecutedNotebook) -> None:
    text = notebook.stream("help")
    assert "--session NAME" in text and "Examples" in text and "%%remote --all" in text


def test_status_lists_nodes(notebook: ExecutedNotebook) -> None:
    text = notebook.stream("status")
    assert text.splitlines()[0].split()[:3] == ["NODE", "IP", "CPU"]
    assert len([line for line in text.splitlines() if "127.0.0.1" in line]) == 2
    json.dumps(text)  # plain text
