"""An audit of every listening socket of a running cluster, found from /proc.

No list of ports is kept by hand: the sockets come from
``/proc/<pid>/net/tcp{,6}`` matched to the socket inodes in
``/proc/<pid>/fd`` of every process of the cluster (head with dashboard and
client server, a second node, an actor worker), and the dashboard's routes
come from its tornado application. For each socket:

* it listens on 127.0.0.1 (the default configuration);
* a connection without the token is refused before anything is unpickled:
  frames holding a pickle that would create a canary file are sent without
  a preface and after a wrong token, for every method the process serves
  (the dashboard gets them as request bodies); the file never appears.

The dashboard refuses writes from browsers on every route, refuses a Host
of another name (DNS rebinding), and never echoes the token in a response,
a URL, a log file or a process's command line. With TLS on, every TCP
listener speaks TLS only, and the same canary probes over TLS are refused.
"""

from __future__ import annotations

import http.client
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import nbray
from nbray.rpc import tls
from nbray.rpc.handshake import MAGIC
from nbray.testing import Cluster, descendant_pids, fuzz
from tests.integration.test_tls import TlsCluster, all_pids, tls_cluster  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(240)

BROWSER_HEADERS = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors",
                   "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"}
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")


@dataclass
class AuditCluster:
    cluster: Cluster
    pids: set[int]
    sockets: list[tuple[str, fuzz.ListeningSocket]]
    token: bytes

    @property
    def dashboard(self) -> fuzz.ListeningSocket:
        return next(s for role, s in self.sockets if role == "dashboard")


@pytest.fixture(scope="module")
def audit_cluster() -> Iterator[AuditCluster]:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": True, "ray_client_server_port": 0})
    try:
        cluster.add_node(num_cpus=1, resources={"second": 1})
        cluster.connect()

        @nbray.remote(resources={"second": 1})
        class OnSecond:
            def ping(self) -> int:
                return os.getpid()

        actor = OnSecond.remote()  # type: ignore[attr-defined]
        nbray.get(actor.ping.remote(), timeout=60)
        pids: set[int] = set()
        for node in cluster.list_all_nodes():
            pids |= descendant_pids(list(node.pids().values()))
        pids.discard(os.getpid())
        sockets = [(fuzz.daemon_role(s.pid), s) for s in fuzz.listening_tcp_sockets(pids)]
        assert cluster.head is not None
        yield AuditCluster(cluster, pids, sockets, cluster.head.token)
    finally:
        cluster.shutdown()


def request(sock: fuzz.ListeningSocket, method: str, path: str, headers: dict[str, str],
            body: bytes | None = None) -> tuple[int, bytes, str]:
    """(status, body, raw headers) of one request to the dashboard."""
    conn = http.client.HTTPConnection(sock.host, sock.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        if response.status == 200 and "text/event-stream" in response.headers.get("Content-Type", ""):
            # An event stream never ends: take what the first moment brings.
            conn.sock.settimeout(2)
            try:
                return response.status, response.read1(65536), str(response.headers)
            except TimeoutError:
                return response.status, b"", str(response.headers)
        return response.status, response.read(), str(response.headers)
    finally:
        conn.close()


def canary_probes(role: str, token: bytes, canary: bytes) -> list[tuple[str, bytes]]:
    """For every method `role` serves: a canary frame without a preface, and after a wrong token."""
    wrong = bytes(b ^ 0x5A for b in token)
    out = []
    for method in fuzz.methods_for(role):
        frame = fuzz.canary_frame(method, canary)
        out.append(("no preface", frame))
        out.append(("wrong token", MAGIC + wrong + frame))
    return out


def test_listeners_come_from_proc_and_cover_every_daemon(audit_cluster: AuditCluster) -> None:
    roles = sorted(role for role, _ in audit_cluster.sockets)
    assert not [r for r in roles if r.startswith("unknown")], audit_cluster.sockets
    # GCS, two raylets, the actor's worker, client server, dashboard at least.
    assert {"gcs", "raylet", "worker", "client_server", "dashboard"} <= set(roles), roles
    assert roles.count("raylet") == 2, roles
    # /proc agrees with what the launcher reports for the head.
    head = audit_cluster.cluster.head
    assert head is not None
    ports = {s.port for _, s in audit_cluster.sockets}
    assert int(audit_cluster.cluster.address.rsplit(":", 1)[1]) in ports
    assert int(head.extra["client_server_address"].rsplit(":", 1)[1]) in ports
    assert int(head.extra["dashboard_url"].rsplit(":", 1)[1]) in ports


def test_every_listener_is_loopback(audit_cluster: AuditCluster) -> None:
    exposed = [(role, s) for role, s in audit_cluster.sockets if s.host != "127.0.0.1"]
    assert not exposed, f"listening beyond loopback in the default configuration: {exposed}"


def test_no_listener_unpickles_before_the_token(audit_cluster: AuditCluster) -> None:
    canary_path = os.path.join(tempfile.mkdtemp(prefix="nbray-canary-"), "loaded")
    canary = fuzz.canary_pickle(canary_path)
    sent = 0
    for role, sock in audit_cluster.sockets:
        if role == "dashboard":
            for _, path, _ in fuzz.dashboard_routes():
                for method in ("POST", "PUT"):
                    status, body, _ = request(sock, method, path,
                                              {"Content-Type": "application/octet-stream"}, canary)
                    assert status in (401, 405), (method, path, status, body)
                    sent += 1
            continue
        for what, data in canary_probes(role, audit_cluster.token, canary):
            reply, closed = fuzz.send_and_drain((sock.host, sock.port), data, 10)
            assert closed, (role, what)
            assert reply in (b"\x01", b"\x02"), (role, what, reply)
            sent += 1
    assert sent > 100
    assert not os.path.exists(canary_path), "a process loaded a pickle from an unauthenticated peer"


def test_dashboard_refuses_browser_writes_on_every_route(audit_cluster: AuditCluster) -> None:
    auth = {"Authorization": "Bearer " + audit_cluster.token.hex()}
    routes = fuzz.dashboard_routes()
    assert len(routes) >= 15 and any(p.startswith("/api/jobs") for _, p, _ in routes)
    for pattern, path, implemented in routes:
        for method in WRITE_METHODS:
            for header, value in BROWSER_HEADERS.items():
                status, body, _ = request(audit_cluster.dashboard, method, path, {**auth, header: value},
                                          b"{}" if method in ("POST", "PUT", "PATCH") else None)
                assert status == 405, (pattern, method, header, status, body)
        # The guard is an allow-list: reads from a browser still reach the route.
        status, _, headers = request(audit_cluster.dashboard, "OPTIONS", path, {**auth, **BROWSER_HEADERS})
        assert status == 204, (pattern, status)
        assert "access-control-allow-origin" not in headers.lower()
        if "GET" in implemented:
            status, body, _ = request(audit_cluster.dashboard, "GET", path + ("?wait_ms=0" if "tail" in path else ""),
                                      {**auth, **BROWSER_HEADERS})
            assert status in (200, 400, 404), (pattern, status, body)  # the handler answered, not the guard


def test_dashboard_refuses_foreign_host_names(audit_cluster: AuditCluster) -> None:
    auth = {"Authorization": "Bearer " + audit_cluster.token.hex()}
    port = audit_cluster.dashboard.port
    for pattern, path, implemented in fuzz.dashboard_routes():
        method = "GET" if "GET" in implemented else "POST"
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example"):
            status, body, _ = request(audit_cluster.dashboard, method, path, {**auth, "Host": host})
            assert status == 403 and b"Host" in body, (pattern, host, status, body)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        status, body, _ = request(audit_cluster.dashboard, "GET", "/api/version", {**auth, "Host": host})
        assert status == 200, (host, status, body)


def test_token_is_never_echoed(audit_cluster: AuditCluster) -> None:
    token_hex = audit_cluster.token.hex()
    wrong_hex = bytes(b ^ 0x33 for b in audit_cluster.token).hex()
    cluster = audit_cluster.cluster
    assert cluster.head is not None
    # Responses to every route, with the token, with a wrong one, and with it in the query string.
    for _, path, implemented in fuzz.dashboard_routes():
        for method in implemented:
            for headers, query in (({"Authorization": f"Bearer {token_hex}"}, ""),
                                   ({"Authorization": f"Bearer {wrong_hex}"}, f"?token={wrong_hex}"),
                                   ({}, f"?token={token_hex}")):
                target = path + query + ("&" if query else "?") + "wait_ms=0" if "tail" in path else path + query
                status, body, raw_headers = request(audit_cluster.dashboard, method, target, headers)
                for secret in (token_hex, wrong_hex):
                    assert secret not in body.decode(errors="replace").lower(), (method, target, status)
                    assert secret not in raw_headers.lower(), (method, target, status)
    # URLs the cluster publishes.
    for url in (cluster.head.extra["dashboard_url"], cluster.head.extra["client_server_address"], cluster.address):
        assert token_hex not in url.lower()
    # Every log file of the session.
    logs = os.path.join(cluster.session_dir, "logs")
    checked = 0
    for root, _, files in os.walk(logs):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read().lower()
            assert token_hex.encode() not in data and audit_cluster.token not in data, name
            checked += 1
    assert checked >= 4
    # Command lines (and so process titles) of every process of the cluster.
    for pid in audit_cluster.pids:
        assert token_hex not in fuzz.cmdline(pid).lower(), (pid, fuzz.daemon_role(pid))
        try:
            with open(f"/proc/{pid}/comm") as f:
                assert token_hex[:15] not in f.read()
        except OSError:
            pass


# ---- with TLS on --------------------------------------------------------------------------


def tls_listeners(cluster: TlsCluster) -> list[tuple[str, fuzz.ListeningSocket]]:
    pids = descendant_pids(list(all_pids(cluster.session_dir))) - {os.getpid()}
    return [(fuzz.daemon_role(s.pid), s) for s in fuzz.listening_tcp_sockets(pids)]


def test_every_tls_listener_refuses_plaintext_and_tokenless_peers(tls_cluster: TlsCluster) -> None:  # noqa: F811
    listeners = tls_listeners(tls_cluster)
    roles = {role for role, _ in listeners}
    assert {"gcs", "raylet", "client_server", "dashboard"} <= roles, listeners
    canary_path = os.path.join(tempfile.mkdtemp(prefix="nbray-canary-"), "loaded")
    canary = fuzz.canary_pickle(canary_path)
    settings = tls.settings_from_env(tls_cluster.env)
    context = tls.cluster_client_context(settings)
    assert context is not None
    for role, sock in listeners:
        address = (sock.host, sock.port)
        assert sock.host == "127.0.0.1", (role, sock)
        # Plaintext: the TLS handshake fails and the server closes; at most a TLS alert comes back.
        if role == "dashboard":
            plain = b"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(canary) + canary
        else:
            plain = MAGIC + tls_cluster.token + fuzz.canary_frame(fuzz.methods_for(role)[0], canary)
        reply, closed = fuzz.send_and_drain(address, plain, 15)
        assert closed, (role, "plaintext connection left open")
        assert not reply or reply[0] == 0x15, (role, reply[:40])  # 0x15: a TLS alert record
        # Over TLS, without the token.
        if role == "dashboard":
            request_bytes = (b"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                             % len(canary) + canary)
            reply, closed = fuzz.send_and_drain(address, request_bytes, 15, tls_context=context,
                                                server_hostname="127.0.0.1")
            assert fuzz.http_statuses(reply) == [401], (role, reply[:200])
            continue
        for what, data in canary_probes(role, tls_cluster.token, canary)[:40]:
            try:
                reply, closed = fuzz.send_and_drain(address, data, 15, tls_context=context,
                                                    server_hostname="127.0.0.1")
            except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
                pytest.fail(f"{role}: TLS connection failed: {exc}")
            assert closed and reply in (b"\x01", b"\x02"), (role, what, reply)
    assert not os.path.exists(canary_path), "a process loaded a pickle from an unauthenticated TLS peer"
