"""A TLS cluster on loopback, started as a user would: ``nbray tls init``, then
``nbray start --head --use-tls ...`` and a second node, with objects between
the raylets sent over TCP (as between machines).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import nbray
from nbray.rpc import auth, tls
from nbray.rpc.handshake import MAGIC, connect_socket
from nbray.rpc.tls_certs import TlsFiles, init_directory
from nbray.testing import assert_no_leaks, descendant_pids

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.timeout(180)


@dataclass
class TlsCluster:
    certs: TlsFiles
    root: str
    gcs_address: str
    session_dir: str
    token: bytes
    info: dict[str, Any]
    env: dict[str, str]  # what a driver on this machine needs

    def tcp_listeners(self) -> list[tuple[str, int]]:
        """Every TCP port the cluster's processes listen on, with the process name."""
        pids = descendant_pids(list(all_pids(self.session_dir)))
        found = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                conns = proc.net_connections(kind="tcp")
                name = " ".join(proc.cmdline()[1:4])
            except psutil.Error:
                continue
            found += [(name, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
        return found


def all_pids(session_dir: str) -> set[int]:
    pids: set[int] = set()
    for name in os.listdir(session_dir):
        if name == "cluster.json" or (name.startswith("node-") and name.endswith(".json")):
            with open(os.path.join(session_dir, name)) as f:
                pids.update(int(p) for p in json.load(f).get("pids", {}).values())
    return pids


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def cert_flags(certs: TlsFiles) -> list[str]:
    return ["--use-tls", "--tls-server-cert", certs.server_cert, "--tls-server-key", certs.server_key,
            "--tls-ca-cert", certs.ca_cert]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    base = tmp_path_factory.mktemp("tls")
    made = cli("tls", "init", str(base / "certs"), "--host", "localhost", "--host", "127.0.0.1",
               env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    certs = TlsFiles(str(base / "certs"), *(str(base / "certs" / f)
                                            for f in ("ca.crt", "ca.key", "server.crt", "server.key")),
                     ("localhost", "127.0.0.1"))
    root = str(base / "root")
    # The node's processes get TLS from the flags; only the transfer setting comes from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBRAY_TLS") and k != tls.USE_TLS_ENV}
    env.update(NBRAY_TMPDIR=str(base), NBRAY_SAME_HOST_OBJECT_TRANSFER_OVER_UNIX="0")
    head = cli("start", "--head", "--port", "0", "--num-cpus", "1", "--temp-dir", root, "--dashboard-port", "0",
               "--ray-client-server-port", "0", *cert_flags(certs), env=env)
    assert head.returncode == 0, head.stderr
    session_dir = next(os.path.join(root, n) for n in os.listdir(root) if n.startswith("session_2"))
    with open(os.path.join(session_dir, "cluster.json")) as f:
        info = json.load(f)
    with open(os.path.join(session_dir, auth.TOKEN_FILE_NAME)) as f:
        token = f.read().strip()
    pids: set[int] = set()
    try:
        joined = cli("start", "--address", info["gcs_address"], "--num-cpus", "1", "--temp-dir", root,
                     "--resources", json.dumps({"second": 1}), *cert_flags(certs),
                     env={**env, auth.TOKEN_ENV: token})
        assert joined.returncode == 0, joined.stderr
        driver_env = {**env, **certs.environment(), auth.TOKEN_ENV: token}
        yield TlsCluster(certs, root, info["gcs_address"], session_dir, auth.decode_token(token, "test"), info,
                         driver_env)
    finally:
        pids = descendant_pids(list(all_pids(session_dir)))
        stopped = cli("stop", "--temp-dir", root, env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert_no_leaks(pids)


def run_driver(cluster: TlsCluster, code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env or cluster.env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_tasks_actors_and_a_cross_node_transfer_over_tls(tls_cluster: TlsCluster) -> None:
    out = run_driver(tls_cluster, f"""
        import numpy as np, nbray
        nbray.init(address={tls_cluster.gcs_address!r})
        assert len([n for n in nbray.nodes() if n["Alive"]]) == 2

        @nbray.remote(resources={{"second": 1}})
        def on_second(x):
            return float(x.sum()), nbray.get_runtime_context().get_node_id(), np.full(3_000_000, 2.0)

        arg = nbray.put(np.ones(3_000_000))                 # 24 MB from the head to the second node
        total, node, back = nbray.get(on_second.remote(arg))  # 24 MB back
        print("SUM", total, back.sum(), node != nbray.get_runtime_context().get_node_id())

        @nbray.remote(resources={{"second": 0.5}})
        class Counter:
            def __init__(self):
                self.n = 0
            def add(self, k):
                self.n += k
                return self.n

        c = Counter.remote()
        print("ACTOR", nbray.get([c.add.remote(1) for _ in range(50)])[-1])
    """)
    assert "SUM 3000000.0 6000000.0 True" in out
    assert "ACTOR 50" in out


def _plaintext_hello(port: int, token: bytes) -> bytes:
    """Speak nbray's plaintext handshake, with the right token, to `port`; what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(MAGIC + token + b"\x00" * 64)
        chunks = []
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def test_every_tcp_port_closes_plaintext_connections(tls_cluster: TlsCluster) -> None:
    listeners = tls_cluster.tcp_listeners()
    names = " ".join(name for name, _ in listeners)
    # GCS, two raylets, the client server, the dashboard, and workers' core-worker ports
    assert len(listeners) >= 6, listeners
    # (workers are forked by the raylet's zygote and keep its command line)
    for process in ("nbray.gcs", "nbray.raylet ", "nbray.raylet.zygote", "nbray.client.server", "nbray.dashboard"):
        assert process in names + " ", listeners
    for name, port in listeners:
        answer = _plaintext_hello(port, tls_cluster.token)
        # Nothing that parsed the preface (a status byte, an HTTP reply); at most a TLS alert record.
        assert answer == b"" or answer[0] == 0x15, (name, port, answer[:40])


def test_a_process_with_a_certificate_from_another_ca_is_refused(tls_cluster: TlsCluster, tmp_path: Any) -> None:
    stranger = init_directory(str(tmp_path), ["127.0.0.1"])
    context = tls.cluster_client_context(tls.TlsSettings(True, stranger.server_cert, stranger.server_key,
                                                         stranger.ca_cert))
    with pytest.raises(ConnectionError, match=f"TLS: the certificate of {tls_cluster.gcs_address} was not"):
        connect_socket(tls_cluster.gcs_address, tls_cluster.token, "driver", 10, tls_context=context)
    # Its own CA accepted, its certificate is still refused by the cluster.
    mixed = tls.cluster_client_context(tls.TlsSettings(True, stranger.server_cert, stranger.server_key,
                                                       tls_cluster.certs.ca_cert))
    with pytest.raises(ConnectionError, match="refused this process's certificate"):
        connect_socket(tls_cluster.gcs_address, tls_cluster.token, "driver", 10, tls_context=mixed)


def test_the_token_is_still_required_over_tls(tls_cluster: TlsCluster) -> None:
    cluster_ctx = tls.cluster_client_context(tls.TlsSettings(True, tls_cluster.certs.server_cert,
                                                             tls_cluster.certs.server_key, tls_cluster.certs.ca_cert))
    wrong = bytes(len(tls_cluster.token))
    with pytest.raises(nbray.exceptions.AuthenticationError, match="refused the cluster token"):
        connect_socket(tls_cluster.gcs_address, wrong, "driver", 10, tls_context=cluster_ctx)
    client_ctx = tls.public_client_context(tls.TlsSettings(ca_cert=tls_cluster.certs.ca_cert))
    with pytest.raises(nbray.exceptions.AuthenticationError, match="refused the cluster token"):
        connect_socket(tls_cluster.info["client_server_address"], wrong, "client", 10, tls_context=client_ctx,
                       server_hostname="127.0.0.1")
    # the right token over the same context works
    connect_socket(tls_cluster.gcs_address, tls_cluster.token, "driver", 10, tls_context=cluster_ctx).close()


def test_a_client_session_over_tls_with_only_the_ca(tls_cluster: TlsCluster) -> None:
    env = {k: v for k, v in tls_cluster.env.items() if k not in (tls.SERVER_CERT_ENV, tls.SERVER_KEY_ENV)}
    out = run_driver(tls_cluster, f"""
        import numpy as np, nbray
        nbray.init("nbray://{tls_cluster.info['client_server_address']}")

        @nbray.remote
        def double(x):
            return x * 2

        @nbray.remote
        class Echo:
            def echo(self, x):
                return x

        big = np.arange(3_000_000, dtype=np.float64)  # 24 MB each way
        print("TASK", nbray.get(double.remote(21)), float(nbray.get(double.remote(big)).sum()) == big.sum() * 2)
        e = Echo.remote()
        print("ACTOR", nbray.get(e.echo.remote("hi")))
        nbray.shutdown()
    """, env=env)
    assert "TASK 42 True" in out and "ACTOR hi" in out


def test_a_client_with_the_wrong_ca_gets_a_clear_error(tls_cluster: TlsCluster, tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = init_directory(str(tmp_path), ["127.0.0.1"])
    monkeypatch.setenv(tls.CA_CERT_ENV, other.ca_cert)
    monkeypatch.setenv(auth.TOKEN_ENV, auth.encode_token(tls_cluster.token))
    address = tls_cluster.info["client_server_address"]
    with pytest.raises(ConnectionError) as caught:
        nbray.init(f"nbray://{address}", tls=True)
    message = str(caught.value)
    assert f"the certificate of {address} was not accepted" in message and tls.CA_CERT_ENV in message
    assert not nbray.is_initialized()


def test_a_plaintext_client_is_told_about_tls(tls_cluster: TlsCluster) -> None:
    with pytest.raises(ConnectionError, match="NBRAY_USE_TLS=1"):
        connect_socket(tls_cluster.info["client_server_address"], tls_cluster.token, "client", 10, tls_context=None)


def test_the_dashboard_serves_https(tls_cluster: TlsCluster) -> None:
    url = tls_cluster.info["dashboard_url"]
    assert url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=tls_cluster.certs.ca_cert)
    request = urllib.request.Request(url + "/api/cluster", headers={
        "Authorization": f"Bearer {tls_cluster.token.hex()}", "User-Agent": "nbray-test"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200
        assert isinstance(json.loads(response.read()), dict)
    plain = url.replace("https://", "http://") + "/api/cluster"
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(plain, timeout=10)
