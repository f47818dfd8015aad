"""End to end: the ``TaskStream`` widget in a JupyterLab notebook (headless Chromium).

A notebook's kernel connects to a real two-node cluster, runs a small
workload in which one task fails, and displays ``nbray.widgets.TaskStream()``.
The test reads the drawn canvas back (pixels in the failure colour and in
the workload's colours), checks the legend names the workload's functions
and the failed attempt, clicks the failed bar and waits for its details,
sent back by the kernel, to appear under the canvas. A screenshot goes to
``test-artifacts/``. Needs what tests/browser/test_panel.py needs; skipped
otherwise.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pytest

from nbray.testing import wait_for_condition
from tests.browser.lab import ARTIFACTS, LAB_TOKEN, MARKS, Env

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by MARKS
    pass

pytestmark = [*MARKS, pytest.mark.timeout(300)]  # `env` (tests/browser/conftest.py): cluster, JupyterLab, page

NOTEBOOK = "task_stream_widget.ipynb"
# FAILED in nbray/widgets/task_stream.js: the outline of failed attempts.
FAILED_RGB = (0xD6, 0x27, 0x28)
KERNEL_TIMEOUT_MS = 120_000


def notebook(address: str) -> dict[str, Any]:
    cells = [
        f"import time\nimport nbray\nnbray.init(address={address!r})",
        "@nbray.remote\n"
        "def square(x):\n"
        "    time.sleep(0.3)\n"
        "    return x * x\n\n"
        "@nbray.remote(max_retries=0)\n"
        "def check(x):\n"
        "    time.sleep(0.6)\n"
        "    raise ValueError(f'kaboom: {x} is not allowed')\n\n"
        "assert nbray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]\n"
        "try:\n"
        "    nbray.get(check.remote(3))\n"
        "except ValueError:\n"
        "    print('workload done')",
        "from nbray.widgets import TaskStream\nstream = TaskStream(window_s=30)\nstream",
    ]
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": source} for i, source in enumerate(cells)],
    }


def put_notebook(lab_url: str, address: str) -> None:
    body = json.dumps({"type": "notebook", "format": "json", "content": notebook(address)}).encode()
    request = urllib.request.Request(f"{lab_url}/api/contents/{NOTEBOOK}", data=body, method="PUT",
                                     headers={"Authorization": f"token {LAB_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status in (200, 201)


# Counts of the canvas's pixels: drawn at all, in the failure colour, and where the first failed one is.
_READ_PIXELS = """(canvas, [fr, fg, fb]) => {
  const ctx = canvas.getContext('2d');
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const scale = canvas.width / canvas.clientWidth;
  let drawn = 0, failed = 0, top = -1, left = Infinity, right = -1;
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 0) continue;
    drawn++;
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (data[i] === fr && data[i + 1] === fg && data[i + 2] === fb) {
      failed++;
      const p = i / 4, x = p % canvas.width, y = Math.floor(p / canvas.width);
      if (top < 0) top = y;
      if (y === top) { left = Math.min(left, x); right = Math.max(right, x); }
    }
  }
  // the middle of the failed bar: its red top edge is 3 px high, the bar 12 px
  const failedAt = top < 0 ? null : [(left + right) / 2 / scale, (top + 6 * scale) / scale];
  return { drawn, failed, failedAt, colours: colours.size, width: canvas.width, height: canvas.height };
}"""


def test_the_widget_draws_the_workload_and_shows_a_clicked_bars_details(env: Env) -> None:
    page = env.page
    put_notebook(env.lab_url, env.cluster.address)
    page.goto(f"{env.lab_url}/lab/tree/{NOTEBOOK}?token={LAB_TOKEN}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    # The kernel must be up before the cells are run.
    wait_for_condition(lambda: _kernel_idle(env.lab_url), timeout=90, retry_interval_ms=300,
                       message="the notebook's kernel started")
    # Run the cells one after the other: Shift+Enter runs a cell and moves to the next.
    page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    for _ in range(len(notebook("")["cells"])):
        page.keyboard.press("Shift+Enter")

    view = page.locator(".jp-OutputArea .nbray-task-stream-view")
    expect(view).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
    expect(page.locator(".jp-OutputArea", has_text="workload done")).to_be_visible()
    canvas = view.locator("canvas")
    # The widget reports what it drew: 4 squares and the failed check, all in the window.
    expect(canvas).to_have_attribute("data-bars-in-view", "5", timeout=30_000)
    expect(canvas).to_have_attribute("data-failed-in-view", "1")
    legend = view.locator(".nbray-task-stream-legend")
    expect(legend).to_contain_text("square ×4")
    expect(legend).to_contain_text("check ×1")
    expect(legend).to_contain_text("failed ×1")

    # The pixels say the same: the canvas is not blank and has the failure colour.
    pixels = canvas.evaluate(_READ_PIXELS, list(FAILED_RGB))
    assert pixels["drawn"] > 1000, pixels
    assert pixels["colours"] >= 3, pixels  # text, the functions' bars, the failure outline
    assert pixels["failed"] > 20 and pixels["failedAt"] is not None, pixels
    view.scroll_into_view_if_needed()
    page.screenshot(path=os.path.join(ARTIFACTS, "nbray-task-stream-widget.png"))

    # Click the failed bar (found again: the window follows now, so bars move left) and
    # the kernel answers with its details, shown under the canvas.
    box = canvas.bounding_box()
    assert box is not None
    x, y = canvas.evaluate(_READ_PIXELS, list(FAILED_RGB))["failedAt"]
    page.mouse.click(box["x"] + x, box["y"] + y)
    expect(view).to_contain_text("kaboom", timeout=30_000)
    text = view.inner_text()
    assert "check" in text and "FAILED" in text and "ValueError" in text, text
    view.screenshot(path=os.path.join(ARTIFACTS, "nbray-task-stream-widget-details.png"))


def _kernel_idle(lab_url: str) -> bool:
    request = urllib.request.Request(f"{lab_url}/api/kernels", headers={"Authorization": f"token {LAB_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        kernels = json.load(reply)
    return any(k.get("execution_state") == "idle" for k in kernels)
