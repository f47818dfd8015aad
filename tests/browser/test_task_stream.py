"""End to end: the task stream and the utilization sparklines in the JupyterLab panel (headless Chromium).

A workload with a failing task runs on a real two-node cluster; the panel's
Task stream section shows bars for its functions and a failed bar; hovering
the failed bar names it, clicking it shows its traceback; then 10,000 tasks
are put in view and the stream is panned while frames are counted with
requestAnimationFrame. Screenshots go to ``test-artifacts/``. Needs what
tests/browser/test_panel.py needs; skipped otherwise.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util.state import get_task
from tests.browser.lab import ARTIFACTS, MARKS, Env, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by MARKS
    pass

pytestmark = [*MARKS, pytest.mark.timeout(240)]  # `env` (tests/browser/conftest.py): cluster, JupyterLab, page

# LABEL_PX in labextension/src/stream/view.ts: the row labels left of the time axis.
LABEL_PX = 92
MIN_FPS = 30
# Farthest the FPS test drags the stream (pixels).
PAN_PX = 35


def run_workload() -> dict[str, Any]:
    @nbray.remote
    def load(i: int) -> int:
        time.sleep(0.05)
        return i

    @nbray.remote
    def square(x: int) -> int:
        time.sleep(0.05)
        return x * x

    @nbray.remote(max_retries=0)
    def check(x: int) -> None:
        time.sleep(0.4)
        raise ValueError(f"kaboom: {x} is not allowed")

    from nbray.worker import context

    context.current().context_tag = "cell-7"
    squares = [square.remote(load.remote(i)) for i in range(6)]
    assert nbray.get(squares) == [i * i for i in range(6)]
    failed = check.remote(3)
    with pytest.raises(ValueError):
        nbray.get(failed)
    context.current().context_tag = ""
    return {"failed": failed}


def canvas_data(page: Any, name: str) -> int:
    return int(page.locator("#nbray-panel .nbray-stream-canvas").get_attribute(f"data-{name}") or 0)


def drag_right(page: Any, box: dict[str, float], pixels: float) -> None:
    """Drag the stream towards earlier times, in moves that stay on the canvas."""
    width = box["width"] - LABEL_PX
    y = box["y"] + 8
    while pixels > 1:
        step = min(pixels, 0.8 * width)
        x0 = box["x"] + LABEL_PX + 10
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move(x0 + step / 2, y, steps=2)
        page.mouse.move(x0 + step, y, steps=2)
        page.mouse.up()
        pixels -= step


def time_window(canvas: Any) -> tuple[int, int]:
    """(span, right edge) of the stream's time window, in ms."""
    return int(canvas.get_attribute("data-span-ms") or 0), int(canvas.get_attribute("data-window-end") or 0)


def center_on(page: Any, canvas: Any, t_ms: float) -> float:
    """Pan so that time `t_ms` is in the middle; returns its x on the page."""
    box = canvas.bounding_box()
    assert box is not None
    width = box["width"] - LABEL_PX
    span, _ = time_window(canvas)
    # The window ends at now; a drag can only bring `t_ms` to the middle once
    # it is more than half a window in the past (a fast run gets here sooner).
    wait_for_condition(lambda: time.time() * 1000 - t_ms > span / 2 + 500, timeout=span / 1000 + 5,
                       retry_interval_ms=100, message="the moment is half a window in the past")
    span, end = time_window(canvas)
    drag_right(page, box, (end - span / 2 - t_ms) / (span / width))
    expect(canvas).to_have_attribute("data-follow", "false")
    span, end = time_window(canvas)
    return float(box["x"] + LABEL_PX + (t_ms - (end - span)) / (span / width))


def test_the_stream_shows_functions_and_the_failed_attempt(env: Env) -> None:
    page = env.page
    held = run_workload()
    open_panel(page, env.lab_url)
    panel = page.locator("#nbray-panel")
    section = panel.locator(".nbray-stream-section")
    section.scroll_into_view_if_needed()
    legend = section.locator(".nbray-stream-legend")
    for func in ("load", "square", "check"):
        expect(legend.locator(f".nbray-stream-legend-item[data-func$='{func}']")).to_be_visible(timeout=30_000)
    expect(legend.locator(".nbray-stream-legend-item[data-func$='square']")).to_have_attribute("data-count", "6")
    expect(legend.locator(".nbray-stream-legend-failed")).to_have_attribute("data-count", "1")
    canvas = section.locator(".nbray-stream-canvas")
    expect(canvas).to_have_attribute("data-follow", "true")
    assert canvas_data(page, "rows") >= 1 and canvas_data(page, "failed-in-view") == 1

    # The utilization sparklines in the node cards fill up, one sample a second.
    head_id = env.cluster.head.node_id.hex()  # type: ignore[union-attr]
    spark = panel.locator(f".nbray-node[data-node-id='{head_id}'] .nbray-spark-cpu")
    wait_for_condition(lambda: int(spark.get_attribute("data-points") or 0) >= 3, timeout=30, retry_interval_ms=200,
                       message="CPU sparkline samples")
    expect(panel.locator(f".nbray-node[data-node-id='{head_id}'] .nbray-spark-store")).to_have_count(1)
    expect(panel.locator(f".nbray-node[data-node-id='{head_id}'] .nbray-spark-gpu")).to_have_count(1)

    # Filter by notebook cell: the workload's cell keeps all of it.
    section.locator(".nbray-stream-cell-filter").select_option("cell-7")
    expect(legend.locator(".nbray-stream-legend-item[data-func$='square']")).to_have_attribute("data-count", "6")
    page.screenshot(path=os.path.join(ARTIFACTS, "nbray-task-stream.png"))

    # In the task graph's tab (more room), zoom to 15 s and pan the failed attempt to the middle;
    # hover it, click it.
    panel.locator(".nbray-pop-out").click()
    window = page.locator("#nbray-graph-window .nbray-stream-box")
    canvas = window.locator(".nbray-stream-canvas")
    expect(canvas).to_have_attribute("data-failed-in-view", "1", timeout=15_000)
    failed_id = held["failed"].hex()[:48]  # a return object id starts with its task id
    row = get_task(failed_id)
    assert row is not None and row["start_time_ms"] and row["end_time_ms"], row
    middle = (row["start_time_ms"] + row["end_time_ms"]) / 2
    for _ in range(2):
        window.locator(".nbray-stream-zoom-in").click()  # 60 s -> 15 s
    window.scroll_into_view_if_needed()
    x = center_on(page, canvas, middle)
    box = canvas.bounding_box()
    assert box is not None
    tip = window.locator(".nbray-stream-tip")
    hit_y = None
    for y in range(int(box["y"]) + 18, int(box["y"] + box["height"]), 4):
        page.mouse.move(x, y)
        if tip.is_visible() and "check" in tip.inner_text():
            hit_y = y
            break
    assert hit_y is not None, f"no bar of the failed task under the pointer at x={x}, window {time_window(canvas)}"
    expect(tip).to_contain_text("FAILED")
    expect(tip).to_contain_text(f"({row['node_id'][:8]})")  # the node it ran on
    page.mouse.click(x, hit_y)
    detail = window.locator(".nbray-task-detail")
    expect(detail.locator(".nbray-detail-state .nbray-field-value")).to_have_text("FAILED", timeout=15_000)
    expect(detail.locator(".nbray-traceback")).to_contain_text("kaboom: 3 is not allowed", timeout=15_000)
    page.screenshot(path=os.path.join(ARTIFACTS, "nbray-task-stream-failed.png"))
    window.locator(".nbray-stream-live").click()
    expect(canvas).to_have_attribute("data-follow", "true")
    section.locator(".nbray-stream-cell-filter").select_option("")
    page.locator('li.lm-TabBar-tab[data-id="nbray-panel"]').wait_for()


@pytest.mark.timeout(420)
def test_panning_ten_thousand_tasks_stays_smooth(env: Env) -> None:
    page = env.page

    @nbray.remote
    def noop(i: int) -> int:
        return i

    started = time.monotonic()
    nbray.get([noop.remote(i) for i in range(10_000)])
    last_ms = time.time() * 1000
    ran_s = time.monotonic() - started
    # In the task graph's tab (opened by the test above): a 4 minute window centred on the run,
    # so the whole run stays in view while panning.
    window = page.locator("#nbray-graph-window .nbray-stream-box")
    canvas = window.locator(".nbray-stream-canvas")
    window.locator(".nbray-stream-live").click()
    for _ in range(4):
        window.locator(".nbray-stream-zoom-out").click()  # 15 s (as the test above left it) -> 240 s
    expect(canvas).to_have_attribute("data-span-ms", "240000")
    item = window.locator(".nbray-stream-legend-item[data-func$='noop']")
    wait_for_condition(lambda: int(item.get_attribute("data-count") or 0) >= 10_000, timeout=120,
                       retry_interval_ms=250, message="10,000 noop bars in view")
    window.scroll_into_view_if_needed()
    # The drag below moves the window back by up to PAN_PX: the run must be at least that far in the past.
    box = canvas.bounding_box()
    assert box is not None
    ms_per_px = 240_000 / (box["width"] - LABEL_PX)
    wait_for_condition(lambda: time.time() * 1000 - last_ms > PAN_PX * ms_per_px + 1000, timeout=30,
                       retry_interval_ms=100, message="the run is far enough in the past")
    # Drag back and forth for 3 s, one pointer move per animation frame; count frames and redraws.
    result = page.evaluate("""async (panPx) => {
        const canvas = document.querySelector('#nbray-graph-window .nbray-stream-canvas');
        const rect = canvas.getBoundingClientRect();
        const x0 = rect.left + 200, y = rect.top + 8;
        const opts = (x) => ({clientX: x, clientY: y, pointerId: 1, bubbles: true, isPrimary: true});
        // the page's own frame rate first, with nothing to draw (the ceiling panning can reach)
        let idle = 0;
        const idleStart = performance.now();
        await new Promise(resolve => {
            const tick = (now) => { idle++; if (now - idleStart < 1000) requestAnimationFrame(tick); else resolve(); };
            requestAnimationFrame(tick);
        });
        const idleFps = idle / ((performance.now() - idleStart) / 1000);
        canvas.dispatchEvent(new PointerEvent('pointerdown', opts(x0)));
        const draws0 = Number(canvas.dataset.draws);
        let frames = 0, minBars = Infinity, worstMs = 0, drawMs = [], last = performance.now();
        const t0 = last;
        await new Promise(resolve => {
            const step = (now) => {
                frames++;
                worstMs = Math.max(worstMs, now - last);
                last = now;
                minBars = Math.min(minBars, Number(canvas.dataset.barsInView));
                drawMs.push(Number(canvas.dataset.drawMs));
                const x = x0 + panPx * (0.6 + 0.4 * Math.sin(frames / 10));
                canvas.dispatchEvent(new PointerEvent('pointermove', opts(x)));
                if (now - t0 < 3000) requestAnimationFrame(step); else resolve();
            };
            requestAnimationFrame(step);
        });
        const elapsed = (performance.now() - t0) / 1000;
        canvas.dispatchEvent(new PointerEvent('pointerup', opts(x0)));
        return {fps: frames / elapsed, drawsPerS: (Number(canvas.dataset.draws) - draws0) / elapsed,
                minBars, worstMs, idleFps, follow: canvas.dataset.follow,
                drawMs: drawMs.sort((a, b) => a - b)[Math.floor(drawMs.length / 2)]};
    }""", PAN_PX)
    page.screenshot(path=os.path.join(ARTIFACTS, "nbray-task-stream-10000.png"))
    assert window.locator(".nbray-stream-legend-item").count() >= 1
    print(f"\n10,000 tasks ran in {ran_s:.1f} s; panning the stream: {result['fps']:.1f} frames/s, "
          f"{result['drawsPerS']:.1f} redraws/s, median draw {result['drawMs']:.2f} ms, "
          f"worst frame {result['worstMs']:.0f} ms (the idle page: {result['idleFps']:.1f} frames/s), "
          f"at least {result['minBars']} bars in view")
    assert result["minBars"] >= 10_000, result
    assert result["follow"] == "false", result  # it really panned away from now
    assert result["drawsPerS"] >= MIN_FPS and result["fps"] >= MIN_FPS, result

    # The sidebar's stream (following now, its last minute) shows them too.
    expect(page.locator("#nbray-panel .nbray-stream-legend-item[data-func$='noop']")).to_be_visible()
