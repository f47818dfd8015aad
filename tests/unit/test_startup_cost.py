"""What a process pays to start: lazy package names, the worker factory's preload,
starting the factory early, and what reading a process's table costs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nbray.common.config import Config
from nbray.node import cluster_processes, launcher
from nbray.raylet import zygote_process


def _python(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, **env))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_package_loads_none_of_the_api_until_a_name_is_used():
    out = _python(
        "import sys, nbray\n"
        "print(sorted(m for m in sys.modules if m.startswith('nbray')))\n"
        "from nbray.api import get\n"
        "assert nbray.get is get and nbray.remote_function.RemoteFunction is nbray.RemoteFunction\n"
        "assert nbray.util.placement_group is not None and nbray.exceptions.RayError\n"
        "assert {'get', 'init', 'ObjectRef'} <= set(dir(nbray))\n"
        "try:\n"
        "    nbray.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print('refused', exc)\n")
    # Cluster processes start as ``python -m nbray.<module>``: the package itself must cost nothing.
    assert out.splitlines()[0] == "['nbray', 'nbray._lazy', 'nbray._version']"
    assert "refused module 'nbray' has no attribute 'no_such_name'" in out


def test_the_worker_factory_preloads_what_workers_import_without_starting_threads():
    out = _python(
        "import gc, sys, threading\n"
        "from nbray.raylet import zygote\n"
        "zygote.preload()\n"
        "print(threading.active_count(), gc.get_freeze_count() > 0, "
        "all(m in sys.modules for m in zygote.PRELOADED_MODULES))\n")
    assert out.split() == ["1", "True", "True"]  # one thread: forking stays safe


def test_only_a_storage_that_may_exist_is_checked_before_the_gcs_starts():
    assert not launcher.storage_needs_checking("")  # SQLite in the new session directory
    assert not launcher.storage_needs_checking("  memory:// ")
    assert launcher.storage_needs_checking("/var/lib/nbray/gcs.sqlite")
    assert launcher.storage_needs_checking("sqlite:///x.sqlite")
    assert launcher.storage_needs_checking("redis://127.0.0.1:6379/0")
    assert launcher.storage_needs_checking("ftp://nowhere")  # refused by the check, naming it


def _raylet_argv(session_dir: str, node_id: bytes, config_json: str = "{}") -> list[str]:
    return ["--node-id", node_id.hex(), "--gcs-address", "127.0.0.1:1", "--node-ip", "127.0.0.1",
            "--session-dir", session_dir, "--config-json", config_json, "--port", "0"]


def _args_for(session_dir: str, node_id: bytes) -> list[str]:
    raylet_socket, log_socket = zygote_process.socket_paths(session_dir, node_id)
    return zygote_process.zygote_args(log_socket=log_socket, raylet_socket=raylet_socket, node_id=node_id,
                                      node_ip="127.0.0.1", gcs_address="127.0.0.1:1", session_dir=session_dir)


@pytest.fixture
def session_dir(tmp_path, monkeypatch):
    (tmp_path / "logs").mkdir()
    (tmp_path / "sockets").mkdir()
    monkeypatch.setenv("NBRAY_AUTH_TOKEN", "ab" * 32)
    yield str(tmp_path)
    leftover, zygote_process._early = zygote_process._early, None
    if leftover is not None:  # a failed test's
        leftover.discard()


def test_an_early_factory_is_taken_over_when_it_matches(session_dir):
    node_id = os.urandom(28)
    zygote_process.start_early(_raylet_argv(session_dir, node_id, '{"log_to_driver": false}'))
    config = Config.from_json('{"log_to_driver": false}')
    early = zygote_process.take_early(_args_for(session_dir, node_id), config)
    assert early is not None and early.proc.poll() is None
    early.discard()  # EOF on its control socket
    assert early.proc.returncode is not None
    assert zygote_process.take_early(_args_for(session_dir, node_id), config) is None  # taken once


@pytest.mark.parametrize("differs", ["args", "config"])
def test_an_early_factory_that_does_not_match_is_stopped(session_dir, differs):
    node_id = os.urandom(28)
    zygote_process.start_early(_raylet_argv(session_dir, node_id))
    early = zygote_process._early
    assert early is not None
    args = _args_for(session_dir, os.urandom(28) if differs == "args" else node_id)
    config = Config.from_json('{"log_to_driver": false}' if differs == "config" else "{}")
    assert zygote_process.take_early(args, config) is None
    assert early.proc.returncode is not None  # stopped and reaped


def test_no_early_factory_from_an_incomplete_command_line(session_dir, monkeypatch):
    zygote_process.start_early(["--node-id", "zz"])
    assert zygote_process._early is None
    monkeypatch.delenv("NBRAY_AUTH_TOKEN")
    zygote_process.start_early(_raylet_argv(session_dir, os.urandom(28)))
    assert zygote_process._early is None


def test_a_light_process_scan_reads_neither_command_lines_nor_environments():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env=dict(os.environ, NBRAY_SESSION_DIR="/s/one", X_NBRAY_SESSION_DIR="/s/two"))
    try:
        deadline = time.monotonic() + 10
        while (full := cluster_processes.read_process(child.pid)) is None or not full.argv[1:]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert full.env_session_dir == "/s/one" and full.argv[1] == "-c"
        light = cluster_processes.read_process(child.pid, markers=False)
        assert light is not None and light.argv == () and light.env_session_dir is None
        assert (light.ppid, light.sid, light.start_ticks) == (full.ppid, full.sid, full.start_ticks)
        assert child.pid in cluster_processes.scan_processes(markers=False)
    finally:
        child.kill()
        child.wait()


def test_the_driver_knows_the_jobs_variable_without_importing_the_jobs_package():
    from nbray import api
    from nbray.job_submission import common

    assert api.JOB_RUNTIME_ENV_VAR == common.JOB_RUNTIME_ENV_VAR


def test_a_failure_while_the_node_starts_stops_what_was_started(tmp_path):
    from nbray.testing import assert_no_leaks, processes_of_clusters_under

    calls = []

    def fail_while_starting():
        calls.append(processes_of_clusters_under(tmp_path))
        raise RuntimeError("the driver could not prepare")

    with pytest.raises(RuntimeError, match="could not prepare"):
        launcher.start_head(config=Config(), num_cpus=1, object_store_memory=80 * 1024 * 1024,
                            temp_dir=str(tmp_path), parent_pid=os.getpid(), while_starting=fail_while_starting)
    assert len(calls) == 1 and len(calls[0]) >= 2  # it ran while the GCS and the raylet were starting
    assert_no_leaks(calls[0] | processes_of_clusters_under(tmp_path))


def test_the_early_start_reads_flags_as_argparse_does():
    argv = ["--node-id", "ab", "--gcs-address=127.0.0.1:5", "--port", "0", "--session-dir", "/s", "--node-id", "cd"]
    assert zygote_process._flag_values(argv, ("--node-id", "--gcs-address", "--session-dir", "--node-ip")) == {
        "--node-id": "cd", "--gcs-address": "127.0.0.1:5", "--session-dir": "/s"}
    assert zygote_process._flag_values(["--node-id"], ("--node-id",)) == {}  # a flag without its value


def test_the_factory_inherits_its_control_socket_and_standard_streams_alone(session_dir):
    node_id = os.urandom(28)
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # as the raylet's ready pipe is
    stray = f"pipe:[{os.fstat(stray_w).st_ino}]"
    try:
        zygote_process.start_early(_raylet_argv(session_dir, node_id))
    finally:
        os.close(stray_r)
        os.close(stray_w)
    early = zygote_process._early
    assert early is not None
    deadline = time.monotonic() + 30
    while len(argv := open(f"/proc/{early.proc.pid}/cmdline").read().split("\0")) < 4:
        assert time.monotonic() < deadline  # until the new interpreter shows its command line
        time.sleep(0.01)
    control = int(argv[3])
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{early.proc.pid}/fd"))
    assert {0, 1, 2, control} <= set(fds)
    assert os.readlink(f"/proc/{early.proc.pid}/fd/1") == zygote_process.log_path(session_dir, node_id)
    assert stray not in {_fd_target(early.proc.pid, fd) for fd in fds}
    with pytest.raises(subprocess.TimeoutExpired):
        early.proc.wait(0.05)  # it waits for its raylet
    early.discard()
    zygote_process._early = None
    assert early.proc.returncode is not None


def _fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:  # a file the starting interpreter read and closed meanwhile
        return ""


def test_the_gcs_makes_version_4_uuids_without_the_uuid_module():
    import uuid

    from nbray.gcs.server import random_uuid4

    made = {random_uuid4() for _ in range(200)}
    assert len(made) == 200
    for raw in made:
        parsed = uuid.UUID(bytes=raw)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
