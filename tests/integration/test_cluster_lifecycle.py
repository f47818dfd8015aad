"""Starting, joining, securing and stopping clusters."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbray
from nbray.testing import Cluster, assert_no_leaks, descendant_pids, wait_for_condition

pytestmark = pytest.mark.timeout(90)


def run_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())


def run_driver(code, env=None, timeout=60):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ.copy())


def test_init_starts_and_shutdown_stops_everything():
    started = time.perf_counter()
    ctx = nbray.init(num_cpus=2)
    from nbray.api import _state

    try:
        @nbray.remote
        def one():
            return 1

        assert nbray.get(one.remote()) == 1
        assert time.perf_counter() - started < 10
        assert nbray.is_initialized()
        assert ctx.address_info["gcs_address"] == ctx.address
        pids = descendant_pids(list(_state.node.pids().values()))
        assert len(pids) >= 4  # gcs, raylet, zygote, at least one worker
    finally:
        pids = descendant_pids(list(_state.node.pids().values()))
        nbray.shutdown()
    assert not nbray.is_initialized()
    assert_no_leaks(pids)


def test_init_twice_raises_unless_ignored():
    nbray.init(num_cpus=1)
    try:
        with pytest.raises(RuntimeError, match="init twice"):
            nbray.init()
        assert nbray.init(ignore_reinit_error=True) is not None
    finally:
        nbray.shutdown()


def test_context_manager_shuts_down():
    with nbray.init(num_cpus=1):
        assert nbray.is_initialized()
    assert not nbray.is_initialized()


def test_local_mode_is_rejected():
    with pytest.raises(RuntimeError, match="local_mode"):
        nbray.init(local_mode=True)


def test_wrong_address_raises_connection_error_quickly():
    start = time.time()
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        nbray.init(address="127.0.0.1:9")
    assert time.time() - start < 10


def test_auto_without_cluster_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("NBRAY_TMPDIR", str(tmp_path))
    with pytest.raises(ConnectionError, match="Could not find any running nbray instance"):
        nbray.init(address="auto")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """One `nbray start --head` for the tests that only connect drivers and CLI commands to it."""
    tmp_path = tmp_path_factory.mktemp("cli-head")
    env = os.environ.copy()
    env["NBRAY_TMPDIR"] = str(tmp_path / "t")
    result = run_cli("start", "--head", "--port", "0", "--num-cpus", "2", "--num-gpus", "1",
                     "--resources", '{"accel": 2}', "--object-store-memory", str(100 * 1024 * 1024),
                     "--no-include-dashboard", "--ray-client-server-port", "-1", env=env)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "t" / "nbray"
    address, session_dir = (root / "nbray_current_cluster").read_text().split()
    pids = set()
    for name in os.listdir(session_dir):
        if name.endswith(".json"):
            with open(os.path.join(session_dir, name)) as f:
                pids |= set(json.load(f).get("pids", {}).values())
    pids = descendant_pids(list(pids))
    yield address, session_dir, env
    pids |= descendant_pids(list(pids))
    stop = run_cli("stop", env=env)
    assert stop.returncode == 0, stop.stderr
    assert_no_leaks(pids)


def test_cli_cluster_serves_several_drivers_and_outlives_them(head):
    address, session_dir, env = head
    code = (
        "import nbray\n"
        f"nbray.init(address={address!r})\n"
        "@nbray.remote(resources={'accel': 1})\n"
        "def f(x): return x * 2\n"
        "print('RESULT', sum(nbray.get([f.remote(i) for i in range(10)])))\n"
    )
    drivers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for _ in range(2)]
    for d in drivers:
        out, err = d.communicate(timeout=60)
        assert "RESULT 90" in out, err
    # auto-discovery on the head's machine, after the first drivers left
    auto = run_driver("import nbray\nnbray.init(address='auto')\nprint('CPUS', nbray.cluster_resources()['CPU'])",
                      env=env)
    assert "CPUS 2.0" in auto.stdout, auto.stderr


def test_cli_status_shows_usage_and_pending_demand(head):
    address, session_dir, env = head
    code = (
        "import nbray, time\n"
        f"nbray.init(address={address!r})\n"
        "@nbray.remote(num_gpus=4)\n"
        "def never(): pass\n"
        "ref = never.remote()\n"
        "print('SUBMITTED', flush=True)\n"
        "time.sleep(30)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert driver.stdout.readline().strip() == "SUBMITTED"

        def demand_shown():
            status = run_cli("status", "--address", address, env=env)
            return status.returncode == 0 and "'GPU': 4.0" in status.stdout and "infeasible" in status.stdout \
                and status.stdout

        out = wait_for_condition(demand_shown, timeout=20)
        assert "0/2 CPU" in out and "0/1 GPU" in out and "0/2 accel" in out
    finally:
        driver.kill()
        driver.wait()


def test_token_file_is_private_and_wrong_token_is_refused(head):
    address, session_dir, env = head
    token_path = os.path.join(session_dir, "auth_token")
    mode = stat.S_IMODE(os.stat(token_path).st_mode)
    assert mode == 0o600
    token = Path(token_path).read_text().strip()
    assert len(token) == 64  # 256 bits
    bad_env = dict(env, NBRAY_AUTH_TOKEN="00" * 32)
    result = run_driver(f"import nbray\nnbray.init(address={address!r})", env=bad_env)
    assert result.returncode != 0
    assert "AuthenticationError" in result.stderr and "refused the cluster token" in result.stderr
    good_env = dict(env, NBRAY_AUTH_TOKEN=token)
    ok = run_driver(f"import nbray\nnbray.init(address={address!r})\nprint('OK')", env=good_env)
    assert "OK" in ok.stdout, ok.stderr


def test_driver_with_other_version_is_refused_naming_both(head):
    address, session_dir, env = head
    result = run_driver(f"import nbray\nnbray.init(address={address!r})",
                        env=dict(env, NBRAY_TESTING_VERSION_OVERRIDE="0.0.1"))
    assert result.returncode != 0
    assert "VersionMismatchError" in result.stderr
    assert "0.0.1" in result.stderr and nbray.__version__ in result.stderr


def test_listeners_bind_to_loopback(head):
    address, session_dir, env = head
    assert address.startswith("127.0.0.1:")
    out = subprocess.run(["cat", "/proc/net/tcp"], capture_output=True, text=True).stdout
    gcs_port = int(address.rsplit(":", 1)[1])
    local = [line.split()[1] for line in out.splitlines()[1:] if line.split()[3] == "0A"]  # LISTEN
    ours = [a for a in local if int(a.split(":")[1], 16) == gcs_port]
    assert ours and all(a.split(":")[0] == "0100007F" for a in ours)


# ---- --temp-dir and failed starts ------------------------------------------------------------------------


def processes_under(root):
    """Pids of live processes whose command line names a path under `root` (GCS, raylet, zygote, workers)."""
    needle = str(root).encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle in f.read():
                    found.add(int(name))
        except OSError:
            continue
    return found


def recorded_pids(root):
    """Pids written into the session files under `root`."""
    pids = set()
    for path in root.glob("session_*/*.json"):
        pids |= {int(p) for p in json.loads(path.read_text()).get("pids", {}).values()}
    return pids


def test_temp_dir_holds_every_file_and_finds_the_cluster_again(tmp_path):
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path / "default"))
    temp = tmp_path / "custom"
    started = run_cli("start", "--head", "--port", "0", "--num-cpus", "1", "--temp-dir", str(temp),
                      "--no-include-dashboard", "--ray-client-server-port", "-1", env=env)
    pids = set()
    try:
        assert started.returncode == 0, started.stderr
        address, session_dir = (temp / "nbray_current_cluster").read_text().split()
        assert os.path.dirname(session_dir) == str(temp)
        # No session file went to the default root: only the user's registry, which points at this root.
        assert os.listdir(tmp_path / "default") == [f"nbray-clusters-{os.getuid()}"]
        pids = descendant_pids(list(recorded_pids(temp)))
        status = run_cli("status", "--temp-dir", str(temp), env=env)
        assert status.returncode == 0 and "1 node_" in status.stdout, status.stderr
        elsewhere = run_cli("status", "--temp-dir", str(tmp_path / "elsewhere"), env=env)
        assert elsewhere.returncode != 0 and "under" in elsewhere.stderr  # another root: not this cluster
        found = run_cli("status", env=env)  # no root given: the registry finds it
        assert found.returncode == 0 and "1 node_" in found.stdout, found.stderr
        token = run_cli("get-auth-token", "--temp-dir", str(temp), env=env)
        assert token.returncode == 0 and token.stdout.strip() == (Path(session_dir) / "auth_token").read_text().strip()
        listed = run_cli("list", "nodes", "--temp-dir", str(temp), env=env)
        assert listed.returncode == 0 and "1 nodes shown" in listed.stdout, listed.stderr
    finally:
        stop = run_cli("stop", "--temp-dir", str(temp), env=env)
    assert stop.returncode == 0 and "Stopped" in stop.stdout, stop.stderr
    assert not (temp / "nbray_current_cluster").exists()
    assert_no_leaks(pids)


def test_a_start_that_fails_after_starting_processes_stops_them(tmp_path):
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path / "default"))
    temp = tmp_path / "custom"
    (temp / "nbray_current_cluster").mkdir(parents=True)  # recording the cluster will fail
    started = run_cli("start", "--head", "--port", "0", "--num-cpus", "1", "--temp-dir", str(temp),
                      "--no-include-dashboard", "--ray-client-server-port", "-1", env=env)
    assert started.returncode == 1 and "Is a directory" in started.stderr, started.stderr
    assert "Traceback" not in started.stderr
    assert recorded_pids(temp)  # the raylet (and GCS) had started ...
    assert_no_leaks(recorded_pids(temp) | processes_under(temp))  # ... and were stopped


@pytest.fixture
def spawned(monkeypatch):
    """Pids of every process the launcher starts in this test."""
    from nbray.node import launcher

    pids = set()
    spawn = launcher._spawn

    def recording_spawn(*args, **kwargs):
        proc = spawn(*args, **kwargs)
        pids.add(proc.pid)
        return proc

    monkeypatch.setattr(launcher, "_spawn", recording_spawn)
    return pids


def test_cluster_that_fails_after_its_head_started_leaves_nothing(tmp_path, monkeypatch, spawned):
    monkeypatch.setenv("NBRAY_TMPDIR", str(tmp_path))
    # The raylet refuses the labels during start-up, after the GCS was started.
    with pytest.raises(RuntimeError, match="raylet failed to start"):
        Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "labels": {"zone": {"not": "a string"}}})
    assert len(spawned) == 2  # GCS and raylet
    assert_no_leaks(spawned | processes_under(tmp_path))


def test_cluster_with_a_bogus_option_starts_nothing(tmp_path, monkeypatch, spawned):
    monkeypatch.setenv("NBRAY_TMPDIR", str(tmp_path))
    with pytest.raises(TypeError, match="bogus_option"):
        Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "bogus_option": 1})
    assert not spawned
    with Cluster(initialize_head=True, head_node_args={"num_cpus": 1}) as cluster:
        head = set(spawned)
        with pytest.raises(TypeError, match="include_dashboard"):
            cluster.add_node(num_cpus=1, include_dashboard=True)  # a head-only option on a worker node
        assert cluster.worker_nodes == [] and spawned == head
