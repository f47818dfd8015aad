"""A kernel interrupt cancels the Ray tasks the running cell submitted, through a real kernel on a real Ray head."""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest

from tests.notebook.kernels import stream_text
from tests.raybackend.ray_kernel import RayKernel

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]

HOLD = (
    "import os, time, ray\n"
    "@ray.remote(num_cpus=1)\n"
    "def hold(flag, stubborn):\n"
    "    open(flag, 'w').close()\n"
    "    deadline = time.monotonic() + 240\n"
    "    while time.monotonic() < deadline:\n"
    "        try:\n"
    "            time.sleep(0.05)\n"
    "        except KeyboardInterrupt:\n"
    "            if not stubborn:\n"
    "                raise\n"
    "    return 'ran to the end'\n"
)


def test_interrupt_cancels_the_cells_tasks_and_frees_their_cpus(ray_kernel: RayKernel, tmp_path: os.PathLike) -> None:
    tmp = pathlib.Path(tmp_path)
    # a task of an earlier cell (no CPU) must outlive the interrupt of a later one
    reply, _ = ray_kernel.run(HOLD + f"earlier = hold.options(num_cpus=0).remote({str(tmp / 'earlier')!r}, False)")
    assert reply["status"] == "ok", reply
    # one task is held by the cell, the other is fire-and-forget and ignores the first (gentle) cancel:
    # together they hold both CPUs of the head
    msg_id = ray_kernel.submit(f"held = hold.remote({str(tmp / 'a')!r}, False)\n"
                               f"hold.remote({str(tmp / 'b')!r}, True)\n"
                               "ray.get(held)")
    try:
        _wait_for_files_from_outside(tmp / "a", tmp / "b", tmp / "earlier")
    except TimeoutError:
        ray_kernel.km.interrupt_kernel()
        raise
    ray_kernel.km.interrupt_kernel()
    reply = ray_kernel.reply(msg_id, timeout_s=60)
    messages = [m for m in ray_kernel.wait_idle(msg_id, 60) if m["parent_header"].get("msg_id") == msg_id]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "[nbray] cancelling the 2 task(s) this cell submitted" in stream_text(messages, "stderr")
    # both CPUs come free (the stubborn task only by the forced cancel after the grace period)
    reply, messages = ray_kernel.run(
        "start = time.monotonic()\n"
        "print(ray.get(ray.remote(num_cpus=2)(lambda: 'ran').remote(), timeout=60), round(time.monotonic() - start, 1))\n"
        "try:\n    ray.get(held, timeout=60)\nexcept ray.exceptions.TaskCancelledError:\n    print('held: cancelled')\n"
        "print('earlier still running:', not ray.wait([earlier], timeout=0)[0])\n"
        "ray.cancel(earlier)", timeout_s=150)
    assert reply["status"] == "ok", reply
    ran, cancelled, earlier = stream_text(messages).splitlines()
    match = re.fullmatch(r"ran ([\d.]+)", ran)
    assert match is not None, ran
    # the grace period (3 s) and a forced cancel; far less than the 240 s the tasks would hold the CPUs
    assert float(match.group(1)) < 30, ran
    assert cancelled == "held: cancelled"
    assert earlier == "earlier still running: True"


def _wait_for_files_from_outside(*paths: pathlib.Path, timeout_s: float = 120) -> None:
    """The kernel is busy with the cell: this test process polls the files the tasks create."""
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tasks did not start in {timeout_s} s: {[p.name for p in paths if not p.exists()]}")
        time.sleep(0.05)  # polling files written by Ray workers
