"""%nbray debug through a real kernel: the hint under a failed task, the
debugger opened on the failing line and driven over the kernel's stdin
channel, arguments that are gone, and the one-line answers to bad input."""

from __future__ import annotations

import queue
import re
import time
from typing import Any

import pytest

from nbray.testing import Cluster
from tests.notebook.kernels import LiveKernel, stream_text

pytestmark = pytest.mark.timeout(180)

ANSI = re.compile(r"\x1b\[[0-9;]*m")

DEFINE = '''
def scale(x, factor):
    y = x * factor
    if y > 10:
        raise ValueError(f"too big: {y}")
    return y

def size_of(data):
    raise KeyError(len(data))
'''


def _errors(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["msg_type"] == "error"]


def _run_with_input(kernel: LiveKernel, code: str, answers: list[str],
                    timeout_s: float = 60) -> tuple[list[str], list[dict[str, Any]]]:
    """Run a cell that reads stdin (the debugger): answer each prompt in turn.
    Returns (the prompts seen, the cell's IOPub messages)."""
    msg_id = kernel.submit(code)
    prompts: list[str] = []
    deadline = time.monotonic() + timeout_s
    pending = list(answers)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the kernel asked for input {len(prompts)} times, expected {len(answers)}")
        try:
            msg = kernel.kc.get_stdin_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["msg_type"] == "input_request":
            prompts.append(msg["content"]["prompt"])
            kernel.kc.input(pending.pop(0))
    messages = [m for m in kernel.wait_idle(msg_id, timeout_s) if m["parent_header"].get("msg_id") == msg_id]
    return prompts, messages


@pytest.fixture
def kernel(single_node_cluster: Cluster) -> Any:
    k = LiveKernel()
    try:
        reply, _ = k.run(f"%load_ext nbray\n%nbray init {single_node_cluster.address}\nimport nbray", 120)
        assert reply["status"] == "ok", reply
        yield k
    finally:
        try:
            k.run("%nbray shutdown", 60)
        finally:
            k.shutdown()


def test_debug_opens_the_debugger_on_the_failing_line(kernel: LiveKernel) -> None:
    reply, _ = kernel.run(DEFINE + "\nbase = nbray.put(7)\nref = nbray.remote(scale).remote(base, factor=3)")
    assert reply["status"] == "ok"
    reply, messages = kernel.run("nbray.get(ref)")
    assert reply["status"] == "error" and reply["ename"].startswith("RayTaskError")
    assert "%nbray debug" in stream_text(messages)  # the hint under the traceback

    prompts, messages = _run_with_input(kernel, "%nbray debug", ["p x, factor, y", "q"])
    out = ANSI.sub("", stream_text(messages))
    assert prompts and all(ANSI.sub("", p).strip().startswith("ipdb>") for p in prompts)
    # The debugger stands on the failing line (the arrow marks it).
    assert re.search(r"-+> +4 +raise ValueError\(f\"too big: \{y\}\"\)", out), out
    assert "(7, 3, 21)" in out  # the ObjectRef argument was fetched, the keyword one kept
    assert _errors(messages) == []


def test_bad_input_and_gone_arguments_get_one_line(kernel: LiveKernel) -> None:
    reply, messages = kernel.run("%nbray debug")
    assert reply["status"] == "ok" and _errors(messages) == []
    assert stream_text(messages).strip() == "[nbray] no task submitted from this kernel has failed (yet)"

    reply, _ = kernel.run(DEFINE + "\nok = nbray.remote(scale).remote(1, 2)\nnbray.get(ok)")
    for line in ("%nbray debug 0123abcd", "%nbray debug {ok.task_id().hex()}"):
        reply, messages = kernel.run(line)
        out = stream_text(messages).strip()
        assert reply["status"] == "ok" and _errors(messages) == []
        assert out.startswith("[nbray] no failed task") and "\n" not in out
    reply, messages = kernel.run("%nbray debug not-an-id")
    assert _errors(messages) == [] and "is not a task id" in stream_text(messages)

    # A large argument lives in the object store; once the program drops its ref it is freed.
    reply, _ = kernel.run("big = nbray.put(b'x' * 300_000)\nfailed = nbray.remote(size_of).remote(big)\n"
                          "try:\n    nbray.get(failed)\nexcept KeyError:\n    pass\ndel big")
    assert reply["status"] == "ok", reply
    reply, messages = kernel.run("%nbray debug")
    out = stream_text(messages).strip()
    assert reply["status"] == "ok" and _errors(messages) == []
    assert out.startswith("[nbray] cannot re-run size_of: argument 0 (ObjectRef") and "is gone" in out
    assert "\n" not in out
