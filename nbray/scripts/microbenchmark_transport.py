"""``nbray microbenchmark --only "client transport"``: the notebook client's
channel over TLS, nbray's framing against gRPC, with nothing else in the way.

Both transports carry the messages of the client protocol
(``client.proto``) between this process, standing where a notebook kernel
stands, and a server process on this machine's loopback, standing where
the client server stands. The server answers at once (no cluster behind
it), so the figures are the channel's own ceiling: what the end-to-end
client cases can reach at most.

* nbray framing: ``Listener`` and ``connect_socket`` with the client
  server's TLS contexts, one request frame per message as ``ClientCore``
  sends them, chunks of a put as frame trailers with the same window.
* gRPC: one bidirectional stream (what Ray Client uses) over
  ``grpc.ssl_*_credentials`` with the same certificates; each stream
  message carries every queued message of the client protocol (a batch of
  length-prefixed entries), a sync call is one message each way, a put
  chunk travels alone in a stream message (1 MiB, gRPC's best size here),
  with as many bytes in flight.

The two transports are measured alternately, in the same run, for several
rounds; the medians are reported. ``python -m
nbray.scripts.microbenchmark_transport`` prints them side by side.

gRPC is not a dependency of nbray: install ``grpcio`` (the ``dev`` extra
has it) to run this comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from nbray.protocol import client_pb2, method
from nbray.rpc import tls

MB = 1024 * 1024
TRANSPORTS = ("nbray framing", "gRPC")
TASKS_ASYNC = "client transport: tasks async"
ROUND_TRIPS = "client transport: actor calls sync"
PUT = "client transport: put 100 MB"
# Case -> unit; a result is named "<case>, <transport> (<unit>)".
CASES = {TASKS_ASYNC: "/s", ROUND_TRIPS: "/s", PUT: "GB/s"}
# As nbray/client/bench.py submits them: a burst, then wait for all.
SUBMIT_BURST = 500
PUT_BYTES = 100 * MB
# Serialized arguments of a small task (the trailer of a SubmitTask).
ARGS_BYTES = 64
_GRPC_METHOD = "/nbray.bench.ClientTransport/Stream"
_GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
# A batch entry: kind, body length, trailer length; then body and trailer.
_ENTRY = struct.Struct("<BII")
_SUBMIT, _PUT_START, _PUT_CHUNK, _PUT_END = range(4)
# gRPC's put chunk: its best size on these machines (1 to 8 MiB tried; the
# window keeps as many bytes in flight as nbray's chunks and window do).
GRPC_CHUNK_BYTES = 1 * MB
# Queued entries joined into one stream message up to this size.
_BATCH_BYTES = 256 * 1024
_SUBMIT_M = method("ClientService.SubmitTask")
_PUT_START_M = method("ClientService.PutStart")
_PUT_CHUNK_M = method("ClientService.PutChunk")
_PUT_M = method("ClientService.Put")


class GrpcMissingError(ImportError):
    """grpcio is not installed (it is not an nbray dependency)."""


def import_grpc() -> Any:
    try:
        import grpc
    except ImportError as exc:
        raise GrpcMissingError("the client transport comparison needs grpcio: pip install grpcio "
                               "(or nbray[dev])") from exc
    return grpc


def result_name(case: str, transport: str) -> str:
    return f"{case}, {transport} ({CASES[case]})"


def _settings(cert_dir: str) -> tls.TlsSettings:
    from nbray.rpc.tls_certs import CA_CERT_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE

    return tls.TlsSettings(use_tls=True, server_cert=os.path.join(cert_dir, SERVER_CERT_FILE),
                           server_key=os.path.join(cert_dir, SERVER_KEY_FILE),
                           ca_cert=os.path.join(cert_dir, CA_CERT_FILE))


def _submit_request(seq: int) -> client_pb2.ClientSubmitRequest:
    return client_pb2.ClientSubmitRequest(seq=seq, acked=max(0, seq - 1), template_id=1,
                                          task_id=seq.to_bytes(24, "little"), context_tag="cell-1")


# ---- the server side (a separate process) ------------------------------------------------------


class _Upload:
    """Where the server writes a put's chunks. Kept from one put to the
    next, as the session writes into an object store already mapped (a new
    buffer would add the page faults of 100 MB to each put)."""

    def __init__(self) -> None:
        self.dest = memoryview(bytearray(0))

    def start(self, size: int) -> None:
        if self.dest.nbytes != size:
            self.dest = memoryview(bytearray(size))

    def write(self, offset: int, data: Any) -> None:
        self.dest[offset : offset + len(data)] = data


def _serve_nbray(cert_dir: str, token: bytes, ready: Callable[[str], None]) -> None:
    from nbray.rpc.connection import Dispatcher
    from nbray.rpc.eventloop import EventLoop
    from nbray.rpc.handshake import Listener, bind_listener

    loop = EventLoop("bench-transport-server")
    upload = _Upload()
    dispatcher = Dispatcher()
    dispatcher.register(_SUBMIT_M, lambda conn, req, rid: client_pb2.ClientAck())

    def put_start(conn: Any, req: client_pb2.ClientPutStartRequest, rid: int) -> Any:
        upload.start(req.size)
        return client_pb2.ClientPutStartReply(upload_id=1)

    def put_chunk(conn: Any, req: client_pb2.ClientChunkRequest, rid: int) -> Any:
        upload.write(req.offset, conn.current_trailer)
        return client_pb2.ClientAck()

    dispatcher.register(_PUT_START_M, put_start)
    dispatcher.register(_PUT_CHUNK_M, put_chunk)
    dispatcher.register(_PUT_M, lambda conn, req, rid: client_pb2.ClientPutReply())
    listener = Listener(loop, bind_listener("127.0.0.1:0"), token, dispatcher, lambda conn: None,
                        role="client server", tls_context=tls.public_server_context(_settings(cert_dir)))
    loop.post(listener.start)
    ready(listener.address)

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()  # until the benchmark closes our stdin (or exits)
        loop.post(loop.stop)

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    loop.run_forever()


def _grpc_replies(batch: bytes, upload: _Upload) -> bytes:
    """Handle every entry of a request batch; the batch of their replies."""
    view = memoryview(batch)
    out = []
    pos = 0
    while pos < len(view):
        kind, body_len, trailer_len = _ENTRY.unpack_from(view, pos)
        pos += _ENTRY.size
        body = view[pos : pos + body_len]
        trailer = view[pos + body_len : pos + body_len + trailer_len]
        pos += body_len + trailer_len
        reply: Any
        if kind == _SUBMIT:
            client_pb2.ClientSubmitRequest.FromString(body)
            reply = client_pb2.ClientAck()
        elif kind == _PUT_START:
            upload.start(client_pb2.ClientPutStartRequest.FromString(body).size)
            reply = client_pb2.ClientPutStartReply(upload_id=1)
        elif kind == _PUT_CHUNK:
            upload.write(client_pb2.ClientChunkRequest.FromString(body).offset, trailer)
            reply = client_pb2.ClientAck()
        else:
            client_pb2.ClientPutRequest.FromString(body)
            reply = client_pb2.ClientPutReply()
        data = reply.SerializeToString()
        out.append(_ENTRY.pack(kind, len(data), 0))
        out.append(data)
    return b"".join(out)


def _serve_grpc(cert_dir: str, ready: Callable[[str], None]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    grpc = import_grpc()

    def stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        upload = _Upload()
        for batch in requests:
            yield _grpc_replies(batch, upload)

    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=_GRPC_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "nbray.bench.ClientTransport", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}),))
    settings = _settings(cert_dir)
    with open(settings.server_key, "rb") as k, open(settings.server_cert, "rb") as c:
        credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    ready(f"127.0.0.1:{port}")
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    server.stop(0)


# ---- the client side (this process) ------------------------------------------------------------


class _NbrayClient:
    def __init__(self, address: str, cert_dir: str, token: bytes) -> None:
        from nbray.common.config import get_config
        from nbray.rpc.connection import Dispatcher
        from nbray.rpc.eventloop import EventLoop
        from nbray.rpc.handshake import connect_socket
        from nbray.rpc.tls_connection import make_connection

        self.loop = EventLoop("bench-transport-client")
        self.loop.start_thread()
        sock = connect_socket(address, token, "client", 10.0,
                              tls_context=tls.public_client_context(_settings(cert_dir)),
                              server_hostname="127.0.0.1")
        self.conn = make_connection(self.loop, sock, Dispatcher(), name="bench transport server")
        self.conn.start()
        self.seq = 0
        self.args = bytes(ARGS_BYTES)
        self.chunk_bytes = get_config().object_chunk_bytes

    def submit(self, count: int) -> None:
        futures = []
        for _ in range(count):
            self.seq += 1
            futures.append(self.conn.call(_SUBMIT_M, _submit_request(self.seq), trailer=self.args))
        for f in futures:
            f.result(30.0)

    def put(self, data: memoryview, in_flight_bytes: int) -> None:
        chunk_bytes = self.chunk_bytes
        window = max(1, in_flight_bytes // chunk_bytes)
        self.conn.call(_PUT_START_M, client_pb2.ClientPutStartRequest(size=data.nbytes)).result(30.0)
        pending: list[Any] = []
        for offset in range(0, data.nbytes, chunk_bytes):
            if len(pending) >= window:
                pending.pop(0).result(30.0)
            piece = data[offset : offset + chunk_bytes]
            pending.append(self.conn.call(_PUT_CHUNK_M, client_pb2.ClientChunkRequest(
                transfer_id=1, offset=offset, length=piece.nbytes), trailer=piece))
        for f in pending:
            f.result(30.0)
        self.conn.call(_PUT_M, client_pb2.ClientPutRequest(upload_id=1, size=data.nbytes)).result(30.0)

    def close(self) -> None:
        self.conn.close("benchmark over")
        self.loop.post(self.loop.stop)
        self.loop.join(5.0)


class _GrpcClient:
    """One bidirectional stream; the request iterator joins what is queued."""

    def __init__(self, address: str, cert_dir: str) -> None:
        grpc = import_grpc()
        with open(_settings(cert_dir).ca_cert, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        self.channel = grpc.secure_channel(address, credentials, options=_GRPC_OPTIONS)
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.replies = self.channel.stream_stream(_GRPC_METHOD)(self._requests())
        self.seq = 0
        self.args = bytes(ARGS_BYTES)
        self.chunk_bytes = GRPC_CHUNK_BYTES

    def _requests(self) -> Iterator[bytes]:
        while True:
            entry = self.queue.get()
            if entry is None:
                return
            batch, size = [entry], len(entry)
            while size < _BATCH_BYTES:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield b"".join(batch)
                    return
                batch.append(more)
                size += len(more)
            yield batch[0] if len(batch) == 1 else b"".join(batch)

    def _send(self, kind: int, request: Any, trailer: Any = b"") -> None:
        body = request.SerializeToString()
        self.queue.put(b"".join((_ENTRY.pack(kind, len(body), len(trailer)), body, trailer)))

    def _receive(self) -> int:
        """Wait for the next reply batch; the number of replies in it."""
        view = memoryview(next(self.replies))
        count = pos = 0
        while pos < len(view):
            kind, body_len, _ = _ENTRY.unpack_from(view, pos)
            pos += _ENTRY.size
            cls = client_pb2.ClientPutStartReply if kind == _PUT_START else (
                client_pb2.ClientPutReply if kind == _PUT_END else client_pb2.ClientAck)
            cls.FromString(view[pos : pos + body_len])
            pos += body_len
            count += 1
        return count

    def submit(self, count: int) -> None:
        for _ in range(count):
            self.seq += 1
            self._send(_SUBMIT, _submit_request(self.seq), self.args)
        while count > 0:
            count -= self._receive()

    def put(self, data: memoryview, in_flight_bytes: int) -> None:
        chunk_bytes = self.chunk_bytes
        window = max(1, in_flight_bytes // chunk_bytes)
        self._send(_PUT_START, client_pb2.ClientPutStartRequest(size=data.nbytes))
        self._receive()
        pending = 0
        for offset in range(0, data.nbytes, chunk_bytes):
            while pending >= window:
                pending -= self._receive()
            piece = data[offset : offset + chunk_bytes]
            self._send(_PUT_CHUNK, client_pb2.ClientChunkRequest(
                transfer_id=1, offset=offset, length=piece.nbytes), piece)
            pending += 1
        while pending > 0:
            pending -= self._receive()
        self._send(_PUT_END, client_pb2.ClientPutRequest(upload_id=1, size=data.nbytes))
        self._receive()

    def close(self) -> None:
        self.queue.put(None)
        self.channel.close()


# ---- the comparison ----------------------------------------------------------------------------


def _start_server(kind: str, cert_dir: str, token: bytes) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "nbray.scripts.microbenchmark_transport", "--serve", kind,
                             "--cert-dir", cert_dir, "--token", token.hex()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ADDRESS "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the {kind} benchmark server did not start (it said {line!r})")
    return proc, line[len("ADDRESS "):]


def _stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _rate(fn: Callable[[], None], per_call: int, duration_s: float) -> float:
    count = 0
    start = time.perf_counter()
    while True:
        fn()
        count += per_call
        elapsed = time.perf_counter() - start
        if elapsed >= duration_s:
            return count / elapsed


def _measure(client: Any, data: memoryview, quick: bool, want: Callable[[str], bool]) -> dict[str, float]:
    from nbray.common.config import get_config

    config = get_config()
    duration, puts = (0.3, 1) if quick else (1.5, 3)
    out: dict[str, float] = {}
    if want(TASKS_ASYNC):
        out[TASKS_ASYNC] = _rate(lambda: client.submit(SUBMIT_BURST), SUBMIT_BURST, duration)
    if want(ROUND_TRIPS):
        out[ROUND_TRIPS] = _rate(lambda: client.submit(1), 1, duration)
    if want(PUT):
        best = float("inf")
        for _ in range(puts):
            start = time.perf_counter()
            client.put(data, config.object_chunk_bytes * config.object_pull_window_chunks)
            best = min(best, time.perf_counter() - start)
        out[PUT] = data.nbytes / best / 1e9
    return out


def compare(quick: bool = False, want: Callable[[str], bool] | None = None,
            rounds: int | None = None) -> dict[str, dict[str, list[float]]]:
    """{case: {transport: [figure per round]}}, both over TLS, measured
    alternately (the order swaps each round). Raises GrpcMissingError."""
    import numpy as np

    from nbray.rpc.auth import generate_token
    from nbray.rpc.tls_certs import init_directory

    import_grpc()
    selected = want or (lambda name: True)
    rounds = rounds or (1 if quick else 3)
    cases = [c for c in CASES if any(selected(result_name(c, t)) for t in TRANSPORTS)]
    figures: dict[str, dict[str, list[float]]] = {c: {t: [] for t in TRANSPORTS} for c in cases}
    data = memoryview(np.ones(PUT_BYTES if PUT in cases else 0, dtype=np.uint8).data).cast("B")
    token = generate_token()
    temp = tempfile.mkdtemp(prefix="nbray-bench-transport-")
    servers: list[subprocess.Popen[str]] = []
    clients: dict[str, Any] = {}
    try:
        cert_dir = init_directory(os.path.join(temp, "certs"), ["127.0.0.1", "localhost"]).directory
        nbray_proc, nbray_address = _start_server("nbray", cert_dir, token)
        servers.append(nbray_proc)
        grpc_proc, grpc_address = _start_server("grpc", cert_dir, token)
        servers.append(grpc_proc)
        clients["nbray framing"] = _NbrayClient(nbray_address, cert_dir, token)
        clients["gRPC"] = _GrpcClient(grpc_address, cert_dir)
        for client in clients.values():  # connections warm, handshakes done
            client.submit(10)
        for i in range(rounds):
            for transport in (TRANSPORTS if i % 2 == 0 else TRANSPORTS[::-1]):
                for case, value in _measure(clients[transport], data, quick, lambda c: c in cases).items():
                    figures[case][transport].append(value)
    finally:
        for client in clients.values():
            client.close()
        for proc in servers:
            _stop_server(proc)
        shutil.rmtree(temp, ignore_errors=True)
    return figures


def medians(figures: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Flat results, one per case and transport (``result_name``)."""
    return {result_name(case, t): statistics.median(values)
            for case, per_transport in figures.items() for t, values in per_transport.items() if values}


def format_comparison(figures: dict[str, dict[str, list[float]]]) -> str:
    width = max(len(f"{c} ({u})") for c, u in CASES.items()) + 2
    lines = [f"{'case (over TLS, median)':<{width}} {'nbray framing':>14} {'gRPC':>12} {'gRPC/nbray':>11}"]
    for case, per_transport in figures.items():
        ours = statistics.median(per_transport["nbray framing"])
        theirs = statistics.median(per_transport["gRPC"])
        lines.append(f"{case + ' (' + CASES[case] + ')':<{width}} {ours:>14,.2f} {theirs:>12,.2f} "
                     f"{theirs / ours:>10.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.microbenchmark_transport",
                                     description="the notebook client's channel: nbray framing vs gRPC, over TLS")
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of both transports (default 3)")
    parser.add_argument("--json", action="store_true", help="every round's figures as JSON")
    parser.add_argument("--serve", choices=("nbray", "grpc"), help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        def ready(address: str) -> None:
            print(f"ADDRESS {address}", flush=True)

        if args.serve == "nbray":
            _serve_nbray(args.cert_dir, bytes.fromhex(args.token), ready)
        else:
            _serve_grpc(args.cert_dir, ready)
        return 0
    try:
        figures = compare(args.quick, rounds=args.rounds)
    except GrpcMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else format_comparison(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
