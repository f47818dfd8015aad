"""Hostile input on every listening port of a running cluster (nbray.testing.fuzz).

A head with dashboard and client server, one actor worker, and the test
process as driver. Every TCP port the cluster's processes listen on (found
in /proc) gets seeded hostile frames, with and without a valid handshake
(the dashboard: hostile HTTP, with and without the token). Afterwards:

* every daemon still runs, and no log of the session gained a traceback;
* connections stopped inside the handshake were closed by its deadline;
* no canary pickle was ever loaded (its file does not exist);
* each daemon's memory is back near its starting level (RSS from /proc);
* the driver's own connections still work: the actor answers, a new task runs.

The quick variant sends ~300 cases per port and mode; the slow one
(``-m slow``) 10,000, or ``NBRAY_FUZZ_CASES``.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import nbray
from nbray.testing import Cluster, descendant_pids, fuzz

HANDSHAKE_TIMEOUT_MS = 1000
# Growth allowed per daemon after fuzzing, on top of the RSS measured after a warm-up round.
RSS_TOLERANCE_BYTES = 8 << 20
RSS_TOLERANCE_FRACTION = 0.10
DASHBOARD_IDLE_TIMEOUT_S = 60  # server.Dashboard: tornado's idle_connection_timeout


@dataclass
class FuzzCluster:
    cluster: Cluster
    actor: object
    pids: set[int]
    targets: list[tuple[str, fuzz.ListeningSocket]]

    @property
    def token(self) -> bytes:
        assert self.cluster.head is not None
        return self.cluster.head.token


@pytest.fixture(scope="module")
def fuzz_cluster() -> Iterator[FuzzCluster]:
    cluster = Cluster(initialize_head=True, system_config={"handshake_timeout_ms": HANDSHAKE_TIMEOUT_MS},
                      head_node_args={"num_cpus": 1, "include_dashboard": True, "ray_client_server_port": 0})
    try:
        cluster.connect()

        @nbray.remote
        class Pinger:
            def ping(self) -> int:
                return os.getpid()

        actor = Pinger.remote()  # type: ignore[attr-defined]
        nbray.get(actor.ping.remote(), timeout=60)
        assert cluster.head is not None
        pids = descendant_pids(list(cluster.head.pids().values())) - {os.getpid()}
        targets = [(fuzz.daemon_role(s.pid), s) for s in fuzz.listening_tcp_sockets(pids)]
        roles = {r for r, _ in targets}
        assert {"gcs", "raylet", "worker", "client_server", "dashboard"} <= roles, targets
        yield FuzzCluster(cluster, actor, pids, targets)
    finally:
        cluster.shutdown()


def tracebacks(session_dir: str) -> dict[str, int]:
    out = {}
    logs = os.path.join(session_dir, "logs")
    for name in sorted(os.listdir(logs)):
        try:
            with open(os.path.join(logs, name), errors="replace") as f:
                out[name] = f.read().count("Traceback (most recent call last)")
        except OSError:
            continue
    return out


def fuzz_every_port(fc: FuzzCluster, cases: int, seed: int, canary_path: str) -> list[fuzz.FuzzReport]:
    canary = fuzz.canary_pickle(canary_path)
    token = fc.token
    paths = [path for _, path, _ in fuzz.dashboard_routes()]
    reports = []
    for role, sock in fc.targets:
        address = (sock.host, sock.port)
        if role == "dashboard":
            for auth in (None, b"Bearer " + token.hex().encode()):
                reports.append(fuzz.fuzz_http(role, address, seed=seed, count=cases, host=f"127.0.0.1:{sock.port}",
                                              paths=paths, auth_header=auth, canary=canary,
                                              secret=token.hex().encode()))
            continue
        methods = fuzz.methods_for(role)
        reports.append(fuzz.fuzz_unauthenticated(role, address, seed=seed, count=cases, token=token, canary=canary,
                                                 methods=methods))
        reports.append(fuzz.fuzz_authenticated(role, f"{sock.host}:{sock.port}", seed=seed, count=cases,
                                               token=token, methods=methods,
                                               max_frame_bytes=fc.cluster.config.max_frame_bytes))
    return reports


def check_after_fuzzing(fc: FuzzCluster, cases: int, seed: int, *, hold_dashboard: bool) -> None:
    canary_path = os.path.join(tempfile.mkdtemp(prefix="nbray-canary-"), "loaded")
    wire = [s for role, s in fc.targets if role != "dashboard"]
    dashboard = [s for role, s in fc.targets if role == "dashboard"]
    # Warm up (lazy imports, first-use caches), then take the starting level.
    fuzz_every_port(fc, 30, seed + 1, canary_path)
    rss_before = {pid: fuzz.rss_bytes(pid) for pid in fc.pids}
    traces_before = tracebacks(fc.cluster.session_dir)
    held_http = []
    if hold_dashboard:
        # Half a request line, held through the whole run; the idle timeout must close it.
        for sock in dashboard:
            for _ in range(3):
                s = socket.create_connection((sock.host, sock.port), timeout=10)
                s.sendall(b"GET /api/clu")
                held_http.append(s)
    http_deadline = time.monotonic() + DASHBOARD_IDLE_TIMEOUT_S

    start = time.monotonic()
    reports = fuzz_every_port(fc, cases, seed, canary_path)
    elapsed = time.monotonic() - start
    for r in reports:
        print(r.summary())
    print(f"fuzzing took {elapsed:.1f} s for {sum(r.cases for r in reports)} cases")
    problems = [p for r in reports for p in r.problems]
    assert not problems, "\n".join(problems[:40])
    assert all(r.cases == cases for r in reports), [r.summary() for r in reports]

    # Connections that stop inside the handshake are closed by its deadline.
    held = []
    for sock in wire:
        held += fuzz.hold_partial_prefaces((sock.host, sock.port), 4, b"\x00" * 32)
    try:
        still_open = fuzz.wait_all_closed_by_server(held, HANDSHAKE_TIMEOUT_MS / 1000 + 3)
    finally:
        for s in held:
            s.close()
    assert not still_open, f"{len(still_open)} connections outlived the handshake deadline"
    if held_http:
        try:
            left = max(1.0, http_deadline - time.monotonic()) + 10
            still_open = fuzz.wait_all_closed_by_server(held_http, left)
        finally:
            for s in held_http:
                s.close()
        assert not still_open, "the dashboard kept a half-sent request open past its idle timeout"

    assert not os.path.exists(canary_path), "a canary pickle was loaded by a daemon"
    dead = [(pid, fuzz.daemon_role(pid)) for pid in fc.pids if not fuzz.process_alive(pid)]
    assert not dead, f"daemons gone after fuzzing: {dead}"
    traces_after = tracebacks(fc.cluster.session_dir)
    new = {name: n - traces_before.get(name, 0) for name, n in traces_after.items() if n > traces_before.get(name, 0)}
    assert not new, f"tracebacks logged while fuzzing: {new}"

    rss_after = {pid: fuzz.rss_bytes(pid) for pid in fc.pids}
    for pid in sorted(fc.pids):
        print(f"rss {fuzz.daemon_role(pid)[:40]:40} pid {pid}: {rss_before[pid] >> 10} KiB -> {rss_after[pid] >> 10} KiB")
    grown = {pid: (rss_before[pid], rss_after[pid]) for pid in fc.pids
             if rss_after[pid] > rss_before[pid] + max(RSS_TOLERANCE_BYTES, RSS_TOLERANCE_FRACTION * rss_before[pid])}
    assert not grown, f"memory did not come back to its starting level: {grown}"

    # The driver's connections were never touched: the actor answers, and a new task runs.
    assert nbray.get(fc.actor.ping.remote(), timeout=60) > 0  # type: ignore[attr-defined]

    @nbray.remote
    def canary_task(x: int) -> int:
        return x * 2

    assert nbray.get(canary_task.remote(21), timeout=60) == 42


@pytest.mark.fuzz
@pytest.mark.timeout(180)
def test_every_port_survives_hostile_frames_quick(fuzz_cluster: FuzzCluster) -> None:
    check_after_fuzzing(fuzz_cluster, 300, seed=20240611, hold_dashboard=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_port_survives_hostile_frames_10k(fuzz_cluster: FuzzCluster) -> None:
    cases = int(os.environ.get("NBRAY_FUZZ_CASES", "10000"))
    check_after_fuzzing(fuzz_cluster, cases, seed=int(os.environ.get("NBRAY_FUZZ_SEED", "1")), hold_dashboard=True)


def test_route_paths_are_sampled_from_patterns() -> None:
    assert fuzz.route_path(r"/api/tasks/([0-9a-fA-F]+)/cancel$") == \
        "/api/tasks/00112233445566778899aabbccddeeff/cancel"
    with pytest.raises(AssertionError):
        fuzz.route_path(r"/api/x/([!]+)$")


def test_malformed_bodies_never_parse() -> None:
    import random

    rng = random.Random(7)
    for method in fuzz.methods_for("gcs") + fuzz.methods_for("worker"):
        body = fuzz.malformed_body(rng, method)
        with pytest.raises(Exception, match=re.compile("pars|Error", re.I)):
            method.request_cls().ParseFromString(body)
