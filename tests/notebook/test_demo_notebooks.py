"""The Binder demo notebooks 02 and 03 run top to bottom in a real kernel and show what they promise.

Each code cell of those notebooks has a ``name`` in its metadata; the tests
look cells up by it and check the values they print or return. Notebook 02
runs against a test cluster given in ``NBRAY_ADDRESS`` (as a driver and as a
client). Notebook 03 runs as a client twice: once starting its own cluster
(as on Binder; its last cell must stop everything) and once against a
running cluster given in ``NBRAY_CLIENT_ADDRESS`` (which it must leave
running, with nothing of its own left on it).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbray.testing import Cluster, shm_files, wait_for_condition
from nbray.util.state import list_actors, list_placement_groups
from tests.notebook.kernels import ExecutedNotebook, execute

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 60
LEAK_TIMEOUT_S = 15.0

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def demo_cluster() -> Iterator[Cluster]:
    """A cluster as the notebooks' markdown asks for: 2 CPUs, 2 logical GPUs,
    one "sensor" resource and a client server."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 2, "resources": {"sensor": 1}, "ray_client_server_port": 0})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _run(name: str, env: dict[str, str], address: str | None = None) -> ExecutedNotebook:
    nb = execute(nbformat.read(NOTEBOOKS / name, as_version=4), env=env, timeout_s=CELL_TIMEOUT_S,
                 cwd=str(NOTEBOOKS), address=address)
    executed = ExecutedNotebook(nb)
    unnamed = [c.source.splitlines()[:1] for c in nb.cells if c.cell_type == "code" and not c.metadata.get("name")]
    assert not unnamed, f"every code cell needs a metadata name: {unnamed}"
    return executed


def _errors(nb: ExecutedNotebook) -> dict[str, str]:
    return {name: o.ename for name, cell in nb.cells.items() for o in cell.outputs if o.output_type == "error"}


def _value(nb: ExecutedNotebook, cell: str) -> Any:
    return ast.literal_eval(nb.result(cell)["text/plain"])


def _lines(nb: ExecutedNotebook, cell: str) -> list[str]:
    return nb.stream(cell).splitlines()


def _alive_actors(address: str) -> list[tuple[str, str]]:
    return [(a["class_name"], a["actor_id"]) for a in list_actors(address, detail=True) if a["state"] != "DEAD"]


def _pids_with_env(name: str, value: str) -> list[int]:
    """Processes whose environment has ``name=value`` (a kernel and whatever it started)."""
    entry = f"{name}={value}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:  # gone, or not ours to read
            continue
    return pids


# ---- 02: parallel patterns ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["driver", "client"])
def test_parallel_patterns_notebook(demo_cluster: Cluster, mode: str) -> None:
    address = demo_cluster.address if mode == "driver" else demo_cluster.client_address
    nb = _run("02-parallel-patterns.ipynb", {"NBRAY_ADDRESS": address}, demo_cluster.address)

    assert _errors(nb) == {"error": "RayTaskError(ValueError)"}  # only the cell that demonstrates a failure
    resources = _value(nb, "setup")
    assert (resources["CPU"], resources["sensor"]) == (2.0, 1.0)

    # fan-out / fan-in
    assert _lines(nb, "map_reduce") == [f"sum of squares below one million: {sum(i * i for i in range(10**6))}"]

    # ray.wait hands results over as they finish, not in the order the tasks were submitted
    durations = re.search(r"for s in (\([^)]*\))", nb.cells["wait"].source)
    assert durations, "the wait cell submits `simulate.remote(s) for s in (...)`"
    submitted = list(ast.literal_eval(durations.group(1)))
    assert submitted != sorted(submitted)
    assert _value(nb, "wait") == sorted(submitted)
    assert [line.split(", ")[1] for line in _lines(nb, "wait")] == [
        "2 still running", "1 still running", "0 still running"]

    assert _value(nb, "nested") == [sum(x * x for x in range(i, i + 4)) for i in (0, 4, 8)]

    # the put array reaches every task as the same read-only stored object
    stats = _value(nb, "put")
    assert [s[0] for s in stats] == [0, 1, 2, 3]
    assert all(abs(mean - 0.5) < 0.01 and writeable is False for _, mean, writeable in stats), stats
    assert _lines(nb, "put_once") == ["1 stored copy of 16 MB, in the store: True"]
    ref_html = nb.result("put_once")["text/html"]
    assert "16,000,192 bytes" in ref_html and "ready (shared memory)" in ref_html

    pool_lines = _lines(nb, "actor_pool")
    assert pool_lines[0] == "words per sentence: [4, 5, 3, 3]"
    per_actor = ast.literal_eval(pool_lines[1].split(": ", 1)[1])
    assert len(per_actor) == 2 and sum(n for n, _ in per_actor) == 4 and all(n >= 1 for n, _ in per_actor)

    # a failed task: original type, and the remote traceback names the task and the error
    error = nb.error("error")
    assert "task parse_price() failed" in error.evalue
    assert "Traceback (most recent call last)" in error.evalue
    assert "could not convert string to float: '12.50 each'" in error.evalue
    assert _lines(nb, "error_caught") == [
        "caught RayTaskError(ValueError)", """cause: ValueError("could not convert string to float: 'free'")"""]

    cancel_lines = _lines(nb, "cancel")
    assert cancel_lines[0] == "still running after 1 s: True"
    match = re.fullmatch(r"TaskCancelledError (\d+\.\d) s after ray.cancel", cancel_lines[1])
    assert match and float(match.group(1)) < 10, cancel_lines

    resource_lines = dict(line.split(":", 1) for line in _lines(nb, "resources"))
    assert ast.literal_eval(resource_lines["num_cpus=2"].strip()) == {"CPU": 2.0}
    assert ast.literal_eval(resource_lines["sensor"].strip()) == {"CPU": 1.0, "sensor": 1.0}

    pg_lines = _lines(nb, "placement_group")
    assert pg_lines[0] == "placement group: CREATED"
    assert ast.literal_eval(pg_lines[1]) == [(0, {"CPU": 1.0}), (1, {"CPU": 1.0})]

    # streamed items arrive one by one while the generator task still runs
    arrivals = [re.fullmatch(r"(\d+\.\d+) s: batch \[(\d) (\d) (\d)\]", line) for line in _lines(nb, "streaming")]
    assert all(arrivals) and len(arrivals) == 4, _lines(nb, "streaming")
    times = [float(m.group(1)) for m in arrivals if m]
    assert [m.groups()[1:] for m in arrivals if m] == [(str(i),) * 3 for i in range(4)]
    assert times == sorted(times) and times[-1] - times[0] > 0.4, times

    # widgets: the progress bar ends full and green; the task graph holds the notebook's tasks
    assert nb.result("progress")["text/plain"].startswith("ProgressSummary(done=10, failed=0, total=10,")
    bars = [m["state"] for m in nb.widget_states().values() if m["model_name"] == "IntProgressModel"]
    assert [(b["value"], b["max"], b["bar_style"]) for b in bars] == [(10, 10, "success")]
    graph = nb.widget_of("task_graph")
    assert graph["model_name"] == "AnyModel" and graph["state"]["num_tasks"] >= 40
    assert "<svg" in graph["state"]["svg"]
    states = _value(nb, "task_states")
    assert states["FAILED"] == 3 and states["FINISHED"] >= 40, states  # 2 parse errors + the cancelled task

    # the last cell disconnected: the notebook's actors and placement group are gone
    wait_for_condition(lambda: not _alive_actors(demo_cluster.address), timeout=LEAK_TIMEOUT_S,
                       message="the notebook's actors die when it disconnects")
    assert {pg["state"] for pg in list_placement_groups(demo_cluster.address, detail=True)} <= {"REMOVED"}


# ---- 03: working against a remote cluster --------------------------------------------------------------


@pytest.fixture
def kernel_tmpdir() -> Iterator[str]:
    """A session-file root of its own (short: it holds Unix sockets)."""
    path = tempfile.mkdtemp(prefix="nbray-nb03-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("cluster_source", ["own-cluster", "NBRAY_CLIENT_ADDRESS"])
def test_remote_cluster_notebook(demo_cluster: Cluster, kernel_tmpdir: str, cluster_source: str) -> None:
    if cluster_source == "own-cluster":
        env = {"NBRAY_TMPDIR": kernel_tmpdir, "NBRAY_CLIENT_ADDRESS": ""}
    else:
        env = {"NBRAY_CLIENT_ADDRESS": demo_cluster.client_address}
    shm_before = set(shm_files())
    nb = _run("03-remote-cluster.ipynb", env)

    assert _errors(nb) == {}
    address = _lines(nb, "cluster")[0].removeprefix("client server: ")
    assert re.fullmatch(r"nbray://[\d.]+:\d+", address), address
    if cluster_source == "NBRAY_CLIENT_ADDRESS":
        assert address == env["NBRAY_CLIENT_ADDRESS"]
    context = nb.result("connect")["text/plain"]
    assert context.startswith("RayContext(") and "CPUs=2.0" in context and "GPUs=2.0" in context
    resources = _value(nb, "resources")
    assert (resources["CPU"], resources["GPU"]) == (2.0, 2.0)

    match = re.search(r"in worker process (\d+) \(this kernel: (\d+)\)", nb.stream("task"))
    assert match and match.group(1) != match.group(2), nb.stream("task")

    # %%remote: resources, the value of the last expression, and assigned variables coming back
    assert _lines(nb, "remote_cpus") == ["mean computed on the cluster with {'CPU': 2.0}"]
    assert nb.result("remote_cpus")["text/plain"] == "50.5"
    assert nb.result("mean_back")["text/plain"] == "50.5"

    # --session keeps one remote namespace from cell to cell
    assert "same process as the previous cell: True" in nb.stream("session_step")
    assert _value(nb, "session_step") == [1]
    assert _value(nb, "session_step_again") == [1, 2]

    status = nb.stream("status")
    assert re.search(r"^[0-9a-f]{12}\s+[\d.]+\s+\d+/2\s+\d+/2\s", status, re.M), status
    assert re.search(r"^lab\s+ALIVE\s+[0-9a-f]{12}\s+num_cpus=1.0\s+3\s", status, re.M), status

    # GPUs: each GPU task sees the devices it was given, concurrent ones different devices
    gpu = re.fullmatch(r"GPU ids \[(\d)\], CUDA_VISIBLE_DEVICES=(\d)", nb.stream("gpu_cell").strip())
    assert gpu and gpu.group(1) == gpu.group(2), nb.stream("gpu_cell")
    assert _lines(nb, "gpu_actors") == ["trainer with GPU ids [0]: CUDA_VISIBLE_DEVICES=0",
                                        "trainer with GPU ids [1]: CUDA_VISIBLE_DEVICES=1"]

    view = nb.widget_of("cluster_view")
    assert view["model_name"] == "VBoxModel"
    header = nb.children(view)[0]
    assert "1 node(s)" in header["state"]["value"]
    gpu_bars = [m["state"] for m in nb.descendants(view)
                if m["model_name"] == "FloatProgressModel" and m["state"]["description"] == "GPU"]
    assert [b["max"] for b in gpu_bars] == [2.0]

    cleanup = _lines(nb, "cleanup")
    assert cleanup[0] == "Disconnected from the nbray cluster (closed sessions: lab)."
    if cluster_source == "own-cluster":
        # the notebook's Cluster.shutdown() checked its own leaks; the kernel is gone too
        assert cleanup[1:] == ["local cluster stopped, nothing left running"]
        wait_for_condition(lambda: not _pids_with_env("NBRAY_TMPDIR", kernel_tmpdir), timeout=LEAK_TIMEOUT_S,
                           message="no process of the notebook's cluster outlives it")
    else:
        # a cluster the notebook did not start keeps running, without the notebook's actors
        assert cleanup[1:] == []
        demo_cluster.wait_for_nodes(timeout=LEAK_TIMEOUT_S)
        wait_for_condition(lambda: not _alive_actors(demo_cluster.address), timeout=LEAK_TIMEOUT_S,
                           message="the session and trainer actors are gone")
    assert set(shm_files()) <= shm_before
