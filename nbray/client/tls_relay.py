"""Carrying a notebook client's TLS connection to its session (client server process).

Without TLS the client server hands a client's socket itself to the
session process. A TLS connection cannot move: its keys live in this
process's SSL object. So the client server keeps it and relays plaintext
to and from the session over a Unix socket pair; the session sees the same
byte stream it would have read from the client's socket. Each direction
stops reading while the other end has not taken what was read (bounded
memory), and either end closing closes both.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from nbray.rpc.eventloop import EVENT_READ, EVENT_WRITE, EventLoop
from nbray.rpc.tls_socket import TlsSocket

logger = logging.getLogger(__name__)

# Bytes moved per read in either direction.
RELAY_CHUNK_BYTES = 256 * 1024


class TlsRelay:
    """Relays one client; runs on the client server's loop thread."""

    def __init__(self, loop: EventLoop, client: TlsSocket, session_end: socket.socket,
                 on_close: Callable[[TlsRelay], None] | None = None) -> None:
        self.loop = loop
        self.client = client
        self.session_end = session_end
        self.on_close = on_close
        self.closed = False
        self._to_session = b""  # read from the client, not yet taken by the session socket
        self._buf = bytearray(RELAY_CHUNK_BYTES)
        client.setblocking(False)
        session_end.setblocking(False)

    def start(self) -> None:
        self._update()
        # Records that arrived with the Connect request wait in the TLS buffers.
        if self.client.has_buffered():
            self._client_readable()

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        logger.info("client relay closed: %s", reason)
        for sock in (self.client, self.session_end):
            self.loop.remove(sock)
            try:
                sock.close()
            except OSError:
                pass
        if self.on_close is not None:
            self.on_close(self)

    def _update(self) -> None:
        if self.closed:
            return
        # Read from one end only while the other has room for it.
        client_events = (0 if self._to_session else EVENT_READ) | (
            EVENT_WRITE if self.client.cipher_pending() else 0)
        session_events = (0 if self.client.cipher_pending() else EVENT_READ) | (
            EVENT_WRITE if self._to_session else 0)
        self._set(self.client, client_events, self._on_client)
        self._set(self.session_end, session_events, self._on_session)

    def _set(self, sock: socket.socket, events: int, callback: Callable[[int], None]) -> None:
        if events:
            self.loop.set_events(sock, events, callback)
        else:
            self.loop.remove(sock)

    def _on_client(self, mask: int) -> None:
        try:
            if mask & EVENT_WRITE:
                self.client.flush()
            if mask & EVENT_READ and not self._to_session:
                self._client_readable(update=False)
        except OSError as exc:
            self.close(f"client connection failed: {exc}")
            return
        self._update()

    def _on_session(self, mask: int) -> None:
        try:
            if mask & EVENT_WRITE:
                self._send_to_session()
            if mask & EVENT_READ and not self.client.cipher_pending():
                data = self.session_end.recv(RELAY_CHUNK_BYTES)
                if not data:
                    self.close("the session closed")
                    return
                self.client.encrypt(data)
                self.client.flush()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self.close(f"session connection failed: {exc}")
            return
        self._update()
        if not self._to_session and self.client.has_buffered():
            self._client_readable()

    def _client_readable(self, update: bool = True) -> None:
        view = memoryview(self._buf)
        try:
            # Drain the TLS buffers too: epoll does not see them.
            while not self._to_session:
                n = self.client.recv_into(view)
                if n == 0:
                    self.close("the client closed")
                    return
                self._to_session = bytes(view[:n])
                self._send_to_session()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self.close(f"client connection failed: {exc}")
            return
        if update:
            self._update()

    def _send_to_session(self) -> None:
        if not self._to_session:
            return
        try:
            sent = self.session_end.send(self._to_session)
        except (BlockingIOError, InterruptedError):
            return
        self._to_session = self._to_session[sent:]
