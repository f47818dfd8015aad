"""Two nodes as distinct hosts: separate network namespaces joined by a veth pair.

The head runs in one namespace at 10.77.x.1, the worker node in another at
10.77.x.2, each with its own temp directory, so nothing can travel over a
shared loopback, a shared socket path or shared memory: tasks, arguments,
results and large objects must cross the (virtual) network.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.timeout(180)


def _can_use_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "needs the 'ip' command (iproute2)"
    probe = f"nbray-probe-{uuid.uuid4().hex[:6]}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create network namespaces here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _can_use_netns()


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture
def namespaces(tmp_path):
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"nbray-a-{tag}", f"nbray-b-{tag}"
    subnet = 10 + int(tag[:2], 16) % 200
    ip_a, ip_b = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
    veth_a, veth_b = f"nbva{tag}", f"nbvb{tag}"
    sh("ip", "netns", "add", ns_a)
    sh("ip", "netns", "add", ns_b)
    try:
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        sh("ip", "link", "set", veth_a, "netns", ns_a)
        sh("ip", "link", "set", veth_b, "netns", ns_b)
        for ns, dev, ip in ((ns_a, veth_a, ip_a), (ns_b, veth_b, ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield (ns_a, ip_a, str(tmp_path / "host-a")), (ns_b, ip_b, str(tmp_path / "host-b"))
    finally:
        for ns in (ns_a, ns_b):
            sh("ip", "netns", "del", ns, check=False)


def in_ns(ns: str, temp: str, *cmd: str, env: dict[str, str] | None = None,
          timeout: int = 120) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, NBRAY_TMPDIR=temp, **(env or {}))
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def cli(ns: str, temp: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return in_ns(ns, temp, sys.executable, "-m", "nbray.scripts.cli", *args, env=env)


def run_two_hosts(namespaces, flags: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start a head in one namespace and a worker node in the other with `flags`, run a driver (with `env`)
    that moves tasks and large objects between them; returns `nbray start --head`'s result."""
    (ns_a, ip_a, temp_a), (ns_b, ip_b, temp_b) = namespaces
    os.makedirs(temp_a, exist_ok=True)
    os.makedirs(temp_b, exist_ok=True)
    started = cli(ns_a, temp_a, "start", "--head", "--node-ip-address", ip_a, "--port", "0", "--num-cpus", "1",
                  "--no-include-dashboard", "--ray-client-server-port", "-1", *flags)
    assert started.returncode == 0, started.stderr
    root_a = os.path.join(temp_a, "nbray")
    address, session_dir = open(os.path.join(root_a, "nbray_current_cluster")).read().split()
    assert address.startswith(ip_a + ":")
    token = open(os.path.join(session_dir, "auth_token")).read().strip()
    try:
        joined = cli(ns_b, temp_b, "start", "--address", address, "--node-ip-address", ip_b, "--num-cpus", "1",
                     "--resources", json.dumps({"host_b": 1}), *flags, env={"NBRAY_AUTH_TOKEN": token})
        assert joined.returncode == 0, joined.stderr
        driver = textwrap.dedent(f"""
            import numpy as np, nbray
            nbray.init(address={address!r})
            nodes = [n for n in nbray.nodes() if n["Alive"]]
            print("IPS", sorted(n["NodeManagerAddress"] for n in nodes))

            @nbray.remote(resources={{"host_b": 1}})
            def on_b(x):
                import socket
                return x.sum(), nbray.get_runtime_context().get_node_id(), np.full(10_000_000, 3.0)

            arg = nbray.put(np.ones(5_000_000))          # 40 MB on host A, read on host B
            total, node, back = nbray.get(on_b.remote(arg))  # 80 MB produced on B, read on A
            print("SUM", total, "BACK", back.sum())
            mine = nbray.get_runtime_context().get_node_id()
            print("DIFFERENT", node != mine)
        """)
        result = in_ns(ns_a, temp_a, sys.executable, "-c", driver, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"IPS ['{ip_a}', '{ip_b}']" in result.stdout
        assert "SUM 5000000.0 BACK 30000000.0" in result.stdout
        assert "DIFFERENT True" in result.stdout
        # the two hosts share no session files
        assert not os.path.exists(os.path.join(temp_b, "nbray", os.path.basename(session_dir)))
    finally:
        cli(ns_b, temp_b, "stop", "--temp-dir", os.path.join(temp_b, "nbray"))
        cli(ns_a, temp_a, "stop", "--temp-dir", root_a)
    return started


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_head_and_worker_in_separate_network_namespaces_over_tls(namespaces, tmp_path):
    (_, ip_a, _), (_, ip_b, _) = namespaces
    certs = str(tmp_path / "certs")
    made = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "tls", "init", certs, "--host", ip_a,
                           "--host", ip_b], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    files = {name: os.path.join(certs, name) for name in ("ca.crt", "server.crt", "server.key")}
    flags = ["--use-tls", "--tls-server-cert", files["server.crt"], "--tls-server-key", files["server.key"],
             "--tls-ca-cert", files["ca.crt"]]
    driver_env = {"NBRAY_USE_TLS": "1", "NBRAY_TLS_SERVER_CERT": files["server.crt"],
                  "NBRAY_TLS_SERVER_KEY": files["server.key"], "NBRAY_TLS_CA_CERT": files["ca.crt"]}
    started = run_two_hosts(namespaces, flags, env=driver_env)
    assert "without TLS" not in started.stderr


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_head_and_worker_in_separate_network_namespaces(namespaces):
    """Plaintext between hosts is refused unless explicitly allowed, and then warned about."""
    (ns_a, ip_a, temp_a), _ = namespaces
    refused = cli(ns_a, temp_a, "start", "--head", "--node-ip-address", ip_a, "--port", "0",
                  "--no-include-dashboard", "--ray-client-server-port", "-1")
    assert refused.returncode != 0
    assert f"refusing to listen on {ip_a} without TLS" in refused.stderr
    assert "--allow-insecure-network" in refused.stderr
    # a driver binds its own port on the node's address: it needs the opt-out too
    started = run_two_hosts(namespaces, ["--allow-insecure-network"], env={"NBRAY_ALLOW_INSECURE_NETWORK": "1"})
    assert started.stderr.count("without TLS (NBRAY_ALLOW_INSECURE_NETWORK=1)") == 1, started.stderr
