"""Opening connections: token preface, version check, listener.

Client side (blocking, in the caller's thread)::

    sock = connect_socket("127.0.0.1:6379", token, role="driver", timeout_s=10)

Server side: ``Listener`` accepts on the event loop and runs each new
socket through the handshake without blocking: it reads exactly the
40-byte preface, compares the token with ``hmac.compare_digest``, and only
then parses the Hello message. A wrong token gets one status byte and a
closed socket; nothing the peer sent is deserialized.

With TLS on (``nbray.rpc.tls``), TCP connections complete a TLS handshake
first and the preface travels inside it; a peer that does not speak TLS is
closed before any of its bytes is looked at. Unix sockets stay plain.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from nbray._version import __version__
from nbray.exceptions import AuthenticationError, VersionMismatchError
from nbray.protocol import common_pb2
from nbray.rpc import tls
from nbray.rpc.addresses import bind_listener as bind_listener  # re-exported
from nbray.rpc.addresses import listener_address as listener_address  # re-exported
from nbray.rpc.addresses import parse_address as parse_address  # re-exported
from nbray.rpc.auth import TOKEN_BYTES, tokens_equal
from nbray.rpc.framing import HEADER, HEADER_SIZE, KIND_ONEWAY

if TYPE_CHECKING:
    # The TLS modules (and ssl) are imported only by a process that uses TLS;
    # the connection modules only by one that opens a Connection (not by
    # ``connect_socket`` alone, as ``nbray status`` uses it).
    import ssl

    from nbray.rpc.connection import Connection, Dispatcher
    from nbray.rpc.eventloop import EventLoop

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAGIC = b"NBRAY\x00" + PROTOCOL_VERSION.to_bytes(2, "big")
PREFACE_SIZE = len(MAGIC) + TOKEN_BYTES
MAX_HELLO_BYTES = 4096
STATUS_OK = 0
STATUS_BAD_TOKEN = 1
STATUS_BAD_PROTOCOL = 2


def local_versions() -> tuple[str, str]:
    """(nbray version, python version) this process announces."""
    nbray_version = os.environ.get("NBRAY_TESTING_VERSION_OVERRIDE", __version__)
    py = os.environ.get(
        "NBRAY_TESTING_PYTHON_VERSION_OVERRIDE",
        "{}.{}.{}".format(*sys.version_info[:3]),
    )
    return nbray_version, py


def version_mismatch(peer_nbray: str, peer_python: str, peer_role: str, my_role: str) -> str | None:
    """A message naming both sides' versions, or None when compatible."""
    mine_nbray, mine_py = local_versions()
    same_py = peer_python.split(".")[:2] == mine_py.split(".")[:2]
    if peer_nbray == mine_nbray and same_py:
        return None
    return (
        f"Version mismatch: the {my_role} runs nbray {mine_nbray} with Python {mine_py}, "
        f"but the {peer_role or 'peer'} runs nbray {peer_nbray} with Python {peer_python}. "
        "Use the same nbray version and the same Python major.minor version on every "
        "process of a cluster."
    )


def _recv_exact(sock: socket.socket, n: int, deadline: float, address: str) -> bytes:
    chunks = []
    while n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionError(f"timed out during the handshake with {address}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(n)
        except TimeoutError as exc:
            raise ConnectionError(f"timed out during the handshake with {address}") from exc
        if not data:
            raise ConnectionError(f"{address} closed the connection during the handshake")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def connect_socket(address: str, token: bytes, role: str, timeout_s: float,
                   tls_context: ssl.SSLContext | None | Literal["cluster"] = "cluster",
                   server_hostname: str | None = None) -> socket.socket:
    """Connect and authenticate; returns a non-blocking socket ready for frames.

    ``tls_context``: "cluster" follows this process's TLS settings (mutual
    TLS between cluster processes), None connects in plaintext, a context is
    used as given (a notebook client's, with ``server_hostname`` checked).
    Unix sockets are always plain. Over TLS the socket is a ``TlsSocket``.

    Raises ConnectionError (unreachable, or TLS refused or unverifiable),
    AuthenticationError (token refused) or VersionMismatchError.
    """
    family, sockaddr = parse_address(address)
    if family == socket.AF_UNIX:
        context = None
    elif tls_context == "cluster":
        context = tls.cluster_client_context()
    else:
        context = tls_context
    deadline = time.monotonic() + timeout_s
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(sockaddr)
        except (TimeoutError, OSError) as exc:
            raise ConnectionError(f"could not connect to {address}: {exc}") from exc
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            from nbray.rpc.tls_socket import TlsSocket

            sock = TlsSocket(sock, context, server_side=False, server_hostname=server_hostname)
            sock.handshake(max(0.001, deadline - time.monotonic()), address)
        nbray_version, py = local_versions()
        hello = common_pb2.Hello(nbray_version=nbray_version, python_version=py, role=role)
        body = hello.SerializeToString()
        sock.sendall(MAGIC + token + HEADER.pack(len(body), 0, 0, KIND_ONEWAY, 0) + body)
        try:
            status = _recv_exact(sock, 1, deadline, address)[0]
        except ConnectionError as exc:
            if context is None and family != socket.AF_UNIX:
                raise ConnectionError(
                    f"{exc} (a cluster with TLS on closes plaintext connections: set {tls.USE_TLS_ENV}=1 "
                    "and the NBRAY_TLS_* variables as on the cluster)") from None
            raise
        if status == STATUS_BAD_TOKEN:
            raise AuthenticationError(
                f"{address} refused the cluster token. Set NBRAY_AUTH_TOKEN (or "
                "NBRAY_AUTH_TOKEN_PATH) to the token of that cluster; 'nbray get-auth-token' "
                "on its head node prints it."
            )
        if status != STATUS_OK:
            raise ConnectionError(f"{address} does not speak nbray protocol {PROTOCOL_VERSION}")
        header = _recv_exact(sock, HEADER_SIZE, deadline, address)
        body_len = HEADER.unpack(header)[0]
        if body_len > MAX_HELLO_BYTES:
            raise ConnectionError(f"{address} sent an oversized handshake reply")
        reply = common_pb2.HelloReply()
        reply.ParseFromString(_recv_exact(sock, body_len, deadline, address))
        if reply.error:
            raise VersionMismatchError(reply.error)
        sock.setblocking(False)
        return sock
    except BaseException as exc:
        sock.close()
        if context is not None:
            import ssl

            if isinstance(exc, ssl.SSLError):
                raise ConnectionError(tls_failure_message(address, exc, cluster=tls_context == "cluster")) from exc
        raise


def tls_failure_message(address: str, exc: ssl.SSLError, *, cluster: bool) -> str:
    """What went wrong in a TLS handshake with `address`, and what to do."""
    reason = tls.describe_failure(exc)
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        if cluster:
            advice = (f"Every process of a cluster needs a certificate signed by the CA in {tls.CA_CERT_ENV}, "
                      "the same CA on every machine.")
        else:
            advice = (f"Set {tls.CA_CERT_ENV} to the CA that signed the cluster's certificate (the ca.crt of "
                      "'nbray tls init'), and connect with a host name or IP the certificate lists.")
        return f"TLS: the certificate of {address} was not accepted: {reason}. {advice}"
    if "alert" in reason:
        return (f"TLS: {address} refused this process's certificate ({reason}). Use a certificate "
                f"({tls.SERVER_CERT_ENV}) signed by the cluster's CA.")
    return (f"TLS with {address} failed ({reason}). If that cluster runs without TLS, connect with "
            f"{tls.USE_TLS_ENV}=0.")


def connect(
    loop: EventLoop,
    address: str,
    token: bytes,
    dispatcher: Dispatcher,
    *,
    role: str,
    timeout_s: float,
    name: str = "",
    max_frame_bytes: int = 512 << 20,
    max_trailer_bytes: int = 256 << 20,
) -> Connection:
    """Open, authenticate and start an established Connection."""
    sock = connect_socket(address, token, role, timeout_s)
    conn = make_connection(loop, sock, dispatcher, name=name or address,
                           max_frame_bytes=max_frame_bytes, max_trailer_bytes=max_trailer_bytes)
    conn.start()
    return conn


def _is_tls_socket(sock: socket.socket) -> bool:
    # No TlsSocket exists before its module is imported, and it is imported only where TLS is used.
    tls_socket = sys.modules.get("nbray.rpc.tls_socket")
    return tls_socket is not None and isinstance(sock, tls_socket.TlsSocket)


def make_connection(loop: EventLoop, sock: socket.socket, dispatcher: Dispatcher, **kwargs: Any) -> Connection:
    """A Connection over `sock`, a ``TlsConnection`` over a ``TlsSocket``."""
    if not _is_tls_socket(sock):
        from nbray.rpc.connection import Connection

        return Connection(loop, sock, dispatcher, **kwargs)
    from nbray.rpc import tls_connection

    return tls_connection.make_connection(loop, sock, dispatcher, **kwargs)


class Listener:
    """Accepts connections on the loop and authenticates them.

    ``tls_context``: "cluster" follows this process's TLS settings (mutual
    TLS on TCP), None stays plain, a context is used as given (the client
    server's, which asks clients for no certificate). Unix sockets are
    always plain.
    """

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        token: bytes,
        dispatcher: Dispatcher,
        on_connection: Callable[[Connection], None],
        *,
        role: str,
        handshake_timeout_s: float = 5.0,
        max_frame_bytes: int = 512 << 20,
        max_trailer_bytes: int = 256 << 20,
        tls_context: ssl.SSLContext | None | Literal["cluster"] = "cluster",
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.token = token
        self.dispatcher = dispatcher
        self.on_connection = on_connection
        self.role = role
        self.handshake_timeout_s = handshake_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.max_trailer_bytes = max_trailer_bytes
        self.address = listener_address(sock)
        self.refused = 0
        if sock.family == socket.AF_UNIX:
            self.tls_context = None
        elif tls_context == "cluster":
            self.tls_context = tls.cluster_server_context()
        else:
            self.tls_context = tls_context
        sock.setblocking(False)

    def start(self) -> None:
        self.loop.add_reader(self.sock, self._on_accept)

    def close(self) -> None:
        self.loop.remove(self.sock)
        try:
            if self.sock.family == socket.AF_UNIX:
                os.unlink(self.sock.getsockname())
        except OSError:
            pass
        self.sock.close()

    def _on_accept(self, mask: int) -> None:
        for _ in range(64):
            try:
                client, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept failed on %s: %s", self.address, exc)
                return
            if self.tls_context is not None:
                from nbray.rpc.tls_socket import TlsSocket

                client = TlsSocket(client, self.tls_context, server_side=True)
            _ServerHandshake(self, client).start()


class _ServerHandshake:
    """Non-blocking server side of the handshake for one accepted socket."""

    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.buf = bytearray()
        self.tls_pending = _is_tls_socket(sock)
        self.authenticated = False
        self.done = False
        self.timer: Any = None
        sock.setblocking(False)

    def start(self) -> None:
        loop = self.listener.loop
        loop.add_reader(self.sock, self._on_readable)
        self.timer = loop.call_later(self.listener.handshake_timeout_s, self._on_timeout)

    def _fail(self, status: int | None, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.timer.cancel()
        self.listener.loop.remove(self.sock)
        self.listener.refused += 1
        if status is not None:
            try:
                self.sock.sendall(bytes([status]))
            except OSError:
                pass
        logger.info("refused a connection on %s: %s", self.listener.address, reason)
        self.sock.close()

    def _on_timeout(self) -> None:
        self._fail(None, "handshake timed out")

    def _on_readable(self, mask: int) -> None:
        sock = self.sock
        if self.tls_pending:
            import ssl

            from nbray.rpc.tls_socket import TlsSocket

            assert isinstance(sock, TlsSocket)
            try:
                if not sock.handshake_step(self.listener.handshake_timeout_s):
                    return
            except (ssl.SSLError, ConnectionError) as exc:
                # A plaintext peer ends here too: its bytes are never parsed.
                self._fail(None, f"TLS handshake failed: {tls.describe_failure(exc)}")
                return
            except OSError as exc:
                self._fail(None, f"receive failed: {exc}")
                return
            self.tls_pending = False
        # Over TLS, records already received may hold the whole preface and
        # hello, and epoll will not report them: read until nothing is left.
        while not self.done:
            need = PREFACE_SIZE if not self.authenticated else HEADER_SIZE + MAX_HELLO_BYTES
            try:
                data = sock.recv(max(1, need - len(self.buf)) if not self.authenticated else 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(None, f"receive failed: {exc}")
                return
            if not data:
                self._fail(None, "peer closed during the handshake")
                return
            self.buf += data
            self._advance()

    def _advance(self) -> None:
        if not self.authenticated:
            if len(self.buf) < PREFACE_SIZE:
                return
            magic = bytes(self.buf[: len(MAGIC)])
            token = bytes(self.buf[len(MAGIC) : PREFACE_SIZE])
            if magic != MAGIC:
                self._fail(STATUS_BAD_PROTOCOL, "not an nbray client (bad magic)")
                return
            if not tokens_equal(token, self.listener.token):
                self._fail(STATUS_BAD_TOKEN, "wrong cluster token")
                return
            self.authenticated = True
            del self.buf[:PREFACE_SIZE]
        if len(self.buf) < HEADER_SIZE:
            return
        body_len = HEADER.unpack_from(self.buf, 0)[0]
        if body_len > MAX_HELLO_BYTES:
            self._fail(STATUS_BAD_PROTOCOL, "oversized hello")
            return
        if len(self.buf) < HEADER_SIZE + body_len:
            return
        hello = common_pb2.Hello()
        try:
            hello.ParseFromString(bytes(self.buf[HEADER_SIZE : HEADER_SIZE + body_len]))
        except Exception:
            self._fail(STATUS_BAD_PROTOCOL, "malformed hello")
            return
        rest = bytes(self.buf[HEADER_SIZE + body_len :])
        self.done = True
        self.timer.cancel()
        loop = self.listener.loop
        loop.remove(self.sock)
        nbray_version, py = local_versions()
        error = version_mismatch(hello.nbray_version, hello.python_version, hello.role,
                                 self.listener.role) or ""
        reply = common_pb2.HelloReply(error=error, nbray_version=nbray_version, python_version=py)
        body = reply.SerializeToString()
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(self.listener.handshake_timeout_s)
            self.sock.sendall(bytes([STATUS_OK]) + HEADER.pack(len(body), 0, 0, KIND_ONEWAY, 0) + body)
        except OSError:
            self.sock.close()
            return
        if error:
            logger.warning("refused a %s: %s", hello.role or "peer", error)
            self.sock.close()
            return
        conn = make_connection(
            loop,
            self.sock,
            self.listener.dispatcher,
            name=f"{hello.role}@{self.listener.address}",
            peer_role=hello.role,
            max_frame_bytes=self.listener.max_frame_bytes,
            max_trailer_bytes=self.listener.max_trailer_bytes,
            initial_data=rest,
        )
        self.listener.on_connection(conn)
        conn.start()
