"""%%remote on a real Ray cluster, through a real kernel of the Ray venv."""

from __future__ import annotations

import base64
import os
import time

import pytest

from tests.notebook.kernels import stream_text
from tests.raybackend.ray_cluster import RayHead, free_port
from tests.raybackend.ray_kernel import RayKernel

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]


def _result(messages: list[dict]) -> str:
    results = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
    assert results, [m["msg_type"] for m in messages]
    return str(results[-1])


def test_names_travel_and_the_value_and_prints_come_back(ray_kernel: RayKernel) -> None:
    ray_kernel.run("x = 20")
    reply, messages = ray_kernel.run('%%remote --num-cpus 1\nprint("hello from", x)\ny = x + 1\ny * 2')
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == "hello from 20\n"
    assert _result(messages) == "42"
    reply, messages = ray_kernel.run("print(y)")
    assert stream_text(messages) == "21\n"


def test_the_notebook_uses_rays_own_module(ray_kernel: RayKernel) -> None:
    _, messages = ray_kernel.run("import ray, nbray\nprint(ray.__name__, ray.__version__, ray.is_initialized(), "
                                 "'site-packages' in ray.__file__, ray is not nbray)")
    assert stream_text(messages) == "ray 2.60.0 True True True\n"


def test_resources_reach_the_task(ray_kernel: RayKernel) -> None:
    reply, messages = ray_kernel.run(
        "%%remote --num-cpus 2\nimport ray\nray.get_runtime_context().get_assigned_resources()")
    assert reply["status"] == "ok", reply
    assert _result(messages) == "{'CPU': 2.0}"


def test_output_streams_while_the_cell_runs(ray_kernel: RayKernel, tmp_path: os.PathLike) -> None:
    flag = os.path.join(str(tmp_path), "go")
    code = (f'%%remote\nimport os, time\nprint("first", flush=True)\ndeadline = time.monotonic() + 60\n'
            f'while not os.path.exists({flag!r}) and time.monotonic() < deadline:\n    time.sleep(0.02)\n'
            f'print("second", os.path.exists({flag!r}))')
    msg_id = ray_kernel.submit(code)
    # "first" must show while the cell still waits for the flag that only this test creates
    ray_kernel.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
                        and "first" in m["content"]["text"], timeout_s=60)
    open(flag, "w").close()
    messages = [m for m in ray_kernel.wait_idle(msg_id, 60) if m["parent_header"].get("msg_id") == msg_id]
    assert ray_kernel.reply(msg_id)["status"] == "ok"
    assert stream_text(messages) == "second True\n"


def test_remote_errors_show_the_cells_lines(ray_kernel: RayKernel) -> None:
    reply, messages = ray_kernel.run('%%remote\nvalue = 1\nraise ValueError(f"bad value {value}")')
    assert reply["status"] == "error"
    assert (reply["ename"], reply["evalue"]) == ("ValueError", "bad value 1")
    text = "\n".join(reply["traceback"])
    assert f"Cell In[{reply['execution_count']}], line 3" in text
    assert '----> 3   raise ValueError(f"bad value {value}")' in text


def test_async_cell_binds_its_names_later(ray_kernel: RayKernel) -> None:
    reply, _ = ray_kernel.run("%%remote --async job\nanswer = 41 + 1\nanswer * 10")
    assert reply["status"] == "ok", reply
    reply, messages = ray_kernel.run("%nbray wait job\nprint(answer, job.result(timeout=30))")
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == "42 420\n"


def test_a_session_keeps_its_namespace(ray_kernel: RayKernel) -> None:
    ray_kernel.run("%%remote --session counter --num-cpus 1\ncount = 1")
    reply, messages = ray_kernel.run("%%remote --session counter\ncount += 1\nimport os\n(count, os.getpid())")
    assert reply["status"] == "ok", reply
    first = _result(messages)
    reply, messages = ray_kernel.run("%%remote --session counter\ncount += 1\nimport os\n(count, os.getpid())")
    second = _result(messages)
    assert first.startswith("(2, ") and second.startswith("(3, ")
    assert first.split()[1] == second.split()[1]  # the same actor process
    _, messages = ray_kernel.run("%nbray sessions")
    assert "counter" in stream_text(messages) and "ALIVE" in stream_text(messages)
    _, messages = ray_kernel.run("%nbray close counter")
    assert "Closed session 'counter'" in stream_text(messages)


def test_interrupt_cancels_the_cells_task_and_frees_its_cpus(ray_kernel: RayKernel) -> None:
    msg_id = ray_kernel.submit('%%remote --num-cpus 2\nimport time\nprint("started", flush=True)\n'
                               'while True:\n    time.sleep(0.02)')
    ray_kernel.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
                        and "started" in m["content"]["text"], timeout_s=60)
    ray_kernel.km.interrupt_kernel()
    reply = ray_kernel.reply(msg_id, timeout_s=60)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert "remote cell cancelled" in "\n".join(reply["traceback"])
    # both CPUs are free again: a cell that needs them runs
    reply, messages = ray_kernel.run("%%remote --num-cpus 2\n'ran'", timeout_s=60)
    assert reply["status"] == "ok" and _result(messages) == "'ran'"


def test_an_unreachable_address_is_a_connection_error_naming_it(kernel_dirs: str, ray_head: RayHead) -> None:
    kernel = RayKernel(kernel_dirs)
    try:
        address = f"127.0.0.1:{free_port()}"
        start = time.monotonic()
        reply, _ = kernel.run(f"%load_ext nbray\n%nbray init --backend ray {address}", timeout_s=60)
        assert time.monotonic() - start < 30
        assert reply["status"] == "error" and reply["ename"] == "ConnectionError", reply
        assert address in reply["evalue"]
    finally:
        kernel.shutdown()


def test_cluster_view_and_task_graph_read_rays_state(ray_kernel: RayKernel) -> None:
    ray_kernel.run("%%remote\n'a cell so the graph has a task'")
    code = ("from nbray.widgets import ClusterView, TaskGraph\nimport time\n"
            "view = ClusterView(live=False)\nrow = next(iter(view.rows.values()))\n"
            "print(view.header.value, '|', row.labels['CPU'].value)\n"
            "deadline = time.monotonic() + 60\ngraph = TaskGraph(live=False)\n"
            "while not graph.state_counts.get('FINISHED') and time.monotonic() < deadline:\n"
            "    time.sleep(0.5)\n    graph.refresh()\n"
            "print(graph.state_counts.get('FINISHED', 0) > 0, 'no data edges' in graph.svg)\n"
            "view.close(); graph.close()")
    reply, messages = ray_kernel.run(code, timeout_s=120)
    assert reply["status"] == "ok", reply
    header, graph_line = stream_text(messages).splitlines()
    assert header.startswith("<b>Ray cluster</b>: 1 node(s) |") and header.endswith("/ 2")
    assert graph_line == "True True"


def test_display_and_figures_stream_while_the_cell_runs(ray_kernel: RayKernel, tmp_path: os.PathLike) -> None:
    flag = os.path.join(str(tmp_path), "go")
    code = ('%%remote\nimport os, time\nimport matplotlib.pyplot as plt\nfrom IPython.display import HTML\n'
            'display(HTML("<b>early</b>"))\nplt.plot([1, 2, 3])\nplt.show()\n'
            f'deadline = time.monotonic() + 60\nwhile not os.path.exists({flag!r}) and time.monotonic() < deadline:\n'
            f'    time.sleep(0.02)\nprint("done", os.path.exists({flag!r}))')
    msg_id = ray_kernel.submit(code)
    shown: list[dict] = []

    def both_shown(m: dict) -> bool:
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "display_data":
            shown.append(m["content"]["data"])
        return any("<b>early</b>" in d.get("text/html", "") for d in shown) and any("image/png" in d for d in shown)

    # both arrive while the cell still waits for the flag that only this test creates
    ray_kernel.wait_for(both_shown, timeout_s=90)
    open(flag, "w").close()
    messages = [m for m in ray_kernel.wait_idle(msg_id, 60) if m["parent_header"].get("msg_id") == msg_id]
    assert ray_kernel.reply(msg_id)["status"] == "ok"
    assert stream_text(messages) == "done True\n"
    png = next(d["image/png"] for d in shown if "image/png" in d)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    # the figure was shown once, not again when the cell ended
    assert not [m for m in messages if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
