"""The TLS connection's edges, over a loopback pair with real event loops: big
frames through many partial writes, and records that wait inside OpenSSL
where epoll cannot see them."""

from __future__ import annotations

import fcntl
import hashlib
import os
import select
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator

import pytest

from nbray.protocol import method, raylet_pb2
from nbray.rpc import tls, tls_socket
from nbray.rpc.connection import READ_BUFFER_BYTES, Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop, Future
from nbray.rpc.tls_certs import TlsFiles, init_directory
from nbray.rpc.tls_connection import TlsConnection, make_connection
from nbray.rpc.tls_socket import TlsSocket

pytestmark = pytest.mark.timeout(60)

PULL = method("RayletService.PullChunk")
MB = 1024 * 1024
BIG_BYTES = 50 * MB
# Small kernel buffers: a 50 MB frame then needs hundreds of partial writes.
SMALL_SOCKET_BUFFER_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_directory(str(tmp_path_factory.mktemp("certs")), ["localhost", "127.0.0.1"])


def socket_pair(files: TlsFiles, buffer_bytes: int | None = None,
                receive_buffer_bytes: int | None = None) -> tuple[TlsSocket, TlsSocket]:
    """A handshaken (server, client) pair over loopback TCP."""
    settings = tls.TlsSettings(use_tls=True, server_cert=files.server_cert, server_key=files.server_key,
                               ca_cert=files.ca_cert)
    server_ctx = tls.cluster_server_context(settings)
    client_ctx = tls.cluster_client_context(settings)
    assert server_ctx is not None and client_ctx is not None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        if receive_buffer_bytes is not None:  # set before accept: the window scale depends on it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        raw_client = socket.create_connection(listener.getsockname(), timeout=10)
        raw_server, _ = listener.accept()
    for raw in (raw_client, raw_server):
        if buffer_bytes is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    raw_server.settimeout(10)
    server = TlsSocket(raw_server, server_ctx, server_side=True)
    client = TlsSocket(raw_client, client_ctx, server_side=False)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.handshake(10.0, "client")
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    client.handshake(10.0, "server")
    thread.join(10)
    assert not errors and not thread.is_alive()
    return server, client


class Pair:
    """Two TLS connections, each served by its own event loop thread."""

    def __init__(self, files: TlsFiles, server_dispatcher: Dispatcher, buffer_bytes: int | None = None,
                 receive_buffer_bytes: int | None = None) -> None:
        server_sock, client_sock = socket_pair(files, buffer_bytes, receive_buffer_bytes)
        self.loops = [EventLoop("tls-test-server"), EventLoop("tls-test-client")]
        self.server = make_connection(self.loops[0], server_sock, server_dispatcher, name="server")
        self.client = make_connection(self.loops[1], client_sock, Dispatcher(), name="client")
        assert isinstance(self.server, TlsConnection) and isinstance(self.client, TlsConnection)
        for loop, conn in zip(self.loops, (self.server, self.client)):
            conn.start()
            loop.start_thread()

    def close(self) -> None:
        for loop, conn in zip(self.loops, (self.server, self.client)):
            loop.post(conn.close)
            loop.post(loop.stop)
        for loop in self.loops:
            loop.join(10)
            loop.close()


@pytest.fixture
def closing() -> Iterator[list[Pair]]:
    pairs: list[Pair] = []
    yield pairs
    for pair in pairs:
        pair.close()


def count_partial_flushes(sock: TlsSocket) -> list[int]:
    """Count the flushes the kernel did not take whole."""
    partial = [0]
    flush = sock.flush

    def counting() -> bool:
        drained = flush()
        partial[0] += not drained
        return drained

    sock.flush = counting  # type: ignore[method-assign]
    return partial


def test_50_mb_each_way_in_one_call_arrive_intact_through_partial_writes(
        certs: TlsFiles, closing: list[Pair]) -> None:
    request_payload = os.urandom(BIG_BYTES)
    reply_payload = os.urandom(BIG_BYTES)
    seen: list[str] = []
    sent = threading.Event()
    dispatcher = Dispatcher()

    def pull(conn: Connection, req: raylet_pb2.PullChunkRequest, rid: int) -> None:
        assert conn.current_trailer is not None
        seen.append(hashlib.sha256(conn.current_trailer).hexdigest())
        conn.reply(rid, PULL.id, raylet_pb2.PullChunkReply(total_size=BIG_BYTES), trailer=reply_payload,
                   on_sent=sent.set)

    dispatcher.register(PULL, pull)
    pair = Pair(certs, dispatcher, SMALL_SOCKET_BUFFER_BYTES)
    closing.append(pair)
    assert isinstance(pair.server.sock, TlsSocket) and isinstance(pair.client.sock, TlsSocket)
    server_partial = count_partial_flushes(pair.server.sock)
    client_partial = count_partial_flushes(pair.client.sock)
    into = bytearray(BIG_BYTES)
    # From this (non-loop) thread: the whole 50 MB trailer goes to the
    # connection in one send, most of it queued behind a full socket.
    future: Future = pair.client.call(PULL, raylet_pb2.PullChunkRequest(offset=0, length=BIG_BYTES),
                                      trailer=request_payload, trailer_into=into, timeout_s=50)
    reply = future.result(55)
    assert reply.total_size == BIG_BYTES
    assert seen == [hashlib.sha256(request_payload).hexdigest()]
    assert into == reply_payload
    assert sent.wait(10)
    assert client_partial[0] > 10 and server_partial[0] > 10
    assert not pair.client.closed and not pair.server.closed


def test_frames_left_inside_openssl_are_dispatched_without_another_epoll_event(
        certs: TlsFiles, closing: list[Pair], monkeypatch: pytest.MonkeyPatch) -> None:
    # A frame bigger than the read buffer, then small frames, all in the
    # kernel before the server reads: one read moves everything into
    # OpenSSL, the big frame completes, and the small frames wait where
    # epoll cannot see them. Only the connection knows they are there.
    monkeypatch.setattr(tls_socket, "RAW_READ_BYTES", 8 * MB)  # one read takes all the kernel holds
    big = os.urandom(READ_BUFFER_BYTES + MB // 2)
    count = 50
    got: list[int] = []
    all_in = threading.Event()
    gate = threading.Event()
    dispatcher = Dispatcher()

    def pull(conn: Connection, req: raylet_pb2.PullChunkRequest, rid: int) -> None:
        assert conn.current_trailer is not None
        got.append(req.offset)
        if req.offset == 0:
            assert conn.current_trailer == big
        if len(got) == count + 1:
            all_in.set()

    dispatcher.register(PULL, pull)
    pair = Pair(certs, dispatcher, receive_buffer_bytes=4 * MB)
    closing.append(pair)
    pair.loops[0].post(gate.wait, 20)  # the server is busy
    # From this thread: each frame goes into the socket at once.
    pair.client.send_oneway(PULL, raylet_pb2.PullChunkRequest(offset=0, length=len(big)), trailer=big)
    for i in range(1, count + 1):
        pair.client.send_oneway(PULL, raylet_pb2.PullChunkRequest(offset=i, length=100), trailer=b"x" * 100)
    assert isinstance(pair.client.sock, TlsSocket) and not pair.client.sock.cipher_pending()
    deadline = time.monotonic() + 20
    # Until the kernel has delivered every byte to the server's socket.
    while fcntl.ioctl(pair.client.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0":
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)
    gate.set()
    assert all_in.wait(20), f"{len(got)} of {count + 1} frames dispatched"
    assert got == list(range(count + 1))


def test_a_reader_gets_plaintext_already_decrypted_inside_openssl(certs: TlsFiles) -> None:
    server, client = socket_pair(certs)
    try:
        message = os.urandom(40_000)  # three records
        client.sendall(message)
        server.setblocking(False)
        readable, _, _ = select.select([server], [], [], 10)
        assert readable
        got = bytearray()
        part = bytearray(1000)
        # Wait until every record is out of the kernel; then epoll would
        # report nothing more, and the rest must come from OpenSSL.
        while len(got) < len(message):
            try:
                n = server.recv_into(part)
            except BlockingIOError:
                select.select([server], [], [], 10)
                continue
            assert n
            got += part[:n]
            if len(got) == 1000:
                assert server.more  # the buffer filled: more plaintext may wait
        assert bytes(got) == message
        assert select.select([server], [], [], 0)[0] == []
        assert not server.has_buffered()
        with pytest.raises(BlockingIOError):
            server.recv_into(part)
    finally:
        server.close()
        client.close()


def test_a_close_ends_the_stream_after_the_data_and_a_reset_raises(certs: TlsFiles) -> None:
    server, client = socket_pair(certs)
    try:
        client.sendall(b"last words")
        client.close()
        server.settimeout(10)
        got = bytearray()
        while chunk := server.recv(100):
            got += chunk
        assert bytes(got) == b"last words"
    finally:
        server.close()
    server, client = socket_pair(certs)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, not a FIN
        server.settimeout(10)
        with pytest.raises(ConnectionResetError):
            server.recv(100)
    finally:
        server.close()


def test_calls_from_another_thread_while_the_loop_is_busy_leave_together_and_in_order(
        certs: TlsFiles, closing: list[Pair]) -> None:
    count = 200
    got: list[int] = []
    all_in = threading.Event()
    dispatcher = Dispatcher()

    def pull(conn: Connection, req: raylet_pb2.PullChunkRequest, rid: int) -> None:
        got.append(req.offset)
        if len(got) == count:
            all_in.set()

    dispatcher.register(PULL, pull)
    pair = Pair(certs, dispatcher)
    closing.append(pair)
    sock = pair.client.sock
    assert isinstance(sock, TlsSocket)
    encrypted: list[int] = []
    encrypt = sock.encrypt

    def counting(data: object) -> None:
        encrypted.append(1)
        encrypt(data)

    sock.encrypt = counting  # type: ignore[method-assign]
    gate = threading.Event()
    busy = threading.Event()

    def hold_the_loop() -> None:
        busy.set()
        gate.wait(20)

    pair.loops[1].post(hold_the_loop)  # the client's loop is awake and busy
    assert busy.wait(10)
    for i in range(count):
        pair.client.send_oneway(PULL, raylet_pb2.PullChunkRequest(offset=i, length=1))
    assert encrypted == []  # queued for the loop, not written from this thread
    gate.set()
    assert all_in.wait(20), f"{len(got)} of {count} frames dispatched"
    assert got == list(range(count))
    assert len(encrypted) <= 2  # one encryption for the burst (a record holds 16 KiB)
