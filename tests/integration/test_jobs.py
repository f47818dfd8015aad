"""The Jobs API through real processes: a head with a dashboard, the SDK, the REST routes, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbray.job_submission import JobStatus, JobSubmissionClient
from nbray.runtime_env import packaging
from nbray.testing import Cluster, wait_for_condition
from tests.dashboard.conftest import DashboardClient

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


class Head:
    def __init__(self, cluster: Cluster, url: str, token: bytes) -> None:
        self.cluster = cluster
        self.url = url
        self.token = token
        self.http = DashboardClient(url, token)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # Packages no job uses any more go soon after (see test_job_with_working_dir_and_py_modules).
    cluster = Cluster(system_config={"runtime_env_package_grace_ms": 300})
    try:
        node = cluster.add_node(num_cpus=2, include_dashboard=True, dashboard_port=0,
                                object_store_memory=96 * 1024 * 1024)
        yield Head(cluster, node.extra["dashboard_url"], node.token)
    finally:
        cluster.shutdown()


@pytest.fixture
def client(head: Head) -> JobSubmissionClient:
    # No NBRAY_AUTH_TOKEN: the token is found through the local session, as for `nbray status`.
    assert "NBRAY_AUTH_TOKEN" not in os.environ
    return JobSubmissionClient(head.url)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    return True


def _logs_match(client: JobSubmissionClient, sid: str, pattern: str, timeout: float = 30) -> re.Match[str]:
    found: list[re.Match[str]] = []

    def check() -> bool:
        m = re.search(pattern, client.get_job_logs(sid))
        if m:
            found.append(m)
        return m is not None

    wait_for_condition(check, timeout=timeout)
    return found[0]


def test_job_succeeds_as_a_driver(client: JobSubmissionClient, tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(
        "import os, nbray\n"
        "nbray.init()\n"
        "print('answer', nbray.get(nbray.remote(lambda x: x + 1).remote(41)))\n"
        "print('env', os.environ['GREETING'], os.environ['NBRAY_JOB_SUBMISSION_ID'])\n")
    started = time.monotonic()
    sid = client.submit_job(entrypoint=f"echo hello from the job; python {script}",
                            runtime_env={"env_vars": {"GREETING": "hi"}}, metadata={"owner": "tests"})
    wait_for_condition(lambda: client.get_job_status(sid) != JobStatus.PENDING, timeout=30)
    to_running = time.monotonic() - started
    assert client.wait_until_done(sid, 60) == JobStatus.SUCCEEDED
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 0 and info.submission_id == sid and info.metadata == {"owner": "tests"}
    assert info.start_time and info.end_time and info.end_time >= info.start_time
    logs = client.get_job_logs(sid)
    assert "hello from the job" in logs
    assert "answer 42" in logs  # it ran a task on the cluster
    assert f"env hi {sid}" in logs
    assert info.log_path and info.log_path.endswith(f"logs/job-driver-{sid}.log")
    print(f"submit -> not PENDING: {to_running * 1000:.0f} ms")


def test_failing_job(client: JobSubmissionClient) -> None:
    sid = client.submit_job(entrypoint="echo about to fail >&2; exit 3")
    assert client.wait_until_done(sid, 30) == JobStatus.FAILED
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 3
    assert "exit code 3" in (info.message or "")
    assert "about to fail" in client.get_job_logs(sid)  # stderr goes to the log too


def test_stop_kills_the_process_tree(client: JobSubmissionClient) -> None:
    sid = client.submit_job(entrypoint="sleep 300 & echo child=$!; echo parent=$$; wait")
    m = _logs_match(client, sid, r"child=(\d+)\s+parent=(\d+)")
    child, parent = int(m.group(1)), int(m.group(2))
    assert _pid_alive(child) and _pid_alive(parent)
    assert client.get_job_status(sid) == JobStatus.RUNNING
    assert client.stop_job(sid) is True, client.get_job_info(sid)
    assert client.wait_until_done(sid, 30) == JobStatus.STOPPED
    wait_for_condition(lambda: not _pid_alive(child) and not _pid_alive(parent), timeout=15)
    assert client.stop_job(sid) is False  # already ended


def test_tail_follows_the_log(client: JobSubmissionClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    sid = client.submit_job(entrypoint=f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second")

    async def follow() -> list[str]:
        chunks: list[str] = []
        async for chunk in client.tail_job_logs(sid):
            chunks.append(chunk)
            if "first" in "".join(chunks) and not gate.exists():
                # The first line arrived while the job still runs; now let it finish.
                assert client.get_job_status(sid) == JobStatus.RUNNING
                gate.touch()
        return chunks

    chunks = asyncio.run(asyncio.wait_for(follow(), 60))
    text = "".join(chunks)
    assert text.index("first") < text.index("second")
    assert client.get_job_status(sid) == JobStatus.SUCCEEDED


def test_routes_need_the_token(head: Head) -> None:
    http = head.http
    for method, path in [("GET", "/api/jobs/"), ("POST", "/api/jobs/"), ("GET", "/api/jobs/x"),
                         ("GET", "/api/jobs/x/logs"), ("GET", "/api/jobs/x/logs/tail"), ("POST", "/api/jobs/x/stop"),
                         ("DELETE", "/api/jobs/x"), ("PUT", "/api/packages/gcs/a.zip"),
                         ("GET", "/api/packages/gcs/a.zip"), ("GET", "/api/version")]:
        body = b'{"entrypoint": "touch /tmp/nbray-should-not-exist"}' if method in ("POST", "PUT") else None
        assert http.request(method, path, token=None, body=body).status == 401, (method, path)
        assert http.request(method, path, token=b"\x01" * 32, body=body).status == 403, (method, path)
        if method not in ("GET",):
            # Writes from a browser are refused even with the token.
            assert http.request(method, path, body=body, headers={"Origin": "http://evil.example"}).status == 405
    assert not os.path.exists("/tmp/nbray-should-not-exist")
    assert http.get("/api/jobs/..%2F..%2Fetc").status == 400
    assert http.get("/api/jobs/a.b").status == 404  # no route: ids have no dots
    assert http.get("/api/jobs/no-such-job").status == 404
    assert http.request("POST", "/api/jobs/", body=b"not json").status == 400
    assert http.request("POST", "/api/jobs/", body=b'{"entrypoint": ""}').status == 400
    try:
        oversized = http.request("POST", "/api/jobs/", body=b"x" * (2 * 1024 * 1024)).status
    except (BrokenPipeError, ConnectionResetError):
        oversized = 413  # refused from the headers, before the body was read
    assert oversized == 413


def test_unknown_job_raises(client: JobSubmissionClient) -> None:
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_info("no-such-job")
    with pytest.raises(RuntimeError, match="404"):
        client.stop_job("no-such-job")
    with pytest.raises(ValueError):
        client.get_job_info("../etc")


def test_list_and_delete(client: JobSubmissionClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    done = client.submit_job(entrypoint="true", submission_id="list-done")
    running = client.submit_job(entrypoint=f"while [ ! -e {gate} ]; do sleep 0.05; done")
    with pytest.raises(RuntimeError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id="list-done")
    assert client.wait_until_done(done, 30) == JobStatus.SUCCEEDED
    ids = {j.submission_id for j in client.list_jobs()}
    assert {done, running} <= ids
    with pytest.raises(RuntimeError, match="409"):
        client.delete_job(running)
    log_path = client.get_job_info(done).log_path
    assert log_path and os.path.exists(log_path)
    assert client.delete_job(done) is True
    assert done not in {j.submission_id for j in client.list_jobs()}
    assert not os.path.exists(log_path)
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_status(done)
    gate.touch()
    assert client.wait_until_done(running, 30) == JobStatus.SUCCEEDED


def test_packages(head: Head) -> None:
    http = head.http
    data = packaging.pack_directory(str(ROOT / "nbray" / "job_submission"))
    name = packaging.uri_of(data).split("://", 1)[1]
    assert http.get(f"/api/packages/gcs/{name}").status == 404
    assert http.request("PUT", f"/api/packages/gcs/{name}", body=data).status == 200
    assert http.get(f"/api/packages/gcs/{name}").status == 200
    # Stored where drivers store theirs, so node agents fetch it by its URI.
    from nbray.rpc.blocking import BlockingClient

    with BlockingClient(head.cluster.address, head.token, role="cli", timeout_s=10.0) as gcs:
        class Gcs:
            def call(self, method: str, request: object) -> object:
                return gcs.call("GcsService." + method, request)

        assert packaging.fetch_package(Gcs(), "gcs://" + name) == data
    other = packaging.uri_of(b"other").split("://", 1)[1]
    assert http.request("PUT", f"/api/packages/gcs/{other}", body=data).status == 400  # content does not match
    assert http.get(f"/api/packages/gcs/{other}").status == 404
    assert http.request("PUT", "/api/packages/gcs/_nbray_pkg_abc.zip", body=b"PK\x03\x04data").status == 400
    assert http.request("PUT", "/api/packages/s3/x.zip", body=b"x").status == 400
    assert http.request("PUT", "/api/packages/gcs/a..zip", body=b"x").status == 400


def _project(root: Path) -> Path:
    """A job's working_dir (a module, a data file, the entrypoint) and a py_modules package beside it."""
    proj = root / "proj"
    proj.mkdir()
    (proj / "helper.py").write_text("VALUE = 'from helper'\n")
    (proj / "data.txt").write_text("payload-123\n")
    (proj / "main.py").write_text(
        "import os, nbray, helper, extmod\n"
        "print('driver', helper.VALUE, extmod.NAME, open('data.txt').read().strip())\n"
        "nbray.init()\n"
        "@nbray.remote\n"
        "def task():\n"
        "    import helper, extmod\n"
        "    return helper.VALUE, extmod.NAME, open('data.txt').read().strip()\n"
        "print('task', nbray.get(task.remote()))\n")
    ext = root / "libs" / "extmod"
    ext.mkdir(parents=True)
    (ext / "__init__.py").write_text("NAME = 'extmod-ok'\n")
    (root / "elsewhere").mkdir()
    return proj


def test_job_with_working_dir_and_py_modules(head: Head, client: JobSubmissionClient, tmp_path: Path) -> None:
    _project(tmp_path)
    # The submitter runs elsewhere and reaches only the dashboard; paths are relative to its directory.
    code = ("from nbray.job_submission import JobSubmissionClient as C; "
            f"print(C({head.url!r}).submit_job(entrypoint='python main.py', "
            "runtime_env={'working_dir': '../proj', 'py_modules': ['../libs/extmod']}))")
    env = {k: v for k, v in os.environ.items() if k != "NBRAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    assert client.wait_until_done(sid, 90) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
    logs = client.get_job_logs(sid)
    assert "driver from helper extmod-ok payload-123" in logs
    assert "task ('from helper', 'extmod-ok', 'payload-123')" in logs  # the job's env reached the task
    sent = client.get_job_info(sid).runtime_env
    assert packaging.is_package_uri(sent["working_dir"]) and all(map(packaging.is_package_uri, sent["py_modules"]))
    # The job's supervisor (a detached actor) held its packages; the job over, they are deleted.
    for uri in [sent["working_dir"], *sent["py_modules"]]:
        name = uri.split("://", 1)[1]
        wait_for_condition(lambda name=name: not client.package_exists("gcs", name), timeout=30)


def test_cli_working_dir(head: Head, tmp_path: Path) -> None:
    _project(tmp_path)
    env_json = json.dumps({"py_modules": ["libs/extmod"]})
    proc = subprocess.run(
        [sys.executable, "-m", "nbray.scripts.cli", "job", "submit", "--working-dir", "proj", "--runtime-env-json",
         env_json, "--", "python", "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=90,
        env={**os.environ, "NBRAY_ADDRESS": head.url, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "task ('from helper', 'extmod-ok', 'payload-123')" in proc.stdout


def test_bad_working_dir_fails_before_uploading(client: JobSubmissionClient, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(client, "upload_package", lambda protocol, name, data: sent.append(name))
    before = len(client.list_jobs())
    with pytest.raises(ValueError, match="does not exist"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(tmp_path / "missing")})
    big = tmp_path / "big"
    big.mkdir()
    (big / "weights.bin").write_bytes(b"x" * 5000)
    ok_module = tmp_path / "okmod"
    ok_module.mkdir()
    (ok_module / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="more than the limit"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(ok_module), "py_modules": [str(big)],
                                                          "config": {"max_package_bytes": 1000}})
    assert sent == [] and len(client.list_jobs()) == before
    with pytest.raises(ValueError, match="unknown field"):
        client.submit_job(entrypoint="true", runtime_env={"workdir": str(big)})


def _cli(head: Head, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "job", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "NBRAY_ADDRESS": head.url})


def test_cli(head: Head, client: JobSubmissionClient, tmp_path: Path) -> None:
    ok = _cli(head, "submit", "--submission-id", "cli-ok", "--", "echo", "from the cli")
    assert ok.returncode == 0, ok.stderr
    assert "from the cli" in ok.stdout
    bad = _cli(head, "submit", "--", "exit 4")
    assert bad.returncode == 1 and "FAILED" in bad.stderr
    usage = _cli(head, "submit", "--no-wait")
    assert usage.returncode == 2 and "entrypoint is required" in usage.stderr

    gate = tmp_path / "gate"
    bg = _cli(head, "submit", "--no-wait", "--submission-id", "cli-bg", "--",
              f"echo started; while [ ! -e {gate} ]; do sleep 0.05; done")
    assert bg.returncode == 0, bg.stderr
    wait_for_condition(lambda: client.get_job_status("cli-bg") == JobStatus.RUNNING, timeout=30)
    status = _cli(head, "status", "cli-bg")
    assert status.returncode == 0 and "RUNNING" in status.stdout
    _logs_match(client, "cli-bg", "started")
    assert "started" in _cli(head, "logs", "cli-bg").stdout
    stop = _cli(head, "stop", "cli-bg")
    assert stop.returncode == 0 and "STOPPED" in stop.stdout, stop.stdout + stop.stderr
    assert "cli-ok" in _cli(head, "list").stdout
    assert _cli(head, "delete", "cli-ok").returncode == 0
    missing = _cli(head, "status", "cli-ok")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_job_outlives_the_submitting_client(head: Head, client: JobSubmissionClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    code = ("import sys; from nbray.job_submission import JobSubmissionClient as C; "
            f"print(C({head.url!r}).submit_job(entrypoint='while [ ! -e {gate} ]; do sleep 0.05; done; echo done'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    wait_for_condition(lambda: client.get_job_status(sid) == JobStatus.RUNNING, timeout=30)
    gate.touch()
    assert client.wait_until_done(sid, 30) == JobStatus.SUCCEEDED
    assert "done" in client.get_job_logs(sid)


def test_logs_of_a_job_on_another_node(head: Head, client: JobSubmissionClient, tmp_path: Path) -> None:
    other = head.cluster.add_node(num_cpus=1, resources={"jobnode": 1}, object_store_memory=64 * 1024 * 1024)
    gate = tmp_path / "gate"
    sid = client.submit_job(entrypoint=f"echo remote-first; while [ ! -e {gate} ]; do sleep 0.05; done; "
                                       "echo remote-second", entrypoint_resources={"jobnode": 1})
    wait_for_condition(lambda: client.get_job_status(sid) == JobStatus.RUNNING, timeout=30)
    info = client.get_job_info(sid)
    assert info.driver_node_id == other.node_id.hex()
    _logs_match(client, sid, "remote-first")
    gate.touch()
    assert client.wait_until_done(sid, 30) == JobStatus.SUCCEEDED
    assert re.search(r"remote-first\s+remote-second", client.get_job_logs(sid))
    tail = "".join(client.iter_job_logs(sid))
    assert tail.index("remote-first") < tail.index("remote-second")
    assert client.delete_job(sid) is True


def test_logs_of_a_job_on_a_node_with_its_own_session_dir(head: Head, client: JobSubmissionClient) -> None:
    """The supervisor's node keeps its files under another temp dir: the dashboard cannot read the log file."""
    from nbray.node import launcher

    cluster = head.cluster
    temp_root = tempfile.mkdtemp(prefix="nbj")  # short: the node's socket paths live under it
    other = launcher.start_worker_node(config=cluster.config, gcs_address=cluster.address, token=head.token,
                                       num_cpus=1, resources={"own_session": 1},
                                       object_store_memory=64 * 1024 * 1024, temp_dir=temp_root,
                                       parent_pid=os.getpid())
    cluster.worker_nodes.append(other)  # so the fixture's leak check covers it
    try:
        cluster.wait_for_nodes()
        assert os.path.dirname(other.session_dir) != os.path.dirname(cluster.session_dir)
        gate = Path(temp_root) / "gate"
        sid = client.submit_job(entrypoint=f"echo own-first; while [ ! -e {gate} ]; do sleep 0.05; done; "
                                           "echo own-second", entrypoint_resources={"own_session": 1})
        wait_for_condition(lambda: client.get_job_status(sid) == JobStatus.RUNNING, timeout=60)
        info = client.get_job_info(sid)
        assert info.driver_node_id == other.node_id.hex()
        assert info.log_path and info.log_path.startswith(other.session_dir)
        _logs_match(client, sid, "own-first")  # read through the supervisor while it runs
        assert "own-first" in _cli(head, "logs", sid).stdout

        async def follow() -> str:
            text = ""
            async for chunk in client.tail_job_logs(sid):
                text += chunk
                if "own-first" in text and not gate.exists():
                    gate.touch()
            return text

        text = asyncio.run(asyncio.wait_for(follow(), 60))
        assert text.index("own-first") < text.index("own-second")
        assert client.get_job_status(sid) == JobStatus.SUCCEEDED
        # The supervisor is gone: the copy it left in the GCS answers now.
        assert re.search(r"own-first\s+own-second", client.get_job_logs(sid))
        assert "own-second" in _cli(head, "logs", sid).stdout
        assert client.delete_job(sid) is True
    finally:
        cluster.remove_node(other)
        shutil.rmtree(temp_root, ignore_errors=True)
