"""A TCP socket whose bytes are TLS records (every nbray process with TLS on).

``TlsSocket`` drives an ``ssl.SSLObject`` through two memory BIOs instead
of letting OpenSSL own the file descriptor. That keeps nbray's event loop
in charge: one ``recv`` pulls up to 256 KiB of records off the wire and
decrypts all of them straight into the connection's read buffer (a wrapped
``ssl.SSLSocket`` reads each record with two system calls), and the writer
encrypts a corked batch of frames at once, joining small frames into one
record, then sends the ciphertext in one call.

It is a ``socket.socket`` so blocking callers (``BlockingClient``, the
connect-side handshake) keep their code: ``recv``, ``recv_into`` and
``sendall`` speak plaintext and honour the socket's timeout. Non-blocking
writers use ``encrypt`` and ``flush`` instead. The other send and receive
methods raise, so no plaintext can reach the wire by accident.

A non-blocking ``ssl.SSLSocket`` spares the copies through the BIOs but
makes about 20,000 system calls per 100 MB where this design makes about
1,000 (two reads and one write per 16 KiB record), and one Python call per
record: moving 200 MB over loopback it used as much CPU in all, and more on
the receiving side (docs/benchmarks.md, TLS).

One lock guards the SSL object: OpenSSL objects must not be used by two
threads at once, and a connection reads on its loop thread while other
threads send.
"""

from __future__ import annotations

import collections
import socket
import ssl
import threading
import time
from typing import Any

# Ciphertext read from the socket per system call. Measured from 64 KiB to
# 1 MiB: 256 KiB and 1 MiB cost the same CPU per byte, smaller sizes more.
RAW_READ_BYTES = 256 * 1024


class TlsSocket(socket.socket):
    """A connected TCP socket carrying TLS; see the module docstring."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        timeout = sock.gettimeout()
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.settimeout(timeout)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._ssl_lock = threading.Lock()
        # Ciphertext lands here before it is handed to OpenSSL: a fresh
        # RAW_READ_BYTES bytes object per recv() costs an mmap, an mremap and
        # a munmap (it is above malloc's mmap threshold), several times the
        # price of the read itself for a small RPC.
        self._raw = bytearray(RAW_READ_BYTES)
        self._raw_view = memoryview(self._raw)
        # Ciphertext made but not yet taken by the socket.
        self._cipher: collections.deque[Any] = collections.deque()
        # Set by recv_into when it filled the caller's buffer: more plaintext
        # may wait in the TLS buffers, where epoll cannot see it.
        self.more = False

    # ---- handshake ----------------------------------------------------------------------------------

    def handshake(self, timeout_s: float, peer: str) -> None:
        """Complete the handshake, blocking up to `timeout_s`.

        Raises ssl.SSLError (a refusal or a failed verification) or
        ConnectionError (the peer closed, or the time ran out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self._ssl_lock:
                    self._ssl.do_handshake()
                self._send_pending(deadline)
                return
            except ssl.SSLWantReadError:
                self._send_pending(deadline)
            except ssl.SSLError:
                self._send_alert(deadline)
                raise
            self._receive_raw(deadline, peer)

    def handshake_step(self, timeout_s: float) -> bool:
        """Advance a handshake on a non-blocking socket with what has
        arrived; True once complete, False to wait for more bytes.

        Raises ssl.SSLError (the peer is refused or refuses us) or
        ConnectionError (the peer closed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self._ssl_lock:
                    self._ssl.do_handshake()
                self._send_pending(deadline)
                return True
            except ssl.SSLWantReadError:
                self._send_pending(deadline)
            except ssl.SSLError:
                self._send_alert(deadline)
                raise
            with self._ssl_lock:
                try:
                    received = self._receive_into_bio()
                except (BlockingIOError, InterruptedError):
                    return False
            if not received:
                raise ConnectionError("the peer closed the connection during the TLS handshake")

    def _receive_raw(self, deadline: float, peer: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionError(f"the TLS handshake with {peer} timed out")
        self.settimeout(remaining)
        with self._ssl_lock:
            try:
                received = self._receive_into_bio()
            except TimeoutError:
                raise ConnectionError(f"the TLS handshake with {peer} timed out") from None
        if not received:
            raise ConnectionError(f"{peer} closed the connection during the TLS handshake")

    def _send_pending(self, deadline: float) -> None:
        """Send what the SSL object produced, waiting at most until `deadline`
        (handshake flights are a few KiB: the socket takes them at once)."""
        if self.flush():
            return
        timeout = self.gettimeout()
        try:
            while not self.flush():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConnectionError("the peer does not read the TLS handshake")
                self.settimeout(remaining)
                try:
                    socket.socket.sendall(self, self._cipher.popleft())
                except TimeoutError:
                    raise ConnectionError("the peer does not read the TLS handshake") from None
        finally:
            self.settimeout(timeout)

    def _send_alert(self, deadline: float) -> None:
        # The alert tells the peer why (an unknown CA, a missing certificate).
        try:
            self._send_pending(deadline)
        except OSError:
            pass

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        return self._ssl.getpeercert()

    @property
    def version(self) -> str | None:
        return self._ssl.version()

    # ---- receiving ----------------------------------------------------------------------------------

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Decrypt into `buffer`; 0 at the end of the stream.

        On a non-blocking socket raises BlockingIOError when no whole
        record has arrived."""
        view = memoryview(buffer).cast("B")
        want = nbytes or view.nbytes
        got = 0
        read = self._ssl.read
        incoming = self._incoming
        with self._ssl_lock:
            # Decrypted bytes can only be left inside OpenSSL when the last
            # call filled its buffer mid-record (self.more). Tracking that
            # here spares SSLObject.pending(), which, like every OpenSSL
            # call from Python, drops and retakes the GIL: with a second
            # thread waiting for it, each one is a thread switch.
            plain_left = self.more
            self.more = False
            while got < want:
                if not incoming.pending and not plain_left:
                    # Nothing buffered (a read would raise SSLWantReadError,
                    # which costs more than asking the socket).
                    if got:
                        return got
                    if not self._receive_into_bio():
                        return 0
                try:
                    # With a buffer, read() returns the count (typeshed says bytes).
                    n: int = read(want - got, view[got:])  # type: ignore[assignment]
                except ssl.SSLWantReadError:
                    # Only part of a record is here.
                    plain_left = False
                    if got:
                        return got
                    if not self._receive_into_bio():
                        return 0
                    continue
                if n == 0:  # the peer ended TLS (close_notify)
                    return got
                # Asked for more than it gave: that record is used up.
                plain_left = False
                got += n
            self.more = True
        return got

    def _receive_into_bio(self) -> bool:
        """Move what the kernel holds into the TLS buffer; False at the end
        of the stream. Raises BlockingIOError (non-blocking, nothing there).
        Caller holds _ssl_lock (which also guards the raw buffer)."""
        n = socket.socket.recv_into(self, self._raw_view)
        if not n:
            return False
        self._incoming.write(self._raw_view[:n])
        return True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        buf = bytearray(bufsize)
        n = self.recv_into(buf)
        del buf[n:]
        return bytes(buf)

    def has_buffered(self) -> bool:
        """Received bytes wait in the TLS buffers (decrypted or not)."""
        with self._ssl_lock:
            return bool(self._ssl.pending() or self._incoming.pending)

    # ---- sending ------------------------------------------------------------------------------------

    def encrypt(self, data: Any) -> None:
        """Turn plaintext into ciphertext queued for ``flush`` (never blocks)."""
        with self._ssl_lock:
            self._ssl.write(data)

    def flush(self) -> bool:
        """Send queued ciphertext without blocking; True once all of it is in the socket.

        Raises OSError when the socket fails."""
        with self._ssl_lock:
            if self._outgoing.pending:
                self._cipher.append(self._outgoing.read())
        cipher = self._cipher
        while cipher:
            head = cipher[0]
            try:
                sent = socket.socket.send(self, head)
            except (BlockingIOError, InterruptedError):
                return False
            if sent == len(head):
                cipher.popleft()
            else:
                cipher[0] = memoryview(head)[sent:]
                return False
        return True

    def cipher_pending(self) -> bool:
        return bool(self._cipher) or self._outgoing.pending > 0

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Encrypt and send all of `data`, blocking (within the socket's timeout)."""
        self.encrypt(data)
        with self._ssl_lock:
            if self._outgoing.pending:
                self._cipher.append(self._outgoing.read())
        while self._cipher:
            socket.socket.sendall(self, self._cipher.popleft())

    # Raw I/O would bypass TLS: refuse it.

    def send(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("TlsSocket sends with sendall() or encrypt() + flush()")

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("TlsSocket sends with sendall() or encrypt() + flush()")

    def sendto(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("TlsSocket sends with sendall() or encrypt() + flush()")

    def sendfile(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("TlsSocket sends with sendall() or encrypt() + flush()")

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("TlsSocket receives with recv() or recv_into()")

    def recvfrom(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("TlsSocket receives with recv() or recv_into()")

    def recvfrom_into(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("TlsSocket receives with recv() or recv_into()")

    def dup(self) -> TlsSocket:
        raise NotImplementedError("a TlsSocket cannot be duplicated: its TLS state lives in this object")
