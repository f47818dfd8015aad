"""%%remote --num-gpus and --all, and a kernel on Ray Client (ray://), against a real two-node Ray cluster on this
machine: a head with a logical GPU and a second node told apart by a resource of its own."""

from __future__ import annotations

import ast
import os
import pathlib
import re
from collections.abc import Iterator

import pytest

from tests.notebook.kernels import stream_text
from tests.raybackend.ray_cluster import RayHead, start_ray_head
from tests.raybackend.ray_kernel import RayKernel, connected_ray_kernel
from tests.raybackend.test_interrupt_on_ray import HOLD, _wait_for_files_from_outside

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]


SECOND_NODE_RESOURCE = "second_node"
"""A resource only the second node has."""


@pytest.fixture(scope="module")
def gpu_head() -> Iterator[RayHead]:
    head = start_ray_head(num_cpus=2, num_gpus=1)
    try:
        head.add_node(num_cpus=1, resources={SECOND_NODE_RESOURCE: 1})
        yield head
    finally:
        head.stop()
        assert not head.processes(), "the Ray head left processes behind"


@pytest.fixture(scope="module")
def gpu_kernel(gpu_head: RayHead, kernel_dirs: str) -> Iterator[RayKernel]:
    with connected_ray_kernel(kernel_dirs, gpu_head.address) as kernel:
        yield kernel


@pytest.fixture(scope="module")
def client_kernel(gpu_head: RayHead, kernel_dirs: str) -> Iterator[RayKernel]:
    # Ray's client server starts a server process per client through the head's
    # runtime-env agent; on a loaded machine its first start can fail ("Initialization
    # failure from server"). A second connection, from a fresh kernel, is tried once.
    for attempt in (1, 2):
        kernel = RayKernel(kernel_dirs)
        reply, _ = kernel.run(f"%load_ext nbray\n%nbray init --backend ray ray://127.0.0.1:{gpu_head.client_port}",
                              timeout_s=120)
        if reply["status"] == "ok":
            break
        kernel.shutdown()
        if attempt == 2 or "Initialization failure from server" not in reply["evalue"]:
            raise AssertionError((reply["evalue"], _client_server_logs(gpu_head)))
    try:
        yield kernel
    finally:
        kernel.shutdown()


def _client_server_logs(head: RayHead) -> str:
    """The tails of the head's Ray Client server logs (why a client could not connect)."""
    logs = sorted(pathlib.Path(head.temp_dir).glob("session_*/logs/ray_client_server*"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)


def _last_result(messages: list[dict]) -> str:
    results = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
    assert results, [(m["msg_type"], m["content"]) for m in messages]
    return str(results[-1])


def test_a_gpu_cell_sees_the_gpu_ray_assigned_it(gpu_kernel: RayKernel) -> None:
    reply, messages = gpu_kernel.run('%%remote --num-gpus 1\nimport os, ray\n'
                                     '(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), '
                                     'ray.get_runtime_context().get_assigned_resources().get("GPU"))', timeout_s=120)
    assert reply["status"] == "ok", reply
    assert _last_result(messages) == "([0], '0', 1.0)"
    # a cell without --num-gpus gets none
    reply, messages = gpu_kernel.run("%%remote\nimport ray\nray.get_gpu_ids()", timeout_s=120)
    assert _last_result(messages) == "[]"


ALL_NODES_CELL = ("%%remote --all\nimport os, ray\nme = ray.get_runtime_context().get_node_id()\n"
                  "mine = next(n['Resources'] for n in ray.nodes() if n['NodeID'] == me)\n"
                  f"print('on', me, {SECOND_NODE_RESOURCE!r} in mine)\n"
                  f"(me, os.getpid(), {SECOND_NODE_RESOURCE!r} in mine)")


def _alive_nodes(kernel: RayKernel) -> list[str]:
    reply, messages = kernel.run("import ray\nprint(sorted(n['NodeID'] for n in ray.nodes() if n['Alive']))")
    assert reply["status"] == "ok", reply
    return list(ast.literal_eval(stream_text(messages)))


def _check_one_run_per_node(kernel: RayKernel, head: RayHead, messages: list[dict]) -> None:
    """Each alive node ran the cell once, on itself; only the second node has its resource; each run printed."""
    per_node = ast.literal_eval(_last_result(messages))
    alive = _alive_nodes(kernel)
    assert len(alive) == 2 and head.nodes[0].node_id in alive, alive
    assert {node: ran_on for node, (ran_on, _pid, _second) in per_node.items()} == {node: node for node in alive}
    assert {node: second for node, (_ran_on, _pid, second) in per_node.items()} == {
        node: node == head.nodes[0].node_id for node in alive}
    assert len({pid for _node, (_ran_on, pid, _second) in per_node.items()}) == 2
    printed = sorted(re.findall(r"on (\w+) (True|False)", stream_text(messages)))
    assert printed == sorted((node, str(node == head.nodes[0].node_id)) for node in alive), stream_text(messages)


def test_all_runs_the_cell_once_on_each_alive_node(gpu_kernel: RayKernel, gpu_head: RayHead) -> None:
    reply, messages = gpu_kernel.run(ALL_NODES_CELL, timeout_s=120)
    assert reply["status"] == "ok", reply
    _check_one_run_per_node(gpu_kernel, gpu_head, messages)


def test_remote_cells_run_on_ray_client(client_kernel: RayKernel, gpu_head: RayHead) -> None:
    reply, messages = client_kernel.run('%%remote --num-cpus 1\nprint("hello through the client")\n'
                                        'from IPython.display import HTML\ndisplay(HTML("<i>shown</i>"))\n'
                                        'answer = 6 * 7\nanswer + 1', timeout_s=120)
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == "hello through the client\n"
    assert [m["content"]["data"]["text/html"] for m in messages if m["msg_type"] == "display_data"] == ["<i>shown</i>"]
    assert _last_result(messages) == "43"
    reply, messages = client_kernel.run("print(answer)")
    assert stream_text(messages) == "42\n"
    reply, _ = client_kernel.run('%%remote\nraise ValueError("from the client cell")', timeout_s=120)
    assert (reply["status"], reply["ename"], reply["evalue"]) == ("error", "ValueError", "from the client cell")
    reply, messages = client_kernel.run(ALL_NODES_CELL, timeout_s=120)
    assert reply["status"] == "ok", reply
    _check_one_run_per_node(client_kernel, gpu_head, messages)


def test_a_tasks_output_on_ray_client_lands_under_the_cell_that_waits_for_it(client_kernel: RayKernel,
                                                                              tmp_path: os.PathLike) -> None:
    """Ray Client streams worker output as text without the task's id: a line goes to the cell that runs
    when it arrives, so this cell waits (for a flag the test creates once it saw the line)."""
    flag = os.path.join(str(tmp_path), "seen")
    msg_id = client_kernel.submit(
        "import os, time, ray\n@ray.remote\ndef shout(i):\n    print('task line', i, flush=True)\n    return i\n"
        f"print('got', ray.get(shout.remote(7)))\ndeadline = time.monotonic() + 120\n"
        f"while not os.path.exists({flag!r}) and time.monotonic() < deadline:\n    time.sleep(0.02)")
    seen = client_kernel.wait_for(lambda m: m["msg_type"] == "stream" and "task line 7" in m["content"]["text"], 120)
    open(flag, "w").close()
    messages = seen + client_kernel.wait_idle(msg_id, 60)
    assert client_kernel.reply(msg_id)["status"] == "ok"
    lines = [m for m in messages if m["msg_type"] == "stream" and "task line 7" in m["content"]["text"]]
    assert [m["parent_header"]["msg_id"] for m in lines] == [msg_id]
    text = lines[0]["content"]["text"]
    assert "(shout pid=" in text and "\x1b[" not in text, text


def _cpus_free_again(kernel: RayKernel, timeout_s: float = 60) -> tuple[dict, list[dict]]:
    """A cell that polls until every CPU of the cluster is available again; prints how long it took."""
    return kernel.run(
        "import time, ray\nstart = time.monotonic()\n"
        f"while ray.available_resources().get('CPU', 0) < ray.cluster_resources()['CPU'] "
        f"and time.monotonic() - start < {timeout_s}:\n    time.sleep(0.1)\n"
        "print('free', ray.available_resources().get('CPU', 0) == ray.cluster_resources()['CPU'], "
        "round(time.monotonic() - start, 1))", timeout_s=timeout_s + 60)


def test_an_interrupt_on_ray_client_cancels_every_task_the_cell_submitted(client_kernel: RayKernel,
                                                                           tmp_path: os.PathLike) -> None:
    tmp = pathlib.Path(tmp_path)
    reply, messages = _cpus_free_again(client_kernel)
    assert stream_text(messages).startswith("free True"), (reply, stream_text(messages))
    # three plain tasks hold all three CPUs of the two nodes: one the cell waits for, two fire-and-forget
    # (one of them ignores the gentle cancel, so only the forced one frees its CPU)
    msg_id = client_kernel.submit(HOLD + f"held = hold.remote({str(tmp / 'a')!r}, False)\n"
                                  f"hold.remote({str(tmp / 'b')!r}, False)\n"
                                  f"hold.remote({str(tmp / 'c')!r}, True)\n"
                                  "ray.get(held)")
    try:
        _wait_for_files_from_outside(tmp / "a", tmp / "b", tmp / "c")
    finally:
        client_kernel.km.interrupt_kernel()
    reply = client_kernel.reply(msg_id, timeout_s=60)
    messages = [m for m in client_kernel.wait_idle(msg_id, 60) if m["parent_header"].get("msg_id") == msg_id]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "[nbray] cancelling the 3 task(s) this cell submitted" in stream_text(messages, "stderr")
    reply, messages = _cpus_free_again(client_kernel)
    assert reply["status"] == "ok", reply
    free = stream_text(messages).strip()
    match = re.fullmatch(r"free True ([\d.]+)", free)
    # the grace period (3 s) and a forced cancel: far less than the 240 s the tasks would hold the CPUs
    assert match is not None and float(match.group(1)) < 30, free
    reply, messages = client_kernel.run(
        "try:\n    ray.get(held, timeout=60)\nexcept ray.exceptions.TaskCancelledError:\n    print('held: cancelled')")
    assert stream_text(messages) == "held: cancelled\n", (reply, messages)


def test_a_session_keeps_its_namespace_and_its_cpu_on_ray_client(client_kernel: RayKernel) -> None:
    reply, messages = _cpus_free_again(client_kernel)
    assert stream_text(messages).startswith("free True"), (reply, stream_text(messages))
    reply, _ = client_kernel.run("%%remote --session tally --num-cpus 1\nimport os\ncount = 1\npid = os.getpid()",
                                 timeout_s=120)
    assert reply["status"] == "ok", reply
    reply, messages = client_kernel.run("%%remote --session tally\nimport os\ncount += 1\n"
                                        "print('same process', pid == os.getpid())\ncount * 10", timeout_s=120)
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == "same process True\n"
    assert _last_result(messages) == "20"
    # the names the cells assigned were pulled back into the notebook
    reply, messages = client_kernel.run("print(count, isinstance(pid, int))")
    assert stream_text(messages) == "2 True\n"
    # the session actor holds its CPU between cells, and gives it back when closed
    reply, messages = client_kernel.run(
        "start = time.monotonic()\n"
        "while ray.available_resources().get('CPU', 0) != ray.cluster_resources()['CPU'] - 1 "
        "and time.monotonic() - start < 30:\n    time.sleep(0.1)\n"
        "print('held', ray.cluster_resources()['CPU'] - ray.available_resources().get('CPU', 0))")
    assert stream_text(messages) == "held 1.0\n", (reply, messages)
    reply, _ = client_kernel.run("%nbray close tally")
    assert reply["status"] == "ok", reply
    reply, messages = _cpus_free_again(client_kernel)
    assert stream_text(messages).startswith("free True"), (reply, stream_text(messages))
