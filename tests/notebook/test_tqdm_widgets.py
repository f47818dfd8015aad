"""tqdm_ray in a notebook: ipywidgets bars under the cell that started the work.

A real kernel runs the notebook (nbclient, widget state saved as a
frontend would), connected to a one-node cluster so that every task's
output has reached the kernel when its cell ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from nbray.experimental.tqdm_ray import RAY_TQDM_MAGIC
from tests.notebook.kernels import ExecutedNotebook, NamedCell, build_notebook, execute

pytestmark = pytest.mark.timeout(120)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _bars(nb: ExecutedNotebook, cell: str) -> list[dict[str, Any]]:
    """(label, IntProgress) states of the bar widgets displayed under `cell`."""
    bars = []
    for data in nb.displays(cell):
        if WIDGET_VIEW not in data:
            continue
        box = nb.widget(data[WIDGET_VIEW]["model_id"])
        assert box["model_name"] == "HBoxModel", box
        label, progress, stats = nb.children(box)
        assert progress["model_name"] == "IntProgressModel", progress
        bars.append({"label": label["state"]["value"], **progress["state"], "stats": stats["state"]["value"]})
    return sorted(bars, key=lambda b: b["max"])


def test_bars_are_widgets_under_the_cell_that_made_them(single_node_address: str) -> None:
    nb = execute(build_notebook([
        NamedCell("init", f"import nbray\nnbray.init({single_node_address!r})\n"
                          "from nbray.experimental.tqdm_ray import tqdm"),
        NamedCell("tasks", """
@nbray.remote
def work(n, label):
    for _ in tqdm(range(n), desc=label):
        pass
    print("plain output of", label)
    return n

nbray.get([work.remote(7, "seven"), work.remote(5, "five")])"""),
        NamedCell("remote", """%%remote
from nbray.experimental.tqdm_ray import tqdm
for _ in tqdm(range(4), desc="in a remote cell"):
    pass"""),
        NamedCell("driver", """
bar = tqdm(total=3, desc="local", unit="step")
for _ in range(3):
    bar.update(1)
bar.close()"""),
    ]), address=single_node_address)
    executed = ExecutedNotebook(nb)

    tasks = _bars(executed, "tasks")
    assert [(b["value"], b["max"], b["bar_style"]) for b in tasks] == [(5, 5, "success"), (7, 7, "success")]
    assert "five" in tasks[0]["label"] and "(work pid=" in tasks[0]["label"]
    assert "7/7" in tasks[1]["stats"]
    text = executed.stream("tasks")
    assert "plain output of seven" in text and "plain output of five" in text
    assert RAY_TQDM_MAGIC not in text + executed.stream("tasks", "stderr")

    (remote,) = _bars(executed, "remote")
    assert (remote["value"], remote["max"]) == (4, 4) and remote["label"].endswith("in a remote cell")
    assert RAY_TQDM_MAGIC not in executed.stream("remote")

    (local,) = _bars(executed, "driver")
    assert (local["label"], local["value"], local["max"], local["bar_style"]) == ("local", 3, 3, "success")
    assert "3/3" in local["stats"]
