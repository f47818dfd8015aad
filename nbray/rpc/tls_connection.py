"""A ``Connection`` over a ``TlsSocket`` (every nbray process with TLS on).

Framing, dispatch and the read buffer are the plain connection's; only the
byte movement differs. Writes encrypt the queued frames in chunks of at
most ``ENCRYPT_CHUNK_BYTES`` as the socket drains (a 200 MB object chunk is
never held twice in memory), joining small frames so a corked burst of task
submissions becomes a few TLS records rather than one per frame. Reads keep
going while the TLS buffers hold whole records, since epoll only reports
bytes still in the kernel.
"""

from __future__ import annotations

import socket
from typing import Any

from nbray.rpc.connection import Connection, Dispatcher, _nbytes, _OnSent
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.tls_socket import TlsSocket

# Plaintext encrypted per step of a write (bounds the ciphertext held).
ENCRYPT_CHUNK_BYTES = 256 * 1024
# Frames parts up to this size are joined before encryption (one record
# holds 16 KiB, and each record costs 22 bytes and one cipher call).
JOIN_BELOW_BYTES = 16 * 1024


def make_connection(loop: EventLoop, sock: socket.socket, dispatcher: Dispatcher, **kwargs: Any) -> Connection:
    """The Connection class that fits `sock` (TLS or plain)."""
    if isinstance(sock, TlsSocket):
        return TlsConnection(loop, sock, dispatcher, **kwargs)
    return Connection(loop, sock, dispatcher, **kwargs)


class TlsConnection(Connection):
    # Measured with ``python -m nbray.scripts.microbenchmark_tls``: with
    # 1,000 calls in flight, TLS's extra CPU per call about halves on the
    # caller's side this way (docs/benchmarks.md, TLS).
    defer_writes_to_awake_loop = True

    def __init__(self, loop: EventLoop, sock: TlsSocket, dispatcher: Dispatcher, **kwargs: Any) -> None:
        super().__init__(loop, sock, dispatcher, **kwargs)
        self._tls = sock

    def _register(self) -> None:
        super()._register()
        # Records that arrived with the handshake wait in the TLS buffers.
        if not self.closed and self._tls.has_buffered():
            self._on_readable()

    # ---- receiving --------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        super()._on_readable()
        while self._tls.more and not self.closed:
            super()._on_readable()
        if not self.closed and self._tls.cipher_pending():
            # Reading can make TLS answer the peer (an alert, a key update).
            with self._wlock:
                if not self._write_interest:
                    parts, self._wbuf = self._wbuf, []
                    self._write_now(parts)

    # ---- sending -----------------------------------------------------------------------------------

    def _write_now(self, parts: list[Any]) -> None:
        """Encrypt and send what the socket takes; queue the rest. Caller holds _wlock."""
        tls = self._tls
        try:
            while True:
                drained = tls.flush()
                if not drained or not parts:
                    break
                parts = self._encrypt_some(parts)
        except OSError as exc:
            self._wbuf = []
            self._markers = 0
            self.close(f"send failed: {exc}")
            return
        if parts or not drained:
            self._wbuf = parts
            if not self._write_interest:
                self._write_interest = True
                if self.loop.in_loop_thread():
                    self._update_events()
                else:
                    self.loop.post(self._update_events)

    def _encrypt_some(self, parts: list[Any]) -> list[Any]:
        """Encrypt up to ENCRYPT_CHUNK_BYTES from the front of `parts`; return the rest."""
        tls = self._tls
        budget = ENCRYPT_CHUNK_BYTES
        small: list[Any] = []
        i = 0
        while i < len(parts) and budget > 0:
            part = parts[i]
            if type(part) is _OnSent:
                # The bytes before it are encrypted, hence no longer needed
                # by this connection: the borrowed buffer may go.
                if small:
                    tls.encrypt(b"".join(small))
                    small = []
                self._markers -= 1
                self.loop.post(part.callback)
                i += 1
                continue
            size = _nbytes(part)
            if size < JOIN_BELOW_BYTES:
                small.append(part)
                budget -= size
                i += 1
                continue
            if small:
                tls.encrypt(b"".join(small))
                small = []
            if size <= budget:
                tls.encrypt(part)
                budget -= size
                i += 1
            else:
                view = memoryview(part).cast("B")
                tls.encrypt(view[:budget])
                parts[i] = view[budget:]
                budget = 0
        if small:
            tls.encrypt(b"".join(small))
        return parts[i:]

    def _on_writable(self) -> None:
        with self._wlock:
            parts, self._wbuf = self._wbuf, []
            self._write_interest = False
            # Even with no frames queued, ciphertext may still be waiting.
            self._write_now(parts)
            if not self._write_interest:
                self._update_events()
