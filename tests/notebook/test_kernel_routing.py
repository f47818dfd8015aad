"""Live kernel behaviour: output routing over time, and Ctrl-C on remote cells.

Driven message by message through jupyter_client, so a test can act while
a cell runs (interrupt the kernel, open a gate) and check which cell each
IOPub message belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.notebook.kernels import LiveKernel, connected_kernel, stream_text

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernel(address: str) -> Iterator[LiveKernel]:
    # a short grace period keeps the forced-cancel test fast
    with connected_kernel(address, env={"NBRAY_NOTEBOOK_CANCEL_GRACE_S": "1.0"}) as k:
        yield k


def _is_stream(msg_id: str, text: str) -> Any:
    return lambda m: (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
                      and text in m["content"]["text"])


def test_remote_output_streams_while_the_cell_runs(kernel: LiveKernel, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    msg_id = kernel.submit(f"""%%remote
import os, time
print("before the gate", flush=True)
while not os.path.exists({str(gate)!r}):
    time.sleep(0.01)
print("after the gate")""")
    seen = kernel.wait_for(_is_stream(msg_id, "before the gate"))
    assert not any(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                   and m["parent_header"].get("msg_id") == msg_id for m in seen)  # still running
    gate.touch()
    rest = kernel.wait_idle(msg_id)
    assert "after the gate" in stream_text([m for m in rest if m["parent_header"].get("msg_id") == msg_id])
    assert kernel.reply(msg_id)["status"] == "ok"


def test_late_task_output_goes_to_the_cell_that_submitted_it(kernel: LiveKernel, tmp_path: Path) -> None:
    reply, _ = kernel.run("""
@nbray.remote
class Gate:
    def __init__(self):
        import asyncio
        self.event = asyncio.Event()

    async def wait(self):
        await self.event.wait()

    async def release(self):
        self.event.set()

gate = Gate.remote()

@nbray.remote
def late(gate):
    nbray.get(gate.wait.remote())
    print("late output from the task")""")
    assert reply["status"] == "ok"
    cell_a = kernel.submit("late_ref = late.remote(gate)")
    kernel.wait_idle(cell_a)
    assert kernel.reply(cell_a)["status"] == "ok"  # cell A is finished
    done = tmp_path / "seen"
    cell_b = kernel.submit(f"""import os
nbray.get(gate.release.remote())
while not os.path.exists({str(done)!r}):  # cell B keeps running until the test saw the output
    nbray.wait([late_ref], timeout=0.01)""")
    seen = kernel.wait_for(lambda m: m["msg_type"] == "stream" and "late output from the task" in m["content"]["text"])
    assert seen[-1]["parent_header"]["msg_id"] == cell_a  # filed under cell A ...
    assert not any(m["parent_header"].get("msg_id") == cell_b and m["msg_type"] == "status"
                   and m["content"]["execution_state"] == "idle" for m in seen)  # ... while B runs
    done.touch()
    rest = kernel.wait_idle(cell_b)
    assert "late output" not in stream_text([m for m in rest if m["parent_header"].get("msg_id") == cell_b])
    assert kernel.reply(cell_b)["status"] == "ok"


def test_interrupt_cancels_the_remote_cell_and_frees_its_cpus(kernel: LiveKernel) -> None:
    msg_id = kernel.submit("""%%remote --num-cpus 2
import time
print("started", flush=True)
while True:
    time.sleep(0.01)""")
    kernel.wait_for(_is_stream(msg_id, "started"))
    kernel.km.interrupt_kernel()
    messages = kernel.wait_idle(msg_id)
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert [e["ename"] for e in errors] == ["KeyboardInterrupt"]
    assert errors[0]["evalue"] == "remote cell cancelled"
    assert kernel.reply(msg_id)["status"] == "error"
    # the head's 2 CPUs are free again: a cell needing both runs
    reply, out = kernel.run('%%remote --num-cpus 2\n"cpus free"', timeout_s=30)
    assert reply["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["'cpus free'"]


def test_interrupt_forces_a_cell_that_ignores_it(kernel: LiveKernel) -> None:
    msg_id = kernel.submit("""%%remote --num-cpus 2
import time
print("stubborn", flush=True)
while True:
    try:
        time.sleep(0.01)
    except KeyboardInterrupt:
        pass""")
    kernel.wait_for(_is_stream(msg_id, "stubborn"))
    kernel.km.interrupt_kernel()
    errors = [m["content"] for m in kernel.wait_idle(msg_id) if m["msg_type"] == "error"]
    assert errors and errors[0]["evalue"] == "remote cell cancelled (forced: its worker was stopped)"
    reply, _ = kernel.run('%%remote --num-cpus 2\n"cpus free"', timeout_s=30)
    assert reply["status"] == "ok"


def test_interrupted_session_cell_keeps_the_session(kernel: LiveKernel) -> None:
    reply, _ = kernel.run("%%remote --session keep\nkept = 'still here'")
    assert reply["status"] == "ok"
    msg_id = kernel.submit("""%%remote --session keep
import time
print("session busy", flush=True)
while True:
    time.sleep(0.01)""")
    kernel.wait_for(_is_stream(msg_id, "session busy"))
    kernel.km.interrupt_kernel()
    errors = [m["content"] for m in kernel.wait_idle(msg_id) if m["msg_type"] == "error"]
    assert errors and errors[0]["evalue"] == "remote cell cancelled"
    reply, out = kernel.run("%%remote --session keep\nkept")
    assert reply["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == [
        "'still here'"]
    reply, _ = kernel.run("%nbray close keep")
    assert reply["status"] == "ok"
