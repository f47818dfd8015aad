"""%%remote --num-gpus and --all, and a kernel on Ray Client (ray://), against a real Ray head with a logical GPU."""

from __future__ import annotations

import ast
import os
import pathlib
from collections.abc import Iterator

import pytest

from tests.notebook.kernels import stream_text
from tests.raybackend.ray_cluster import RayHead, start_ray_head
from tests.raybackend.ray_kernel import RayKernel

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def gpu_head() -> Iterator[RayHead]:
    head = start_ray_head(num_cpus=2, num_gpus=1)
    try:
        yield head
    finally:
        head.stop()
        assert not head.processes(), "the Ray head left processes behind"


@pytest.fixture(scope="module")
def gpu_kernel(gpu_head: RayHead, kernel_dirs: str) -> Iterator[RayKernel]:
    kernel = RayKernel(kernel_dirs)
    try:
        reply, _ = kernel.run(f"%load_ext nbray\n%nbray init --backend ray {gpu_head.address}", timeout_s=120)
        assert reply["status"] == "ok", reply
        yield kernel
    finally:
        kernel.shutdown()


@pytest.fixture(scope="module")
def client_kernel(gpu_head: RayHead, kernel_dirs: str) -> Iterator[RayKernel]:
    kernel = RayKernel(kernel_dirs)
    try:
        reply, _ = kernel.run(f"%load_ext nbray\n%nbray init --backend ray ray://127.0.0.1:{gpu_head.client_port}",
                              timeout_s=120)
        assert reply["status"] == "ok", (reply["evalue"], _client_server_logs(gpu_head))
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


def test_all_runs_the_cell_once_on_each_alive_node(gpu_kernel: RayKernel) -> None:
    reply, messages = gpu_kernel.run("%%remote --all\nimport os, ray\n"
                                     "(ray.get_runtime_context().get_node_id(), os.getpid())", timeout_s=120)
    assert reply["status"] == "ok", reply
    per_node = ast.literal_eval(_last_result(messages))
    reply, messages = gpu_kernel.run("import ray\nprint(sorted(n['NodeID'] for n in ray.nodes() if n['Alive']))")
    alive = ast.literal_eval(stream_text(messages))
    assert alive, messages
    # one run per alive node, each on the node it is listed under
    assert {node: ran_on for node, (ran_on, _pid) in per_node.items()} == {node: node for node in alive}


def test_remote_cells_run_on_ray_client(client_kernel: RayKernel) -> None:
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
    reply, messages = client_kernel.run("%%remote --all\nimport ray\nray.get_runtime_context().get_node_id()",
                                        timeout_s=120)
    assert reply["status"] == "ok", reply
    [(node, ran_on)] = ast.literal_eval(_last_result(messages)).items()
    assert node == ran_on


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
