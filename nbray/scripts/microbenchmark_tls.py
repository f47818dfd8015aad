"""``nbray microbenchmark --tls``: the network paths in plaintext and over TLS, side by side.

Both runs use the same two-node cluster on this machine, with objects
between raylets sent over TCP (``same_host_object_transfer_over_unix`` off)
and the tasks and actors placed on the second node, so every measured call
crosses a TCP connection: the only difference between the runs is TLS.
Certificates are made in a temporary directory and removed afterwards.

``python -m nbray.scripts.microbenchmark_tls [MB]`` measures what that
comparison cannot separate from the rest of a cluster: the CPU that moving
a stream costs (plaintext, nbray's TLS, and TLS 1.2 with AES-128-GCM for
the cipher's share) and the CPU per empty RPC on each side.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from nbray.rpc import tls

MB = 1024 * 1024

# Cases of the comparison, and whether each is a per-call rate (else a bulk transfer).
TLS_CASES = {
    "tasks sync on the other node (/s)": "rate",
    "tasks async on the other node (/s)": "rate",
    "actor calls sync on the other node (/s)": "rate",
    "actor calls async on the other node (/s)": "rate",
    "object transfer 200 MB between nodes (GB/s)": "bulk",
    "client: tasks async (/s)": "rate",
    "client: tasks sync (/s)": "rate",
    "client: actor calls sync (/s)": "rate",
    "client: put 100 MB (GB/s)": "bulk",
    "client: get 100 MB (GB/s)": "bulk",
}
# What TLS may cost, as a fraction of the plaintext figure.
ALLOWED_COST = {"rate": 0.15, "bulk": 0.30}
_TRANSFER_ENV = "NBRAY_SAME_HOST_OBJECT_TRANSFER_OVER_UNIX"


def tls_cost(plain: float, over_tls: float) -> float:
    """The fraction of the plaintext figure (higher is better) that TLS loses."""
    if plain <= 0:
        raise ValueError(f"a plaintext figure must be positive, not {plain}")
    return 1.0 - over_tls / plain


def within_target(case: str, plain: float, over_tls: float) -> bool:
    return tls_cost(plain, over_tls) <= ALLOWED_COST[TLS_CASES[case]]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the processes started inside (restored afterwards)."""
    saved = {name: os.environ.get(name) for name in (*values, tls.USE_TLS_ENV, tls.SERVER_CERT_ENV,
                                                     tls.SERVER_KEY_ENV, tls.CA_CERT_ENV)}
    for name in saved:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cluster_cases(quick: bool) -> dict[str, float]:
    import numpy as np

    import nbray
    from nbray.scripts.microbenchmark import _timed
    from nbray.testing import Cluster
    from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    duration, trials = (0.5, 2) if quick else (2.0, 3)
    out: dict[str, float] = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 600 * MB})
    other = cluster.add_node(num_cpus=1, object_store_memory=600 * MB)
    try:
        nbray.init(address=cluster.address)
        there = NodeAffinitySchedulingStrategy(other.node_id.hex(), soft=False)

        @nbray.remote
        def noop() -> int:
            return 0

        @nbray.remote
        def make(n: int) -> Any:
            return np.ones(n, dtype=np.uint8)

        @nbray.remote
        class Actor:
            def noop(self) -> int:
                return 0

        remote_noop = noop.options(scheduling_strategy=there)
        nbray.get([remote_noop.remote() for _ in range(100)])
        out["tasks sync on the other node (/s)"] = _timed(lambda: (nbray.get(remote_noop.remote()), 1)[1],
                                                          duration, trials)

        def task_batch() -> int:
            nbray.get([remote_noop.remote() for _ in range(1000)])
            return 1000

        out["tasks async on the other node (/s)"] = _timed(task_batch, duration, trials)
        # Before the actor exists: it would keep the node's only worker slot.
        times = []
        for _ in range(2 if quick else 4):
            ref = make.options(scheduling_strategy=there).remote(200 * MB)
            nbray.wait([ref], fetch_local=False)
            start = time.perf_counter()
            value = nbray.get(ref)
            times.append(time.perf_counter() - start)
            del value, ref
        out["object transfer 200 MB between nodes (GB/s)"] = 200 * MB / min(times) / 1e9
        actor = Actor.options(scheduling_strategy=there).remote()  # type: ignore[attr-defined]
        nbray.get(actor.noop.remote())
        out["actor calls sync on the other node (/s)"] = _timed(lambda: (nbray.get(actor.noop.remote()), 1)[1],
                                                                duration, trials)

        def actor_batch() -> int:
            nbray.get([actor.noop.remote() for _ in range(1000)])
            return 1000

        out["actor calls async on the other node (/s)"] = _timed(actor_batch, duration, trials)
    finally:
        nbray.shutdown()
        cluster.shutdown()
    return out


def _run_mode(quick: bool, want: Any) -> dict[str, float]:
    results: dict[str, float] = {}
    if any(want(n) for n in TLS_CASES if not n.startswith("client:")):
        results.update(_cluster_cases(quick))
    if any(want(n) for n in TLS_CASES if n.startswith("client:")):
        from nbray.client.bench import client_cases

        results.update(client_cases(quick))
    return {k: v for k, v in results.items() if k in TLS_CASES and want(k)}


def compare(quick: bool, only: list[str] | None) -> dict[str, dict[str, float]]:
    """{case: {"plain": figure, "tls": figure}} for the cases `only` selects."""
    from nbray.rpc.tls_certs import init_directory

    def want(name: str) -> bool:
        return not only or any(o.lower() in name.lower() for o in only)

    cert_dir = tempfile.mkdtemp(prefix="nbray-bench-tls-")
    try:
        files = init_directory(os.path.join(cert_dir, "certs"))
        with _environment({_TRANSFER_ENV: "0"}):
            plain = _run_mode(quick, want)
        with _environment({_TRANSFER_ENV: "0", **files.environment()}):
            over_tls = _run_mode(quick, want)
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    return {name: {"plain": plain[name], "tls": over_tls[name]} for name in TLS_CASES
            if name in plain and name in over_tls}


def format_comparison(figures: dict[str, dict[str, float]]) -> str:
    width = max([len(k) for k in figures] + [4]) + 2
    lines = [f"{'case (TLS vs plaintext)':<{width}} {'plain':>12} {'TLS':>12} {'cost':>7}  target"]
    for name, pair in figures.items():
        cost = tls_cost(pair["plain"], pair["tls"])
        allowed = ALLOWED_COST[TLS_CASES[name]]
        verdict = "ok " if cost <= allowed else "MISS"
        lines.append(f"{name:<{width}} {pair['plain']:>12,.2f} {pair['tls']:>12,.2f} {cost:>6.0%}  "
                     f"{verdict} (<= {allowed:.0%})")
    return "\n".join(lines)


# ---- the stream alone ----------------------------------------------------------------------------------

# Ways to move bytes over a loopback pair, for socket_costs().
STREAM_MODES = ("plain", "tls", "tls1.2-aes128")
_STREAM_CHUNK_BYTES = 8 * MB


def _stream_contexts(mode: str, settings: tls.TlsSettings) -> tuple[Any, Any]:
    """(server, client) contexts for a mode: nbray's own for "tls"; for
    "tls1.2-aes128" the same certificates capped at TLS 1.2 with AES-128-GCM,
    the cheapest AEAD a Python 3.11 context can pin (TLS 1.3 suites cannot
    be chosen from Python)."""
    server = tls._build("cluster-server", settings)
    client = tls._build("cluster-client", settings)
    if mode == "tls1.2-aes128":
        import ssl

        for ctx in (server, client):
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    return server, client


def _stream_pair(mode: str, settings: tls.TlsSettings) -> tuple[Any, Any, str]:
    """A connected (sender, receiver) pair over loopback TCP and the cipher in use."""
    import socket
    import threading

    from nbray.rpc.tls_socket import TlsSocket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_sender = socket.create_connection(listener.getsockname(), timeout=30)
        raw_receiver, _ = listener.accept()
    raw_receiver.settimeout(30)
    if mode == "plain":
        return raw_sender, raw_receiver, "none"
    server_ctx, client_ctx = _stream_contexts(mode, settings)
    receiver = TlsSocket(raw_receiver, server_ctx, server_side=True)
    sender = TlsSocket(raw_sender, client_ctx, server_side=False)
    thread = threading.Thread(target=receiver.handshake, args=(10.0, "sender"))
    thread.start()
    sender.handshake(10.0, "receiver")
    thread.join(10)
    cipher = receiver._ssl.cipher()
    return sender, receiver, f"{cipher[1]} {cipher[0]}" if cipher else "unknown"


def stream_cpu_seconds(mode: str, nbytes: int, settings: tls.TlsSettings) -> tuple[float, float, str]:
    """Move `nbytes` one way through a loopback pair in `mode`, both ends
    in this process: (CPU seconds of the process, wall seconds, cipher)."""
    import threading

    sender, receiver, cipher = _stream_pair(mode, settings)
    payload = memoryview(os.urandom(_STREAM_CHUNK_BYTES))
    into = memoryview(bytearray(_STREAM_CHUNK_BYTES))
    errors: list[BaseException] = []

    def send() -> None:
        try:
            left = nbytes
            while left > 0:
                n = min(left, len(payload))
                sender.sendall(payload[:n])
                left -= n
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        thread = threading.Thread(target=send)
        thread.start()
        got = 0
        while got < nbytes:
            n = receiver.recv_into(into)
            if not n:
                raise ConnectionError(f"the stream ended after {got} of {nbytes} bytes")
            got += n
        thread.join(30)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        sender.close()
        receiver.close()
    if errors:
        raise errors[0]
    return cpu, wall, cipher


def socket_costs(nbytes: int = 200 * MB, rounds: int = 3) -> dict[str, dict[str, float | str]]:
    """{mode: {"cpu_s", "wall_s", "cpu_ns_per_byte", "cipher"}}: medians over
    `rounds`, the modes alternated so load from elsewhere hits each alike."""
    import statistics

    from nbray.rpc.tls_certs import init_directory

    cert_dir = tempfile.mkdtemp(prefix="nbray-bench-tls-")
    try:
        files = init_directory(os.path.join(cert_dir, "certs"), ["localhost", "127.0.0.1"])
        settings = tls.TlsSettings(use_tls=True, server_cert=files.server_cert, server_key=files.server_key,
                                   ca_cert=files.ca_cert)
        samples: dict[str, list[tuple[float, float]]] = {mode: [] for mode in STREAM_MODES}
        ciphers: dict[str, str] = {}
        for _ in range(rounds):
            for mode in STREAM_MODES:
                cpu, wall, ciphers[mode] = stream_cpu_seconds(mode, nbytes, settings)
                samples[mode].append((cpu, wall))
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    out: dict[str, dict[str, float | str]] = {}
    for mode, runs in samples.items():
        cpu = statistics.median(c for c, _ in runs)
        out[mode] = {"cpu_s": cpu, "wall_s": statistics.median(w for _, w in runs),
                     "cpu_ns_per_byte": cpu / nbytes * 1e9, "cipher": ciphers[mode]}
    return out


# ---- one call at a time ---------------------------------------------------------------------------------


def _serve_calls(raw: Any, mode: str, settings: tls.TlsSettings, stop_fd: int) -> None:
    """In a child process: answer PullChunk with an empty reply until `stop_fd` is readable."""
    from nbray.protocol import method, raylet_pb2
    from nbray.rpc.connection import Dispatcher
    from nbray.rpc.eventloop import EventLoop
    from nbray.rpc.tls_connection import make_connection
    from nbray.rpc.tls_socket import TlsSocket

    sock = raw
    if mode != "plain":
        server_ctx, _ = _stream_contexts(mode, settings)
        raw.settimeout(10)
        sock = TlsSocket(raw, server_ctx, server_side=True)
        sock.handshake(10.0, "caller")
    loop = EventLoop("bench-server")
    dispatcher = Dispatcher()
    dispatcher.register(method("RayletService.PullChunk"), lambda conn, req, rid: raylet_pb2.PullChunkReply())
    conn = make_connection(loop, sock, dispatcher, name="caller")
    conn.start()
    loop.start_thread()
    os.read(stop_fd, 1)
    loop.post(conn.close)
    loop.post(loop.stop)
    loop.join(10)


def _process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call_cpu_us(mode: str, calls: int, settings: tls.TlsSettings) -> dict[str, float]:
    """CPU microseconds per call of an empty RPC, the server in another
    process: {"sync_caller", "sync_server", "async_caller", "async_server"}
    (sync: one call at a time; async: 1,000 in flight)."""
    import multiprocessing
    import socket

    from nbray.protocol import method, raylet_pb2
    from nbray.rpc.connection import Dispatcher
    from nbray.rpc.eventloop import EventLoop
    from nbray.rpc.tls_connection import make_connection
    from nbray.rpc.tls_socket import TlsSocket

    pull = method("RayletService.PullChunk")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw: Any = socket.create_connection(listener.getsockname(), timeout=10)
        served, _ = listener.accept()
    stop_r, stop_w = os.pipe()
    child = multiprocessing.get_context("fork").Process(target=_serve_calls, args=(served, mode, settings, stop_r))
    child.start()
    served.close()
    loop = EventLoop("bench-caller")
    try:
        if mode != "plain":
            _, client_ctx = _stream_contexts(mode, settings)
            raw = TlsSocket(raw, client_ctx, server_side=False)
            raw.handshake(10.0, "server")
        conn = make_connection(loop, raw, Dispatcher(), name="server")
        conn.start()
        loop.start_thread()
        request = raylet_pb2.PullChunkRequest(offset=0, length=0)
        for _ in range(300):
            conn.call_sync(pull, request, timeout_s=10)
        assert child.pid is not None
        cpu0, server0 = time.process_time(), _process_cpu_s(child.pid)
        for _ in range(calls):
            conn.call_sync(pull, request, timeout_s=10)
        cpu1, server1 = time.process_time(), _process_cpu_s(child.pid)
        for _ in range(calls // 1000 or 1):
            for future in [conn.call(pull, request) for _ in range(1000)]:
                future.result(10)
        cpu2, server2 = time.process_time(), _process_cpu_s(child.pid)
        batched = (calls // 1000 or 1) * 1000
        return {"sync_caller": (cpu1 - cpu0) / calls * 1e6, "sync_server": (server1 - server0) / calls * 1e6,
                "async_caller": (cpu2 - cpu1) / batched * 1e6, "async_server": (server2 - server1) / batched * 1e6}
    finally:
        os.write(stop_w, b"x")
        child.join(10)
        os.close(stop_r)
        os.close(stop_w)
        loop.post(loop.stop)
        loop.join(10)
        loop.close()


def call_costs(calls: int = 5000, rounds: int = 3) -> dict[str, dict[str, float]]:
    """{mode: call_cpu_us figures}, medians over `rounds`, modes alternated."""
    import statistics

    from nbray.rpc.tls_certs import init_directory

    cert_dir = tempfile.mkdtemp(prefix="nbray-bench-tls-")
    try:
        files = init_directory(os.path.join(cert_dir, "certs"), ["localhost", "127.0.0.1"])
        settings = tls.TlsSettings(use_tls=True, server_cert=files.server_cert, server_key=files.server_key,
                                   ca_cert=files.ca_cert)
        samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in ("plain", "tls")}
        for _ in range(rounds):
            for mode in samples:
                samples[mode].append(call_cpu_us(mode, calls, settings))
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    return {mode: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            for mode, runs in samples.items()}


if __name__ == "__main__":
    import json
    import sys

    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(json.dumps({"stream": socket_costs(size_mb * MB), "calls": call_costs()}, indent=2))
