"""Seeded hostile input for every listening port of a cluster (test process).

Frame fuzzing of the nbray wire protocol (GCS, raylet, core-worker and
client-server ports), in two modes:

* ``fuzz_unauthenticated``: one fresh connection per case, never a valid
  token: random bytes, truncated prefaces (cut inside the magic or inside
  the *real* token), bad magic, wrong tokens followed by an oversized or
  malformed hello, and well-formed frames whose every bytes field holds a
  pickle that would create a canary file if anything loaded it. Each case
  must end with at most one status byte and a closed connection.
* ``fuzz_authenticated``: after a real handshake: frames with malformed
  protobuf bodies for real method ids (each must get an error reply on a
  connection that keeps working), unknown method ids, frames of stray
  kinds, oversized length headers and truncated frames (each must close
  that connection, and only that one). Handlers never run: every body
  sent here is checked to fail parsing first.

``fuzz_http`` does the same for the dashboard: malformed request lines,
huge headers, bad methods, bad lengths, traversal paths, random bytes;
each response must be absent or a well-formed status below 500.

Every generator is a pure function of its seed, so a failing case is
replayed by its seed and index. The ``/proc`` helpers find what a set of
processes listens on and how much memory they hold.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import random
import re
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from nbray.protocol import METHODS, Method, common_pb2
from nbray.rpc.connection import HEADER, HEADER_SIZE, KIND_ERROR, KIND_ONEWAY, KIND_REPLY, KIND_REQUEST
from nbray.rpc.handshake import MAGIC, PREFACE_SIZE, connect_socket

# Services each kind of daemon serves (the fuzzer aims malformed bodies at these ids).
SERVICES_BY_ROLE = {
    "gcs": ("GcsService", "SubscriberService"),
    "raylet": ("RayletService", "ZygoteEventsService", "ZygoteService"),
    "worker": ("CoreWorkerService",),
    "client_server": ("ClientService",),
}
# Bytes that make any protobuf parse fail, whatever precedes them.
_BAD_TAILS = (b"\x0f", b"\x00", b"\x08\xff", b"\x0a\x7f", b"\x0b", b"\x0a\xff\xff\xff\xff\x0f")
_STATUS_BYTES = frozenset({1, 2})  # handshake.STATUS_BAD_TOKEN, STATUS_BAD_PROTOCOL


@dataclasses.dataclass
class FuzzReport:
    """What one fuzzing run sent and saw; ``problems`` must stay empty."""

    target: str
    mode: str
    seed: int
    cases: int = 0
    connections: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[str] = dataclasses.field(default_factory=list)

    def problem(self, index: int, kind: str, what: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(f"{self.target} {self.mode} seed={self.seed} case={index} ({kind}): {what}")

    def summary(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        return (f"{self.target} [{self.mode}] {self.cases} cases, {self.connections} connections, "
                f"{self.seconds:.1f} s ({rate:.0f}/s), outcomes {dict(self.outcomes)}")


# ---- payloads ---------------------------------------------------------------------


def canary_pickle(path: str) -> bytes:
    """A pickle whose loading creates `path` (it names no class of nbray or of the test)."""

    class _Touch:
        def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
            return pathlib.Path.touch, (pathlib.Path(path),)

    return pickle.dumps(_Touch(), protocol=5)


def fill_bytes_fields(message: Message, payload: bytes, depth: int = 2) -> Message:
    """Put `payload` into every bytes field of `message` (and of nested messages)."""
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_BYTES:
            if field.is_repeated:
                getattr(message, field.name).append(payload)
            elif not field.containing_oneof or not message.WhichOneof(field.containing_oneof.name):
                setattr(message, field.name, payload)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth > 0 and not field.message_type.GetOptions().map_entry:
            if field.is_repeated:
                fill_bytes_fields(getattr(message, field.name).add(), payload, depth - 1)
            elif not field.containing_oneof or not message.WhichOneof(field.containing_oneof.name):
                fill_bytes_fields(getattr(message, field.name), payload, depth - 1)
    return message


def frame(method_id: int, kind: int, request_id: int, body: bytes, trailer: bytes = b"") -> bytes:
    return HEADER.pack(len(body), len(trailer), method_id, kind, request_id) + body + trailer


def canary_frame(method: Method, payload: bytes, request_id: int = 1) -> bytes:
    """A well-formed request frame with `payload` in every bytes field and in the trailer."""
    body = fill_bytes_fields(method.request_cls(), payload).SerializeToString()
    return frame(method.id, KIND_REQUEST, request_id, body, payload)


def malformed_body(rng: random.Random, method: Method) -> bytes:
    """Bytes that look like protobuf but fail to parse as `method`'s request."""
    prefix = rng.randbytes(rng.randrange(0, 48))
    tail = rng.choice(_BAD_TAILS)
    for body in (prefix + tail, tail):
        try:
            method.request_cls().ParseFromString(body)
        except DecodeError:
            return body
    raise AssertionError(f"no malformed body found for {method.full_name}")


def methods_for(role: str) -> list[Method]:
    services = SERVICES_BY_ROLE[role]
    return [m for m in METHODS if m.service in services]


# ---- unauthenticated frames -------------------------------------------------------


def unauthenticated_cases(seed: int, count: int, token: bytes, canary: bytes,
                          methods: list[Method]) -> Iterator[tuple[str, bytes]]:
    """(kind, bytes to send on a fresh connection); never a complete valid preface."""
    rng = random.Random(seed)
    wrong = bytes(b ^ 0xFF for b in token)
    hello = common_pb2.Hello(nbray_version="0", python_version="0", role="fuzzer").SerializeToString()
    for _ in range(count):
        pick = rng.randrange(9)
        if pick == 0:
            yield "random", rng.randbytes(rng.randrange(0, 256))
        elif pick == 1:
            yield "truncated_magic", MAGIC[: rng.randrange(len(MAGIC))]
        elif pick == 2:
            # A prefix of the real token must not authenticate anything.
            yield "truncated_token", MAGIC + token[: rng.randrange(len(token))]
        elif pick == 3:
            bad_magic = bytearray(MAGIC)
            bad_magic[rng.randrange(len(bad_magic))] ^= 1 << rng.randrange(8)
            yield "bad_magic", bytes(bad_magic) + token + HEADER.pack(len(hello), 0, 0, KIND_ONEWAY, 0) + hello
        elif pick == 4:
            yield "wrong_token_oversized_hello", MAGIC + wrong + HEADER.pack(
                rng.choice([1 << 20, 0xFFFFFFFF, rng.randrange(4097, 1 << 31)]), 0, 0, KIND_ONEWAY, 0)
        elif pick == 5:
            yield "wrong_token_canary", (MAGIC + wrong + HEADER.pack(len(hello), 0, 0, KIND_ONEWAY, 0) + hello
                                         + canary_frame(rng.choice(methods), canary))
        elif pick == 6:
            yield "no_preface_canary", canary_frame(rng.choice(methods), canary)
        elif pick == 7:
            yield "oversized_header", HEADER.pack(rng.randrange(1 << 29, 1 << 32), rng.randrange(1 << 32),
                                                  rng.choice(methods).id, KIND_REQUEST, 1) + rng.randbytes(24)
        else:
            near = bytearray(token)
            near[rng.randrange(len(near))] ^= 1 << rng.randrange(8)
            yield "one_bit_token", MAGIC + bytes(near) + HEADER.pack(len(hello), 0, 0, KIND_ONEWAY, 0) + hello


def _open(address: tuple[str, int], timeout_s: float, tls_context: ssl.SSLContext | None,
          server_hostname: str | None) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout_s)
    if tls_context is not None:
        try:
            return tls_context.wrap_socket(sock, server_hostname=server_hostname)
        except BaseException:
            sock.close()
            raise
    return sock


def send_and_drain(address: tuple[str, int], data: bytes, timeout_s: float, *,
                   tls_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                   max_reply_bytes: int = 1 << 20) -> tuple[bytes, bool]:
    """Send `data`, end the sending side, read until the server closes.

    Returns (what the server sent, whether it closed within `timeout_s`).
    A reset counts as closed."""
    deadline = time.monotonic() + timeout_s
    sock = _open(address, timeout_s, tls_context, server_hostname)
    received = bytearray()
    try:
        try:
            sock.sendall(data)
            if tls_context is None:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed first (reset, or not connected any more): read what it said
        while len(received) < max_reply_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(received), False
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return bytes(received), False
            except (ConnectionResetError, ssl.SSLError):
                return bytes(received), True
            if not chunk:
                return bytes(received), True
            received += chunk
        return bytes(received), False
    finally:
        sock.close()


def fuzz_unauthenticated(target: str, address: tuple[str, int], *, seed: int, count: int, token: bytes,
                         canary: bytes, methods: list[Method], timeout_s: float = 10.0) -> FuzzReport:
    """Each case on its own connection; the server must answer at most one status byte and close."""
    report = FuzzReport(target, "unauthenticated", seed)
    start = time.monotonic()
    for index, (kind, data) in enumerate(unauthenticated_cases(seed, count, token, canary, methods)):
        try:
            reply, closed = send_and_drain(address, data, timeout_s)
        except OSError as exc:
            report.problem(index, kind, f"could not connect: {exc}")
            report.outcomes["connect_failed"] += 1
            continue
        report.cases += 1
        report.connections += 1
        if not closed:
            report.problem(index, kind, f"connection still open after {timeout_s} s")
        elif len(reply) > 1 or (reply and reply[0] not in _STATUS_BYTES):
            report.problem(index, kind, f"unexpected reply {reply[:32]!r}")
        report.outcomes[f"status_{reply[0]}" if reply else "closed"] += 1
    report.seconds = time.monotonic() - start
    return report


# ---- authenticated frames ---------------------------------------------------------


class _AuthedPeer:
    """A blocking, authenticated connection that reads whole frames."""

    def __init__(self, address: str, token: bytes, timeout_s: float) -> None:
        self.sock = connect_socket(address, token, role="fuzzer", timeout_s=timeout_s, tls_context=None)
        self.sock.setblocking(True)
        self.sock.settimeout(timeout_s)
        self.buf = bytearray()

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        """(method_id, kind, request_id, body) or None when the server closed."""
        header = self._read(HEADER_SIZE)
        if header is None:
            return None
        body_len, trailer_len, mid, kind, rid = HEADER.unpack(header)
        data = self._read(body_len + trailer_len)
        if data is None:
            return None
        return mid, kind, rid, data[:body_len]

    def closed_by_server(self) -> bool:
        """True once the server has closed (after anything it still had to say)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True

    def close(self) -> None:
        self.sock.close()


def fuzz_authenticated(target: str, address: str, *, seed: int, count: int, token: bytes, methods: list[Method],
                       max_frame_bytes: int, timeout_s: float = 10.0) -> FuzzReport:
    """Hostile frames from a peer that passed the handshake (see the module docstring)."""
    report = FuzzReport(target, "authenticated", seed)
    rng = random.Random(seed)
    start = time.monotonic()
    peer: _AuthedPeer | None = None
    next_rid = 1

    def expect_error(rid: int, index: int, kind: str, codes: Iterable[str]) -> None:
        assert peer is not None
        got = peer.read_frame()
        if got is None:
            report.problem(index, kind, "the connection closed instead of an error reply")
            return
        mid, frame_kind, got_rid, body = got
        if frame_kind != KIND_ERROR or got_rid != rid:
            report.problem(index, kind, f"expected an error reply to {rid}, got kind {frame_kind} id {got_rid}")
            return
        error = common_pb2.RpcError()
        error.ParseFromString(body)
        if error.code not in codes:
            report.problem(index, kind, f"error code {error.code!r} ({error.message[:80]})")
        report.outcomes[f"error_{error.code}"] += 1

    for index in range(count):
        if peer is None:
            try:
                peer = _AuthedPeer(address, token, timeout_s)
            except (OSError, ConnectionError) as exc:
                report.problem(index, "connect", f"handshake failed: {exc}")
                break
            report.connections += 1
        next_rid = next_rid % 0xFFFFFFF0 + 1
        rid = next_rid
        method = rng.choice(methods)
        pick = rng.randrange(10)
        report.cases += 1
        if pick <= 3:
            kind = "malformed_body"
            trailer = rng.randbytes(rng.randrange(0, 64)) if pick == 3 else b""
            peer.sock.sendall(frame(method.id, KIND_REQUEST, rid, malformed_body(rng, method), trailer))
            expect_error(rid, index, kind, ("bad_request", "unimplemented"))
        elif pick == 4:
            kind = "unknown_method"
            peer.sock.sendall(frame(rng.randrange(len(METHODS), 1 << 16), KIND_REQUEST, rid, rng.randbytes(16)))
            expect_error(rid, index, kind, ("unknown_method",))
        elif pick == 5:
            # Stray kinds carry no answer; a malformed request right after must still get one.
            kind = "stray_kind"
            stray = rng.choice([KIND_REPLY, KIND_ERROR, KIND_ONEWAY, rng.randrange(4, 1 << 16)])
            junk = malformed_body(rng, method) if stray != KIND_ERROR else rng.randbytes(rng.randrange(0, 32))
            stray_rid = rng.randrange(1 << 32) if stray in (KIND_REPLY, KIND_ERROR) else 0
            probe = rid
            peer.sock.sendall(frame(method.id, stray, stray_rid, junk)
                              + frame(method.id, KIND_REQUEST, probe, malformed_body(rng, method)))
            expect_error(probe, index, kind, ("bad_request", "unimplemented"))
        elif pick <= 7:
            kind = "oversized_length"
            body_len = rng.randrange(max_frame_bytes + 1, 1 << 32)
            header = HEADER.pack(body_len, rng.randrange(1 << 16), method.id, KIND_REQUEST, rid)
            if rng.random() < 0.5:
                header = HEADER.pack(rng.randrange(64), rng.randrange(1 << 31, 1 << 32), method.id, KIND_REQUEST, rid)
            peer.sock.sendall(header + rng.randbytes(rng.randrange(0, 64)))
            if not peer.closed_by_server():
                report.problem(index, kind, "an oversized frame did not close the connection")
            report.outcomes["closed_oversized"] += 1
            peer.close()
            peer = None
        else:
            kind = "truncated_frame"
            body = malformed_body(rng, method)
            full = frame(method.id, KIND_REQUEST, rid, body + rng.randbytes(rng.randrange(1, 4096)))
            peer.sock.sendall(full[: rng.randrange(1, len(full))])
            peer.sock.shutdown(socket.SHUT_WR)
            if not peer.closed_by_server():
                report.problem(index, kind, "a truncated frame and EOF did not close the connection")
            report.outcomes["closed_truncated"] += 1
            peer.close()
            peer = None
    if peer is not None:
        peer.close()
    report.seconds = time.monotonic() - start
    return report


def hold_partial_prefaces(address: tuple[str, int], count: int, token: bytes, *,
                          tls_context: ssl.SSLContext | None = None) -> list[socket.socket]:
    """Open `count` connections that stop inside the preface and stay open (the caller closes them)."""
    held = []
    for i in range(count):
        sock = _open(address, 10.0, tls_context, None)
        sock.sendall((MAGIC + token)[: i % (PREFACE_SIZE - 1) + 1])
        held.append(sock)
    return held


def wait_all_closed_by_server(socks: list[socket.socket], timeout_s: float) -> list[int]:
    """Indices of sockets the server had not closed within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    still_open = []
    for i, sock in enumerate(socks):
        closed = False
        while not closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                closed = not sock.recv(4096)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
        if not closed:
            still_open.append(i)
    return still_open


# ---- HTTP ----------------------------------------------------------------------


_METHOD_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_!~*"


def http_cases(seed: int, count: int, *, host: str, paths: list[str], auth_header: bytes | None,
               canary: bytes) -> Iterator[tuple[str, bytes]]:
    """(kind, a whole request or garbage) for one fresh connection each."""
    rng = random.Random(seed)
    auth = b"Authorization: " + auth_header + b"\r\n" if auth_header else b""
    base_host = b"Host: " + host.encode() + b"\r\n"
    for _ in range(count):
        path = rng.choice(paths).encode()
        pick = rng.randrange(10)
        if pick == 0:
            yield "random", rng.randbytes(rng.randrange(1, 512))
        elif pick == 1:
            yield "bad_request_line", rng.choice([
                b"GET\r\n\r\n", b"GET " + path + b"\r\n\r\n", b"GET " + path + b" HTTP/9.9\r\n\r\n",
                b"G\x00T " + path + b" HTTP/1.1\r\n\r\n", b" " + path + b" HTTP/1.1\r\n\r\n",
                b"GET " + path + b" HTTP/1.1 extra\r\n\r\n", b"\r\n\r\n\r\n",
                b"GET /" + b"a" * rng.randrange(300, 200_000) + b" HTTP/1.1\r\n" + base_host + auth + b"\r\n"])
        elif pick == 2:
            size = rng.choice([70_000, 200_000, 1_100_000])
            yield "huge_header", (b"GET " + path + b" HTTP/1.1\r\n" + base_host + auth + b"X-Big: "
                                  + b"x" * size + b"\r\n\r\n")
        elif pick == 3:
            many = b"".join(b"X-H%d: v\r\n" % i for i in range(rng.randrange(200, 5000)))
            yield "many_headers", b"GET " + path + b" HTTP/1.1\r\n" + base_host + auth + many + b"\r\n"
        elif pick == 4:
            method = "".join(rng.choice(_METHOD_CHARS) for _ in range(rng.randrange(1, 24)))
            method = rng.choice([method, "TRACE", "CONNECT", "PROPFIND", "get", "DELETE", "PATCH", "PUT"])
            yield "bad_method", (method.encode() + b" " + path + b" HTTP/1.1\r\n" + base_host + auth
                                 + b"Content-Length: 0\r\n\r\n")
        elif pick == 5:
            length = rng.choice([b"-1", b"abc", b"99999999999999999999", b"10, 20", b"0x10", b" "])
            yield "bad_length", (b"POST " + path + b" HTTP/1.1\r\n" + base_host + auth + b"Content-Length: "
                                 + length + b"\r\n\r\n" + canary)
        elif pick == 6:
            chunk = rng.choice([b"zz\r\n", b"fffffffffffffff\r\n", b"-5\r\n", b"5\r\nab\r\n", b"0\r\nX"])
            yield "bad_chunked", (b"POST " + path + b" HTTP/1.1\r\n" + base_host + auth
                                  + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunk)
        elif pick == 7:
            evil = rng.choice([b"/api/../../etc/passwd", b"/api/%2e%2e/%2e%2e/etc/passwd", b"//etc/passwd",
                               b"/api/jobs/..%2f..%2f", b"/api/\x00", b"/api/jobs/" + b"%ff" * 50,
                               b"/static/../../auth_token", b"/api/packages/gcs/../../auth_token"])
            yield "traversal", b"GET " + evil + b" HTTP/1.1\r\n" + base_host + auth + b"\r\n"
        elif pick == 8:
            yield "truncated", (b"POST " + path + b" HTTP/1.1\r\n" + base_host + auth
                                + b"Content-Length: 100\r\n\r\n" + canary)[: rng.randrange(1, 60)]
        else:
            yield "canary_body", (b"POST " + path + b" HTTP/1.1\r\n" + base_host + auth
                                  + b"Content-Type: application/octet-stream\r\nContent-Length: "
                                  + str(len(canary)).encode() + b"\r\n\r\n" + canary)


def fuzz_http(target: str, address: tuple[str, int], *, seed: int, count: int, host: str, paths: list[str],
              auth_header: bytes | None, canary: bytes, secret: bytes, tls_context: ssl.SSLContext | None = None,
              server_hostname: str | None = None, timeout_s: float = 15.0) -> FuzzReport:
    """Each case on its own connection; no 5xx, no hang, and `secret` never in a response."""
    mode = "with token" if auth_header else "without token"
    report = FuzzReport(target, mode, seed)
    start = time.monotonic()
    for index, (kind, data) in enumerate(http_cases(seed, count, host=host, paths=paths, auth_header=auth_header,
                                                    canary=canary)):
        try:
            reply, closed = send_and_drain(address, data, timeout_s, tls_context=tls_context,
                                           server_hostname=server_hostname)
        except OSError as exc:
            report.problem(index, kind, f"could not connect: {exc}")
            continue
        report.cases += 1
        report.connections += 1
        if not closed:
            report.problem(index, kind, f"connection still open after {timeout_s} s")
        if secret and secret in reply:
            report.problem(index, kind, "the response contains the token")
        statuses = http_statuses(reply)
        if reply and not statuses:
            report.problem(index, kind, f"not an HTTP response: {reply[:60]!r}")
        for status in statuses:
            if status >= 500:
                report.problem(index, kind, f"status {status}: {reply[:200]!r}")
            report.outcomes[str(status)] += 1
        if not reply:
            report.outcomes["closed"] += 1
    report.seconds = time.monotonic() - start
    return report


def http_statuses(reply: bytes) -> list[int]:
    """Status codes of the responses in `reply` (status lines at the start of responses)."""
    out = []
    for line in reply.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12 and line[9:12].isdigit():
            out.append(int(line[9:12]))
    return out


_ROUTE_SAMPLES = ("00112233445566778899aabbccddeeff", "pip", "fuzz_job-1", "pkg.zip")


def route_path(pattern: str) -> str:
    """A concrete path matching a route pattern: each top-level group gets a sample value."""
    pattern = pattern.removesuffix("$")
    out, depth, group = [], 0, ""
    for ch in pattern:
        if ch == "(":
            depth += 1
            if depth == 1:
                group = ""
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                sample = next((c for c in _ROUTE_SAMPLES if re.fullmatch(group, c)), None)
                if sample is None:
                    raise AssertionError(f"no sample value for the group ({group}) of route {pattern}")
                out.append(sample)
                continue
        if depth:
            group += ch
        else:
            out.append(ch)
    path = "".join(out).replace("\\", "")
    if not re.fullmatch(pattern, path):
        raise AssertionError(f"no sample path for route {pattern}")
    return path


def dashboard_routes() -> list[tuple[str, str, list[str]]]:
    """(pattern, sample path, methods the handler implements) for every route of the dashboard app."""
    import tornado.web

    from nbray.common.config import Config
    from nbray.dashboard.handlers import ApiContext
    from nbray.dashboard.server import make_app

    ctx = ApiContext(bytes(32), None, None, Config(), {})  # type: ignore[arg-type]
    app = make_app(ctx, jobs=object())  # type: ignore[arg-type]
    out = []
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern  # type: ignore[attr-defined]
        target = rule.target
        methods = [m.upper() for m in ("get", "head", "post", "put", "delete", "patch", "options")
                   if getattr(target, m) is not getattr(tornado.web.RequestHandler, m)]
        out.append((pattern, route_path(pattern), methods))
    return out


# ---- /proc ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ListeningSocket:
    pid: int
    inode: int
    host: str
    port: int


_TCP_LISTEN = "0A"


def _decode_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        # /proc prints IPv6 addresses as four host-order 32-bit words.
        words = struct.unpack("<4I", raw)
        host = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
    return host, int(port_hex, 16)


def socket_inodes(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def listening_tcp_sockets(pids: Iterable[int]) -> list[ListeningSocket]:
    """Every TCP socket in LISTEN state held by one of `pids`, from /proc (one row per socket)."""
    found: dict[int, ListeningSocket] = {}
    for pid in sorted(pids):
        inodes = socket_inodes(pid)
        if not inodes:
            continue
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    lines = f.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] != _TCP_LISTEN:
                    continue
                inode = int(fields[9])
                if inode in inodes and inode not in found:
                    host, port = _decode_address(fields[1])
                    found[inode] = ListeningSocket(pid, inode, host, port)
    return sorted(found.values(), key=lambda s: (s.pid, s.port))


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (VmRSS), 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_alive(pid: int) -> bool:
    """True while `pid` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def daemon_role(pid: int) -> str:
    """What an nbray process is, from its command line (workers keep their zygote's)."""
    cmd = cmdline(pid)
    for needle, role in (("nbray.gcs", "gcs"), ("nbray.raylet.zygote", "worker"), ("nbray.worker", "worker"),
                         ("nbray.raylet", "raylet"), ("nbray.client.server", "client_server"),
                         ("nbray.client.session", "client_session"), ("nbray.dashboard", "dashboard")):
        if needle in cmd:
            return role
    return "unknown: " + cmd[:120]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


__all__ = ["FuzzReport", "ListeningSocket", "SERVICES_BY_ROLE", "canary_frame", "canary_pickle", "cmdline", "daemon_role", "dashboard_routes",
           "fill_bytes_fields", "frame", "fuzz_authenticated", "fuzz_http", "fuzz_unauthenticated",
           "hold_partial_prefaces", "http_cases", "http_statuses", "listening_tcp_sockets", "malformed_body",
           "methods_for", "process_alive", "route_path", "rss_bytes", "send_and_drain", "socket_inodes",
           "unauthenticated_cases", "wait_all_closed_by_server"]
