"""Clusters found on the head's machine by address or "auto" whatever --temp-dir they were started
with, and stops (`nbray stop`, `nbray.shutdown()`) that leave nothing running."""

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbray
from nbray.node import registry
from nbray.node.launcher import process_running
from nbray.testing import assert_no_leaks, descendant_pids, processes_of_clusters_under, wait_for_condition

pytestmark = pytest.mark.timeout(120)


def machine_env(base):
    """The environment of another process of the same user: same registry (NBRAY_TMPDIR), no token."""
    env = os.environ.copy()
    for name in ("NBRAY_AUTH_TOKEN", "NBRAY_AUTH_TOKEN_PATH", "NBRAY_ADDRESS"):
        env.pop(name, None)
    env["NBRAY_TMPDIR"] = str(base / "tmp")
    return env


def run_cli(env, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_driver(env, code, timeout=60):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def start_head(env, temp_dir, client_server_port=-1):
    """`nbray start --head --temp-dir temp_dir` on a free port; (GCS address, session dir)."""
    started = run_cli(env, "start", "--head", "--port", "0", "--num-cpus", "1", "--temp-dir", str(temp_dir),
                      "--no-include-dashboard", "--ray-client-server-port", str(client_server_port))
    assert started.returncode == 0, started.stderr
    address, session_dir = (temp_dir / "nbray_current_cluster").read_text().split()
    return address, session_dir


def stop_everything(env, base):
    """`nbray stop`, then check nothing of the clusters under `base` runs."""
    leftovers = processes_of_clusters_under(base)
    stopped = run_cli(env, "stop")
    assert_no_leaks(leftovers | processes_of_clusters_under(base))
    assert stopped.returncode == 0, stopped.stderr


# A task that starts a helper in its own process group: the raylet's kill of the
# worker's group misses it, so only a stop that reaps the cluster's sessions ends it.
# On SIGTERM the helper writes its marker file and exits: a stop that used only
# SIGKILL leaves no marker.
TRAP_HELPER = (
    "import signal, sys, time\n"
    "def on_term(*_):\n"
    "    open(sys.argv[1], 'w').write('TERM')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "open(sys.argv[1] + '.ready', 'w').close()\n"
    "time.sleep(300)\n"
)
SPAWN_HELPER = """
    import os, subprocess, sys, time, nbray
    nbray.init(address={address!r})

    @nbray.remote
    def spawn_helper(marker):
        pid = subprocess.Popen([sys.executable, "-c", {trap!r}, marker], preexec_fn=os.setpgrp).pid
        deadline = time.monotonic() + 30
        while not os.path.exists(marker + ".ready"):  # its SIGTERM handler is installed
            assert time.monotonic() < deadline, "the helper did not start"
            time.sleep(0.01)
        return pid

    print("HELPER", nbray.get(spawn_helper.remote({marker!r})))
"""


# A helper in a session of its own that ignores SIGTERM: once the worker that started
# it exits, nothing on the machine links it to the cluster any more.
DETACHED_HELPER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1] + '.ready', 'w').close()\n"
    "time.sleep(300)\n"
)


def start_helper(env, address, marker, detached=False):
    code = SPAWN_HELPER.format(address=address, trap=DETACHED_HELPER if detached else TRAP_HELPER,
                               marker=str(marker))
    if detached:
        code = code.replace("preexec_fn=os.setpgrp", "start_new_session=True")
    result = run_driver(env, code)
    assert "HELPER" in result.stdout, result.stderr
    return int(result.stdout.split("HELPER")[1].split()[0])


def plant_entry(base, name, data):
    """Write a registry entry as another process of the user would (a str: a corrupt one)."""
    directory = base / "tmp" / f"nbray-clusters-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return directory / name


def plant_dead_cluster(base, name, address, pid, client_server_address=""):
    """The session of a stopped cluster (with another token) and its leftover registry entry, whose
    pid now belongs to `pid`, a process that is not nbray's: lookups must skip it, stops spare `pid`."""
    session_dir = base / "dead-root" / f"session_{name}"
    session_dir.mkdir(parents=True)
    (session_dir / "auth_token").write_text("11" * 32 + "\n")
    os.chmod(session_dir / "auth_token", 0o600)
    info = {"gcs_address": address, "pids": {"gcs": pid}, "client_server_address": client_server_address}
    (session_dir / "cluster.json").write_text(json.dumps(info))
    return plant_entry(base, f"{name}.json", {
        "gcs_address": address, "session_dir": str(session_dir), "temp_root": str(base / "dead-root"),
        "role": "head", "pids": {"gcs": pid}, "started_by_pid": pid, "started_at_s": time.time() + 3600})


@pytest.fixture
def stale_entries(head):
    """Beside the live head, newer than it: a dead cluster with the same address, a dead one
    elsewhere, and a corrupt entry."""
    address, session_dir, env, base = head
    with open(os.path.join(session_dir, "cluster.json")) as f:
        client_address = json.load(f)["client_server_address"]
    suffix = os.urandom(3).hex()
    return [plant_dead_cluster(base, f"same_{suffix}", address, os.getpid(), client_address),
            plant_dead_cluster(base, f"newer_{suffix}", "127.0.0.1:1", os.getpid(), "127.0.0.1:2"),
            plant_entry(base, f"corrupt_{suffix}.json", "{not json")]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """One head started with its own --temp-dir, and the environment of other processes on its machine."""
    base = tmp_path_factory.mktemp("discovery")
    env = machine_env(base)
    address, session_dir = start_head(env, base / "head-root", client_server_port=0)
    try:
        yield address, session_dir, env, base
    finally:
        stop_everything(env, base)


def test_drivers_find_the_token_by_address_and_by_auto(head, stale_entries):
    address, _, env, _ = head
    by_address = run_driver(env, f"""
        import nbray
        nbray.init(address={address!r})

        @nbray.remote
        def double(x):
            return 2 * x

        print("RESULT", sum(nbray.get([double.remote(i) for i in range(5)])))
    """)
    assert "RESULT 20" in by_address.stdout, by_address.stderr
    auto = run_driver(env, "import nbray\nnbray.init(address='auto')\nprint('GCS', nbray.get_runtime_context().gcs_address)")
    assert f"GCS {address}" in auto.stdout, auto.stderr
    dead, corrupt = stale_entries[:2], stale_entries[2]
    assert not any(path.exists() for path in dead) and corrupt.exists()  # dropped; skipped


def test_a_notebook_client_on_the_head_machine_finds_the_token(head, stale_entries):
    _, session_dir, env, _ = head
    with open(os.path.join(session_dir, "cluster.json")) as f:
        client_address = json.load(f)["client_server_address"]
    client = run_driver(env, f"""
        import nbray
        nbray.init("nbray://{client_address}")
        print("RESULT", nbray.get(nbray.remote(lambda: 42).remote()))
    """)
    assert "RESULT 42" in client.stdout, client.stderr


def test_cli_commands_find_the_token_by_address(head, stale_entries):
    address, session_dir, env, _ = head
    status = run_cli(env, "status", "--address", address)
    assert status.returncode == 0 and "1 node_" in status.stdout, status.stderr
    listed = run_cli(env, "list", "nodes", "--address", address)
    assert listed.returncode == 0 and "nodes shown" in listed.stdout, listed.stderr
    with open(os.path.join(session_dir, "auth_token")) as f:
        token = f.read().strip()
    for args in (["--address", address], []):  # by address, and the newest head
        printed = run_cli(env, "get-auth-token", *args)
        assert printed.returncode == 0 and printed.stdout.strip() == token, printed.stderr


def test_a_wrong_token_in_the_environment_is_refused(head):
    address, _, env, _ = head
    wrong = dict(env, NBRAY_AUTH_TOKEN="00" * 32)
    driver = run_driver(wrong, f"import nbray\nnbray.init(address={address!r})")
    assert driver.returncode != 0
    assert "AuthenticationError" in driver.stderr and "refused the cluster token" in driver.stderr
    status = run_cli(wrong, "status", "--address", address)
    assert status.returncode == 1 and "refused the cluster token" in status.stderr
    with open(os.path.join(head[1], "cluster.json")) as f:
        client_address = json.load(f)["client_server_address"]
    client = run_driver(wrong, f"import nbray\nnbray.init('nbray://{client_address}')\nprint('CONNECTED')")
    assert client.returncode != 0 and "CONNECTED" not in client.stdout
    assert "AuthenticationError" in client.stderr, client.stderr
    assert run_cli(env, "status", "--address", address).returncode == 0  # the token it finds is the right one


def test_nodes_on_the_head_machine_join_with_or_without_a_temp_dir_of_their_own(head, stale_entries):
    address, session_dir, env, base = head
    same_root = run_cli(env, "start", "--address", address, "--num-cpus", "1")
    assert same_root.returncode == 0, same_root.stderr
    own_root = base / "node-root"
    joined = run_cli(env, "start", "--address", address, "--num-cpus", "1", "--temp-dir", str(own_root))
    assert joined.returncode == 0, joined.stderr

    def three_nodes():
        listed = run_cli(env, "list", "nodes", "--address", address)
        return listed.returncode == 0 and "3 nodes shown" in listed.stdout

    wait_for_condition(three_nodes, timeout=30, message="the head and both new nodes are listed")
    # The node given a --temp-dir keeps its files there, with a private copy of the token.
    sessions = [p for p in own_root.glob("session_2*") if not p.is_symlink()]
    assert len(sessions) == 1 and list(sessions[0].glob("node-*.json"))
    assert stat.S_IMODE(os.stat(sessions[0] / "auth_token").st_mode) == 0o600
    assert (sessions[0] / "auth_token").read_text() == (Path(session_dir) / "auth_token").read_text()


def nbray_command(env, *args, timeout=60):
    """The `nbray` console script installed beside this interpreter, as a user types it."""
    script = Path(sys.executable).parent / "nbray"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_stop_stops_the_clusters_of_every_temp_dir_and_returns_when_none_runs(tmp_path):
    env = machine_env(tmp_path)
    address_a, _ = start_head(env, tmp_path / "a")
    address_b, _ = start_head(env, tmp_path / "b")
    # Not nbray's, though a dead cluster's leftover entry names its pid: it must survive.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        plant_dead_cluster(tmp_path, "gone", "127.0.0.1:1", bystander.pid)
        markers = [tmp_path / "helper-a", tmp_path / "helper-b"]
        helpers = {start_helper(env, address_a, markers[0]), start_helper(env, address_b, markers[1])}
        running = processes_of_clusters_under(tmp_path)
        assert helpers <= running and bystander.pid not in running
        roots_seen = {tmp_path / "a", tmp_path / "b"}
        assert len(running) >= 2 * 3 + 2  # per cluster: GCS, raylet, zygote (+ workers), and the helpers
        stop = nbray_command(env, "stop")
        assert stop.returncode == 0 and "Stopped" in stop.stdout, stop.stderr
        still = {pid for pid in running if process_running(pid)}
        assert not still, f"running after nbray stop returned: {still}"
        assert not processes_of_clusters_under(tmp_path)
        assert all(m.read_text() == "TERM" for m in markers)  # a graceful stop: SIGTERM first
        assert bystander.poll() is None
        assert not any((root / "nbray_current_cluster").exists() for root in roots_seen)
        assert not os.listdir(tmp_path / "tmp" / f"nbray-clusters-{os.getuid()}")
        assert_no_leaks(running)
    finally:
        bystander.kill()
        bystander.wait()
        stop_everything(env, tmp_path)


def test_stop_with_a_temp_dir_and_force_kills_only_the_clusters_under_it(tmp_path):
    env = machine_env(tmp_path)
    address_a, _ = start_head(env, tmp_path / "a")
    address_b, _ = start_head(env, tmp_path / "b")
    try:
        marker = tmp_path / "helper-a"
        helper = start_helper(env, address_a, marker)
        in_a = processes_of_clusters_under(tmp_path / "a")
        in_b = processes_of_clusters_under(tmp_path / "b")
        assert in_a and in_b and helper in in_a
        stop = run_cli(env, "stop", "--temp-dir", str(tmp_path / "a"), "--force")
        assert stop.returncode == 0, stop.stderr
        assert not {pid for pid in in_a if process_running(pid)}
        assert not marker.exists()  # SIGKILL: the helper never saw a SIGTERM
        assert all(process_running(pid) for pid in in_b)
        status = run_cli(env, "status", "--address", address_b)  # B still serves, its token still found
        assert status.returncode == 0 and "1 node_" in status.stdout, status.stderr
        gone = run_cli(env, "status", "--address", address_a)
        assert gone.returncode != 0
    finally:
        stop_everything(env, tmp_path)


def test_stop_kills_a_detached_helper_that_ignores_sigterm_after_the_grace_period(tmp_path):
    env = machine_env(tmp_path)
    address, _ = start_head(env, tmp_path / "a")
    try:
        helper = start_helper(env, address, tmp_path / "helper", detached=True)
        running = processes_of_clusters_under(tmp_path)
        assert helper in running
        stop = run_cli(dict(env, NBRAY_STOP_GRACE_PERIOD_MS="1000"), "stop")
        assert stop.returncode == 0 and "needed SIGKILL" in stop.stdout, stop.stderr
        assert not process_running(helper)
        assert not {pid for pid in running if process_running(pid)}
    finally:
        stop_everything(env, tmp_path)


def test_shutdown_returns_after_every_process_of_its_cluster_exited(tmp_path, monkeypatch):
    monkeypatch.setenv("NBRAY_TMPDIR", str(tmp_path / "tmp"))  # this test's own registry
    ctx = nbray.init(num_cpus=1)
    from nbray.api import _state

    pids = set()
    try:
        address = ctx.address_info["gcs_address"]
        mine = [e for e in registry.entries() if e.gcs_address == address]
        assert [e.role for e in mine] == [registry.ROLE_LOCAL]
        # Another driver of the same user finds this driver's cluster and its token by address.
        other = run_driver(machine_env(tmp_path),
                           f"import nbray\nnbray.init(address={address!r})\nprint('CPUS', nbray.cluster_resources()['CPU'])")
        assert "CPUS 1.0" in other.stdout, other.stderr

        @nbray.remote
        def spawn_helper():
            import subprocess
            import sys

            return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                    preexec_fn=os.setpgrp).pid

        helper = nbray.get(spawn_helper.remote())
        pids = descendant_pids(list(_state.node.pids().values()))
        assert helper in pids and len(pids) >= 4  # GCS, raylet, zygote, worker, helper
    finally:
        nbray.shutdown()
    still = {pid for pid in pids if process_running(pid)}
    try:
        assert not still, f"running after shutdown() returned: {still}"
        assert not [e for e in registry.entries() if e.gcs_address == address]
    finally:
        assert_no_leaks(pids)
