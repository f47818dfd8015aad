"""The JupyterLab panel's routes on a real Ray head: a Jupyter server from the main
venv with the extension set to Ray, a driver from the Ray venv, requests through
the relay with the Jupyter token."""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.testing import wait_for_condition
from tests.raybackend.panel_server import Server, jupyter_servers
from tests.raybackend.ray_cluster import RAY_PYTHON, RayHead
from tests.raybackend.ray_kernel import line_driver

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]

LATENCY_ROUNDS = 5

DRIVER = r'''
import sys, time, ray
ray.init(address=sys.argv[1], namespace="panel", log_to_driver=False)

@ray.remote
class Keeper:
    def ping(self):
        return "pong"

@ray.remote
def child(x):
    return x * 2

@ray.remote
def parent(x):
    return ray.get(child.remote(x)) + 1

@ray.remote
def tick(duration_s):
    time.sleep(duration_s)
    return time.time()

keeper = Keeper.options(name="panel_keeper", lifetime="detached").remote()
assert ray.get(keeper.ping.remote()) == "pong"
assert ray.get(parent.remote(3)) == 7
print("ready", ray.get_runtime_context().get_job_id(), flush=True)
for line in sys.stdin:
    name, duration_s = line.split()
    ref = tick.options(name=name).remote(float(duration_s))
    print("done", name, ref.task_id().hex(), ray.get(ref), flush=True)
'''


def run_tick(driver: subprocess.Popen[str], name: str, duration_s: float) -> tuple[str, float]:
    """Run a task named ``name``; its id and the time it ended (its own clock)."""
    assert driver.stdin is not None and driver.stdout is not None
    driver.stdin.write(f"{name} {duration_s}\n")
    driver.stdin.flush()
    words = driver.stdout.readline().split()
    assert words[:2] == ["done", name], words
    return words[2], float(words[3])


@pytest.fixture(scope="module")
def server(ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with jupyter_servers(ray_head, tmp_path_factory.mktemp("jupyter-ray"), [None]) as (started,):
        yield started


@pytest.fixture(scope="module")
def driver(ray_head: RayHead) -> Iterator[subprocess.Popen[str]]:
    with line_driver([str(RAY_PYTHON), "-c", DRIVER, ray_head.address], ray_head.temp_dir) as proc:
        yield proc


def test_nodes_actors_tasks_and_jobs_through_the_relay(server: Server, driver: subprocess.Popen[str]) -> None:
    [node] = server.get("api/nodes")["nodes"]
    assert node["state"] == "ALIVE" and node["is_head_node"]
    assert node["cpu"]["total"] == 2.0 and node["memory"]["total"] > 0
    assert node["object_store"]["capacity_bytes"] > 0

    def tasks_recorded() -> dict[str, Any]:
        rows = {t["func_or_class_name"].split(".")[-1]: t for t in server.get("api/tasks")["tasks"]}
        names = {"parent", "child", "ping"}
        return rows if names <= set(rows) and all(rows[n]["state"] == "FINISHED" for n in names) else {}

    tasks = wait_for_condition(tasks_recorded, timeout=30, retry_interval_ms=250, message="Ray recorded the tasks")
    assert tasks["child"]["parent_task_id"] == tasks["parent"]["task_id"]
    assert tasks["parent"]["end_time_ms"] >= tasks["parent"]["start_time_ms"] > 0
    assert tasks["ping"]["type"] == "ACTOR_TASK"
    detail = server.get(f"api/tasks/{tasks['child']['task_id']}")
    assert detail["events"][-1]["state"] == "FINISHED"

    actors = {a["name"]: a for a in server.get("api/actors")["actors"]}
    assert actors["panel_keeper"]["class_name"] == "Keeper" and actors["panel_keeper"]["state"] == "ALIVE"

    jobs = server.get("api/jobs")["jobs"]
    assert any(j["status"] == "RUNNING" and "-c" in j["entrypoint"] for j in jobs)
    summary = server.get("api/cluster")
    assert summary["backend"] == "ray" and summary["data_edges"] is False and "Ray 2.60" in summary["version"]
    assert summary["nodes"] == {"alive": 1, "dead": 0}
    clusters = server.get("clusters")
    assert clusters["connected"] is not None and clusters["error"] is None


def test_kill_through_the_relay_and_cancel_of_a_finished_task(server: Server, driver: subprocess.Popen[str]) -> None:
    actor = next(a for a in server.get("api/actors")["actors"] if a["name"] == "panel_keeper")
    status, body = server.request("POST", f"api/actors/{actor['actor_id']}/kill")
    assert status == 200, body

    def dead() -> bool:
        row = next(a for a in server.get("api/actors")["actors"] if a["actor_id"] == actor["actor_id"])
        return row["state"] == "DEAD" and "ray.kill" in (row["death_cause"] or "")

    wait_for_condition(dead, timeout=30, retry_interval_ms=200, message="Ray reports the actor dead")
    # Cancel of running and queued tasks: test_panel_actions_on_ray.py.
    task = next(t for t in server.get("api/tasks")["tasks"] if t["state"] == "FINISHED")
    status, body = server.request("POST", f"api/tasks/{task['task_id']}/cancel")
    assert (status, body) == (200, {"task_id": task["task_id"], "found": False, "state": "FINISHED"})


def test_time_from_a_task_finishing_to_the_relay_listing_it(server: Server, driver: subprocess.Popen[str]) -> None:
    delays_ms = []
    for i in range(LATENCY_ROUNDS):
        name = f"latency_{i}"
        _, finished = run_tick(driver, name, 0.0)

        def shown(name: str = name) -> bool:
            rows = server.get("api/tasks?func=tick&limit=100")["tasks"]
            return any(r["name"] == name and r["state"] == "FINISHED" for r in rows)

        wait_for_condition(shown, timeout=30, retry_interval_ms=20, message=f"{name} in the task list")
        delays_ms.append((time.time() - finished) * 1000)
    print(f"\nRay task finished -> shown in the relayed task list: median {statistics.median(delays_ms):.0f} ms, "
          f"all {[round(d) for d in delays_ms]} ms")
    assert statistics.median(delays_ms) < 10_000


def test_the_lab_panel_renders_the_ray_node(ray_head: RayHead, server: Server, driver: subprocess.Popen[str],
                                            tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headless Chromium on JupyterLab with the panel set to Ray (skipped where Chromium is missing)."""
    from tests.browser import lab
    for mark in lab.MARKS:
        if mark.name == "skipif" and mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    [node_row] = server.get("api/nodes")["nodes"]
    node_id = node_row["node_id"]
    monkeypatch.setenv("NBRAY_PANEL_BACKEND", "ray")
    monkeypatch.setenv("RAY_DASHBOARD_ADDRESS", f"http://127.0.0.1:{ray_head.dashboard_port}")
    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    with lab.jupyter_lab(tmp_path) as env:
        lab.open_panel(env.page, env.url)
        panel = env.page.locator("#nbray-panel")
        node = panel.locator(f".nbray-node[data-node-id='{node_id}']")
        lab.expect(node).to_have_attribute("data-state", "ALIVE", timeout=30_000)
        lab.expect(node.locator(".nbray-usage-cpu")).to_be_visible()
        lab.expect(panel.locator(".nbray-edges-note")).to_contain_text("Ray records no data edges",
                                                                       timeout=30_000)
        env.page.screenshot(path=os.path.join(lab.ARTIFACTS, "panel-on-ray.png"))
        latencies = browser_latencies_s(env.page, driver)

        # The Jobs section on Ray's Jobs API: a job submitted with Ray's REST API, its log, Stop.
        sid = submit_ray_job(ray_head, "echo ray-job-says-hello; sleep 600")
        row = panel.locator(f'.nbray-job[data-submission-id="{sid}"]')
        lab.expect(row).to_have_attribute("data-status", "RUNNING", timeout=60_000)
        row.locator(".nbray-job-summary").click()
        lab.expect(row.locator(".nbray-job-logs")).to_contain_text("ray-job-says-hello", timeout=30_000)
        row.locator(".nbray-job-stop").click()
        lab.expect(row).to_have_attribute("data-status", "STOPPED", timeout=60_000)
    print(f"\nRay task finished -> drawn FINISHED in the panel (browser): median "
          f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"({', '.join(f'{x * 1000:.0f}' for x in latencies)} ms)")
    # Ray's owners report task events every second and the panel polls the head every second.
    assert statistics.median(latencies) < 10.0, latencies


def submit_ray_job(head: RayHead, entrypoint: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{head.dashboard_port}/api/jobs/", method="POST",
                                     data=json.dumps({"entrypoint": entrypoint}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        submission_id: str = json.loads(r.read())["submission_id"]
    return submission_id


NOTE_FINISHED_JS = """() => {
    window.__nbrayFinishedAt = {};
    const note = () => {
        for (const el of document.querySelectorAll('#nbray-panel .nbray-gnode[data-state=FINISHED]')) {
            const id = el.dataset.taskId;
            if (id && !(id in window.__nbrayFinishedAt)) window.__nbrayFinishedAt[id] = Date.now();
        }
    };
    note();
    new MutationObserver(note).observe(document.querySelector('#nbray-panel'),
        {subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
}"""


def browser_latencies_s(page: Any, driver: subprocess.Popen[str]) -> list[float]:
    """For tasks of several durations: seconds from the task's end (its own clock) to the page
    drawing it FINISHED (the page's clock; same machine), as tests/browser/test_panel.py measures nbray."""
    page.evaluate(NOTE_FINISHED_JS)
    out = []
    # Different durations land at different points of Ray's reporting and the panel's polling periods.
    for i, duration_s in enumerate((0.1, 0.27, 0.45, 0.63, 0.81, 0.99)):
        task_id, ended = run_tick(driver, f"drawn_{i}", duration_s)
        page.wait_for_function(f"() => window.__nbrayFinishedAt['{task_id}']", timeout=30_000)
        out.append(page.evaluate(f"() => window.__nbrayFinishedAt['{task_id}']") / 1000 - ended)
    return out
