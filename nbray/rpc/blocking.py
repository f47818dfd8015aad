"""A blocking, single-threaded RPC client for one-off calls.

Used where an event loop would be overkill: discovering a cluster before
a driver starts, and the command line (``nbray status``, ``nbray stop``).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from google.protobuf.message import Message

from nbray.exceptions import RpcError
from nbray.protocol import Method, common_pb2, method
from nbray.rpc.framing import HEADER, HEADER_SIZE, KIND_ERROR, KIND_REPLY, KIND_REQUEST
from nbray.rpc.handshake import connect_socket


class BlockingClient:
    def __init__(self, address: str, token: bytes, role: str = "cli", timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.sock = connect_socket(address, token, role, timeout_s)
        self.sock.setblocking(True)
        self._rid = 0

    def call(self, method_or_name: Method | str, request: Message | None = None,
             timeout_s: float | None = None) -> Any:
        m = method(method_or_name) if isinstance(method_or_name, str) else method_or_name
        req = request if request is not None else m.request_cls()
        self._rid += 1
        body = req.SerializeToString()
        self.sock.settimeout(timeout_s or self.timeout_s)
        self.sock.sendall(HEADER.pack(len(body), 0, m.id, KIND_REQUEST, self._rid) + body)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            header = self._recv(HEADER_SIZE, deadline)
            body_len, trailer_len, mid, kind, rid = HEADER.unpack(header)
            payload = self._recv(body_len + trailer_len, deadline)
            if rid != self._rid or kind not in (KIND_REPLY, KIND_ERROR):
                continue  # a publish or request from the server: ignore
            if kind == KIND_ERROR:
                err = common_pb2.RpcError()
                err.ParseFromString(payload[:body_len])
                raise RpcError(err.code, err.message)
            reply = m.reply_cls()
            reply.ParseFromString(payload[:body_len])
            return reply

    def _recv(self, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from {self.address}")
            self.sock.settimeout(left)
            data = self.sock.recv(min(n, 1 << 20))
            if not data:
                raise ConnectionError(f"{self.address} closed the connection")
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
