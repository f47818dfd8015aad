"""Ordinary Ray tasks' output and the progress widget, through a real kernel on a real Ray head."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.notebook.kernels import stream_text
from tests.raybackend.ray_kernel import RayKernel

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]


def _streams_with(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["msg_type"] == "stream" and text in m["content"]["text"]]


def _collect_until(kernel: RayKernel, messages: list[dict[str, Any]], text: str) -> None:
    """Add IOPub messages to `messages` until one streams `text` (at once when one did)."""
    seen: list[dict[str, Any]] = []

    def matches(message: dict[str, Any]) -> bool:
        seen.append(message)
        return bool(_streams_with([message], text))

    if _streams_with(messages, text):
        return
    try:
        kernel.wait_for(matches, 120)
    finally:
        messages += seen
    assert _streams_with(messages, text), [m["content"].get("text") for m in messages]


def test_a_tasks_late_print_lands_under_the_cell_that_submitted_it(ray_kernel: RayKernel,
                                                                   tmp_path: os.PathLike) -> None:
    go, seen = os.path.join(str(tmp_path), "go"), os.path.join(str(tmp_path), "seen")
    first = ray_kernel.submit(
        "import os, time, ray\n"
        "@ray.remote\n"
        "def late(flag):\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not os.path.exists(flag) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    print('late line from the task', os.path.exists(flag), flush=True)\n"
        "    return 1\n"
        "@ray.remote\n"
        "class Talker:\n"
        "    def say(self, flag):\n"
        "        deadline = time.monotonic() + 120\n"
        "        while not os.path.exists(flag) and time.monotonic() < deadline:\n"
        "            time.sleep(0.02)\n"
        "        print('late line from the actor', flush=True)\n"
        "talker = Talker.remote()\n"
        f"refs = [late.remote({go!r}), talker.say.remote({go!r})]")
    messages = ray_kernel.wait_idle(first, 120)
    # the second cell releases the task, then keeps running until the test saw both lines arrive
    second = ray_kernel.submit(
        f"open({go!r}, 'w').close()\n"
        "deadline = time.monotonic() + 120\n"
        f"while not os.path.exists({seen!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print('second cell ends')")
    try:
        _collect_until(ray_kernel, messages, "late line from the task")
        _collect_until(ray_kernel, messages, "late line from the actor")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {[m['content'].get('text') for m in messages]}") from None
    open(seen, "w").close()
    messages += ray_kernel.wait_idle(second, 60)
    for text in ("late line from the task True", "late line from the actor"):
        lines = _streams_with(messages, text)
        assert [m["parent_header"]["msg_id"] for m in lines] == [first], text
    assert "(late pid=" in _streams_with(messages, "from the task")[0]["content"]["text"]
    assert "(Talker pid=" in _streams_with(messages, "from the actor")[0]["content"]["text"]
    assert ":nbray_task:" not in "".join(m["content"].get("text", "") for m in messages)
    assert stream_text([m for m in messages if m["parent_header"].get("msg_id") == second]) == "second cell ends\n"


def test_the_progress_widget_waits_with_ray(ray_kernel: RayKernel) -> None:
    code = ("import ray\nfrom nbray.widgets import progress\n"
            "@ray.remote\ndef work(i):\n    if i == 3:\n        raise ValueError(i)\n    return i\n"
            "summary = progress([work.remote(i) for i in range(5)], poll_s=0.1)\n"
            "print(summary.done, summary.failed, summary.total)")
    reply, messages = ray_kernel.run(code, timeout_s=120)
    assert reply["status"] == "ok", reply
    assert stream_text(messages).splitlines()[-1] == "4 1 5"
    bars = [m for m in messages if m["msg_type"] == "display_data"
            and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
    assert bars, [m["msg_type"] for m in messages]


def test_debug_says_it_is_not_available_on_ray(ray_kernel: RayKernel) -> None:
    reply, messages = ray_kernel.run("%nbray debug")
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == "[nbray] %nbray debug is not available on the Ray backend: Ray keeps no " \
                                    "record of failed tasks to re-run in the kernel\n"
