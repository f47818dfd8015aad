"""The authenticated framed transport, over real sockets."""

import os
import socket
import struct

import pytest

from nbray.exceptions import AuthenticationError
from nbray.protocol import gcs_pb2, method
from nbray.rpc.connection import HEADER, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handshake import MAGIC, Listener, bind_listener, connect, connect_socket
from nbray.testing import wait_for_condition

KV_GET = method("GcsService.KVGet")
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server():
    token = os.urandom(32)
    loop = EventLoop("test-server")
    dispatcher = Dispatcher()
    calls = []

    def handler(conn, req, rid):
        calls.append(req.key)
        return gcs_pb2.KVGetReply(found=True, value=req.key[::-1])

    dispatcher.register(KV_GET, handler)
    listener = Listener(loop, bind_listener("127.0.0.1:0"), token, dispatcher, lambda c: None, role="GCS",
                        handshake_timeout_s=1.0)
    loop.post(listener.start)
    loop.start_thread()
    yield listener.address, token, calls, listener
    loop.post(listener.close)
    loop.stop()
    loop.join(5)


def client_loop():
    loop = EventLoop("test-client")
    loop.start_thread()
    return loop


def test_authenticated_call_round_trips(server):
    address, token, calls, _ = server
    loop = client_loop()
    conn = connect(loop, address, token, Dispatcher(), role="driver", timeout_s=5)
    reply = conn.call_sync(KV_GET, gcs_pb2.KVGetRequest(key=b"abc"), timeout_s=5)
    assert reply.value == b"cba" and calls == [b"abc"]
    futures = [conn.call(KV_GET, gcs_pb2.KVGetRequest(key=bytes([i]))) for i in range(200)]
    assert [f.result(5).value for f in futures] == [bytes([i]) for i in range(200)]
    conn.close()
    loop.stop()


def test_wrong_token_is_refused_before_any_payload_is_parsed(server):
    address, token, calls, listener = server
    with pytest.raises(AuthenticationError, match="refused the cluster token"):
        connect_socket(address, os.urandom(32), "driver", timeout_s=5)
    # a raw client that sends a request right after a bad preface gets nothing handled
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    body = gcs_pb2.KVGetRequest(key=b"canary").SerializeToString()
    s.sendall(MAGIC + os.urandom(32) + HEADER.pack(len(body), 0, KV_GET.id, 0, 1) + body)
    assert s.recv(1) == b"\x01"
    try:
        assert s.recv(100) == b""  # closed (or reset, since our request was never read)
    except ConnectionResetError:
        pass
    s.close()
    assert calls == []
    assert listener.refused >= 2


def test_garbage_preface_is_refused(server):
    address, _, calls, _ = server
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40)
    assert s.recv(1) == b"\x02"
    s.close()
    assert calls == []


def test_silent_peer_is_dropped_after_handshake_timeout(server):
    address, _, _, _ = server
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    assert s.recv(1) == b""  # closed by the server after its 1 s handshake deadline
    s.close()


def _connect_from_subprocess(address, token, env_override):
    """A client process that claims other versions (the server keeps its own)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nbray.rpc.handshake import connect_socket\n"
        "from nbray.exceptions import VersionMismatchError\n"
        f"try:\n    connect_socket({address!r}, bytes.fromhex({token.hex()!r}), 'driver', 5)\n"
        "except VersionMismatchError as e:\n    print('MISMATCH', e)\n    sys.exit(3)\n"
    )
    env = dict(os.environ, **env_override)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)


def test_version_mismatch_names_both_versions(server):
    address, token, calls, _ = server
    result = _connect_from_subprocess(address, token, {"NBRAY_TESTING_VERSION_OVERRIDE": "9.9.9"})
    assert result.returncode == 3, result.stderr
    assert "9.9.9" in result.stdout and "0.1.0" in result.stdout


def test_python_minor_version_mismatch_is_refused(server):
    address, token, _, _ = server
    result = _connect_from_subprocess(address, token, {"NBRAY_TESTING_PYTHON_VERSION_OVERRIDE": "3.99.0"})
    assert result.returncode == 3, result.stderr
    assert "3.99.0" in result.stdout and "3.11" in result.stdout


def test_oversized_frame_closes_only_that_connection(server):
    address, token, calls, _ = server
    bad = connect_socket(address, token, "driver", timeout_s=5)
    bad.setblocking(True)
    bad.sendall(struct.pack("<IIHHI", 0xFFFFFFF0, 0, KV_GET.id, 0, 1))
    bad.settimeout(5)
    assert bad.recv(10) == b""
    bad.close()
    loop = client_loop()
    good = connect(loop, address, token, Dispatcher(), role="driver", timeout_s=5)
    assert good.call_sync(KV_GET, gcs_pb2.KVGetRequest(key=b"ok"), timeout_s=5).value == b"ko"
    good.close()
    loop.stop()


def test_malformed_body_gets_an_error_reply_and_the_server_survives(server):
    address, token, calls, _ = server
    s = connect_socket(address, token, "driver", timeout_s=5)
    s.setblocking(True)
    junk = b"\xff\xff\xff\xff\x0f"
    s.sendall(HEADER.pack(len(junk), 0, KV_GET.id, 0, 7) + junk)
    header = s.recv(16)
    _, _, _, kind, rid = HEADER.unpack(header)
    assert (kind, rid) == (3, 7)  # an error reply to request 7
    s.close()
    assert calls == []


def test_large_trailers_land_in_the_callers_buffer_and_release_after_sending():
    """Object chunks: the reply's trailer is read straight into the caller's
    buffer, and the server's on_sent runs only once the socket took it all."""
    token = os.urandom(32)
    loop = EventLoop("test-trailer-server")
    dispatcher = Dispatcher()
    payload = bytearray(os.urandom(1 << 20)) * 24  # 24 MiB: many socket writes
    sent = []

    def handler(conn, req, rid):
        start = int(req.key)
        view = memoryview(payload)[start:start + (8 << 20)]
        conn.reply(rid, KV_GET, gcs_pb2.KVGetReply(found=True), trailer=view,
                   on_sent=lambda: sent.append(start))
        return None

    dispatcher.register(KV_GET, handler)
    listener = Listener(loop, bind_listener("127.0.0.1:0"), token, dispatcher, lambda c: None, role="GCS")
    loop.post(listener.start)
    loop.start_thread()
    client = client_loop()
    try:
        conn = connect(client, listener.address, token, Dispatcher(), role="raylet", timeout_s=5)
        target = bytearray(len(payload))
        view = memoryview(target)
        futures = [conn.call(KV_GET, gcs_pb2.KVGetRequest(key=str(off).encode()),
                             trailer_into=view[off:off + (8 << 20)])
                   for off in range(0, len(payload), 8 << 20)]
        assert all(f.result(10).found for f in futures)
        assert target == payload
        wait_for_condition(lambda: sorted(sent) == [0, 8 << 20, 16 << 20], timeout=5)
        # small calls still work on the same connection afterwards
        conn.call_sync(KV_GET, gcs_pb2.KVGetRequest(key=b"0"), timeout_s=5)
        conn.close()
    finally:
        client.stop()
        loop.post(listener.close)
        loop.stop()
        loop.join(5)
