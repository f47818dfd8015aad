"""Addresses of nbray's listeners: parsing ``HOST:PORT`` / ``unix:PATH`` and binding.

Kept apart from the handshake (and the connection and protocol modules it
imports) so that a launcher can bind the GCS's socket and start the
cluster's processes before it has imported any of them.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from nbray.rpc import tls


def parse_address(address: str) -> tuple[int, Any]:
    """``"host:port"`` or ``"unix:/path"`` -> (family, sockaddr)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"malformed address {address!r}; expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return socket.AF_INET6 if ":" in host else socket.AF_INET, (host, int(port))


def bind_listener(address: str, backlog: int = 512) -> socket.socket:
    """A listening socket for "host:port" (port 0 picks one) or "unix:/path".

    Raises InsecureNetworkError for an address other machines can reach
    while TLS is off (see ``nbray.rpc.tls.check_bind``), OSError when the
    address cannot be bound."""
    family, sockaddr = parse_address(address)
    if family != socket.AF_UNIX:
        tls.check_bind(sockaddr[0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        try:
            os.unlink(sockaddr)
        except FileNotFoundError:
            pass
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    if family == socket.AF_UNIX:
        os.chmod(sockaddr, 0o600)
    sock.listen(backlog)
    return sock


def listener_address(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return "unix:" + sock.getsockname()
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"
