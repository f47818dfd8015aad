"""The panel's actions and Jobs on a real Ray head with token authentication.

A head of its own started with ``RAY_AUTH_MODE=token``; the Jupyter server
reads ``RAY_AUTH_TOKEN``. Cancel reaches the task's owner (the driver, or
the worker that submitted a nested task), Kill the GCS, both with the token;
Jobs come from Ray's Jobs REST API; without the token the panel says so.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.testing import wait_for_condition
from tests.raybackend.panel_server import Server, jupyter_servers
from tests.raybackend.ray_cluster import RAY_PYTHON, RayHead, start_ray_head
from tests.raybackend.ray_kernel import line_driver

pytestmark = [pytest.mark.ray_backend, pytest.mark.timeout(300)]

RAY_TOKEN = secrets.token_hex(32)
TOKEN_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN}
# Ray drains a node for up to 30 s on SIGTERM; this head serves no one by then.
HEAD_ENV = {**TOKEN_ENV, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
PENDING_STATES = {"PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
                  "PENDING_OBJ_STORE_MEM_AVAIL", "PENDING_ARGS_FETCH"}

# Two CPUs: "running_spin" and "inner_spin" (submitted by "outer", which waits
# on it) hold them, so "queued_spin" waits for a CPU. "wait NAME" answers how
# ray.get(NAME) ended.
DRIVER = r'''
import sys, time, ray
ray.init(address=sys.argv[1], namespace="panel-actions", log_to_driver=False)

@ray.remote
def spin():
    for _ in range(6000):
        time.sleep(0.05)

@ray.remote
def outer():
    return ray.get(spin.options(name="inner_spin").remote())

@ray.remote
class Victim:
    def ping(self):
        return "pong"

victim = Victim.options(name="victim").remote()
assert ray.get(victim.ping.remote()) == "pong"
assert ray.get(ray.remote(lambda: 1).options(name="quick").remote()) == 1
refs = {"running_spin": spin.options(name="running_spin").remote(), "outer": outer.remote()}
print("ready", ray.get_runtime_context().get_job_id(), flush=True)
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["queue"]:
        refs["queued_spin"] = spin.options(name="queued_spin").remote()
        print("queued", flush=True)
    elif words[:1] == ["wait"]:
        try:
            ray.get(refs[words[1]], timeout=120)
            print(words[1], "ok", flush=True)
        except Exception as exc:
            print(words[1], type(exc).__name__, flush=True)
'''

JOB_SCRIPT = ("import time\nprint('panel job started', flush=True)\n"
              "for i in range(3000):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n")


@pytest.fixture(scope="module")
def token_head() -> Iterator[RayHead]:
    if not RAY_PYTHON.exists():
        pytest.fail(f"{RAY_PYTHON} is missing: build it with scripts/setup_ray_env.sh")
    head = start_ray_head(num_cpus=2, extra_env=HEAD_ENV)
    try:
        yield head
    finally:
        head.stop()
        assert not head.processes(), "the Ray head left processes behind"


@pytest.fixture(scope="module")
def servers(token_head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """A server with Ray's token and one without."""
    with jupyter_servers(token_head, tmp_path_factory.mktemp("jupyter-ray-token"), [RAY_TOKEN, None]) as started:
        yield started


@pytest.fixture(scope="module")
def server(servers: list[Server]) -> Server:
    return servers[0]


class Driver:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def ask(self, line: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()


@pytest.fixture(scope="module")
def driver(token_head: RayHead) -> Iterator[Driver]:
    with line_driver([str(RAY_PYTHON), "-c", DRIVER, token_head.address], token_head.temp_dir,
                     {**os.environ, **TOKEN_ENV}) as proc:
        yield Driver(proc)


def tasks_by_name(server: Server) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in server.get("api/tasks?limit=1000")["tasks"]}


def wait_states(server: Server, wanted: dict[str, set[str]], message: str) -> dict[str, dict[str, Any]]:
    def reached() -> dict[str, dict[str, Any]]:
        rows = tasks_by_name(server)
        ok = all(name in rows and rows[name]["state"] in states for name, states in wanted.items())
        return rows if ok else {}

    result: dict[str, dict[str, Any]] = wait_for_condition(reached, timeout=60, retry_interval_ms=250,
                                                           message=message)
    return result


def test_cancel_from_the_panel_reaches_the_owner(server: Server, driver: Driver) -> None:
    rows = wait_states(server, {"running_spin": {"RUNNING"}, "inner_spin": {"RUNNING"}},
                       "both CPUs are held by running tasks")
    assert driver.ask("queue") == ["queued"]
    rows = wait_states(server, {"queued_spin": PENDING_STATES}, "the third task waits for a CPU")

    # A queued task, owned by the driver: the owner drops it.
    reply = server.post(f"api/tasks/{rows['queued_spin']['task_id']}/cancel")
    assert reply == {"task_id": rows["queued_spin"]["task_id"], "found": True, "state": rows["queued_spin"]["state"]}
    assert driver.ask("wait queued_spin") == ["queued_spin", "TaskCancelledError"]

    # A running task with force: its worker is ended, the owner (driver) sees it cancelled.
    server.post(f"api/tasks/{rows['running_spin']['task_id']}/cancel?force=1")
    assert driver.ask("wait running_spin") == ["running_spin", "TaskCancelledError"]

    # A nested task: its owner is the worker running "outer", whose ray.get fails.
    server.post(f"api/tasks/{rows['inner_spin']['task_id']}/cancel?force=1")
    outcome = driver.ask("wait outer")
    assert outcome[0] == "outer" and "TaskCancelledError" in outcome[1], outcome
    wait_states(server, {"queued_spin": {"FAILED"}, "running_spin": {"FAILED"}, "inner_spin": {"FAILED"}},
                "Ray records the cancelled tasks as failed")

    # A finished task: nothing to do, and the panel is told so.
    quick = rows["quick"]
    assert server.post(f"api/tasks/{quick['task_id']}/cancel") == {"task_id": quick["task_id"], "found": False,
                                                                   "state": "FINISHED"}
    status, body = server.request("POST", f"api/tasks/{'ab' * 24}/cancel")
    assert status == 404 and "no task" in body["error"]


def test_force_cancel_of_an_actor_task_is_refused_and_kill_works_with_the_token(server: Server,
                                                                               driver: Driver) -> None:
    ping = wait_states(server, {"Victim.ping": {"FINISHED"}}, "the actor's call is recorded")["Victim.ping"]
    status, body = server.request("POST", f"api/tasks/{ping['task_id']}/cancel?force=1")
    assert status == 409 and "force-cancel an actor task" in body["error"]
    actor = next(a for a in server.get("api/actors")["actors"] if a["name"] == "victim")
    assert server.post(f"api/actors/{actor['actor_id']}/kill") == {"killed": actor["actor_id"]}

    def dead() -> bool:
        row = next(a for a in server.get("api/actors")["actors"] if a["actor_id"] == actor["actor_id"])
        return bool(row["state"] == "DEAD")

    wait_for_condition(dead, timeout=30, retry_interval_ms=200, message="Ray reports the actor dead")


def submit_job(head: RayHead, entrypoint: str) -> str:
    """Submit through Ray's own Jobs REST API, with the token."""
    request = urllib.request.Request(f"http://127.0.0.1:{head.dashboard_port}/api/jobs/", method="POST",
                                     data=json.dumps({"entrypoint": entrypoint}).encode(),
                                     headers={"Authorization": f"Bearer {RAY_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        submission_id: str = json.loads(r.read())["submission_id"]
    return submission_id


def test_jobs_list_logs_and_stop(server: Server, token_head: RayHead, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "panel_job.py"
    script.write_text(JOB_SCRIPT)
    sid = submit_job(token_head, f"{RAY_PYTHON} -u {script}")

    def listed() -> dict[str, Any] | None:
        rows = {r["submission_id"]: r for r in server.get("api/submissions")}
        row = rows.get(sid)
        return row if row is not None and row["status"] == "RUNNING" else None

    row = wait_for_condition(listed, timeout=90, retry_interval_ms=300, message="the job runs in the panel's list")
    assert row["entrypoint"].endswith("panel_job.py") and row["start_time"] > 0
    assert all(r["submission_id"] for r in server.get("api/submissions")), "drivers are not submitted jobs"
    assert server.get(f"api/submissions/{sid}")["submission_id"] == sid

    text, offset = "", 0

    def read_until(needle: str) -> bool:
        nonlocal text, offset
        chunk = server.get(f"api/submissions/{sid}/logs?offset={offset}")
        assert chunk["offset"] == offset + len(chunk["logs"].encode())
        text, offset = text + chunk["logs"], chunk["offset"]
        return needle in text

    wait_for_condition(lambda: read_until("tick 3\n"), timeout=60, retry_interval_ms=300,
                       message="the job's log reaches the panel")
    assert "panel job started\ntick 0\ntick 1\n" in text, text[:500]

    assert server.post(f"api/submissions/{sid}/stop") == {"stopped": True}
    wait_for_condition(lambda: server.get(f"api/submissions/{sid}")["status"] == "STOPPED", timeout=60,
                       retry_interval_ms=300, message="Ray reports the job STOPPED")

    def rest_of_log() -> dict[str, Any] | None:
        chunk: dict[str, Any] = server.get(f"api/submissions/{sid}/logs?offset={offset}")
        return chunk if chunk["done"] else None

    final = wait_for_condition(rest_of_log, timeout=30, retry_interval_ms=300, message="the log is complete")
    assert "panel job started" not in final["logs"], "the offset is honoured"
    assert server.get(f"api/submissions/{sid}/logs?offset={final['offset']}") == {
        "logs": "", "offset": final["offset"], "done": True}
    status, body = server.request("GET", "api/submissions/raysubmit_nosuchjob/logs")
    assert status == 404, body


def test_without_the_token_the_panel_says_what_to_set(servers: list[Server]) -> None:
    server, bare = servers
    assert server.get("clusters")["error"] is None
    clusters = bare.get("clusters")
    assert clusters["connected"] is None
    assert "refused the request (401" in clusters["error"] and "set RAY_AUTH_TOKEN" in clusters["error"]
    status, body = bare.request("GET", "api/nodes")
    assert status == 503 and "set RAY_AUTH_TOKEN" in body["error"] and "Traceback" not in body["error"]
    status, body = bare.request("GET", "api/submissions")
    assert status == 503 and "set RAY_AUTH_TOKEN" in body["error"]
    status, body = bare.request("POST", f"api/tasks/{'ab' * 24}/cancel")
    assert status == 503 and "set RAY_AUTH_TOKEN" in body["error"]
