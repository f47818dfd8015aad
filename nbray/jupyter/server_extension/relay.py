"""Calls from the Jupyter server to a dashboard (Jupyter server process).

Requests are built here from fixed route names and validated ids, never
from a URL the browser sent, so the relay cannot be pointed elsewhere. They
carry the cluster token and no browser headers (the dashboard lets only
non-browser clients use POST). An ``https://`` dashboard (a cluster with
TLS on) is verified against NBRAY_TLS_CA_CERT, else the system trust store.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from nbray import __version__
from nbray.rpc import tls

USER_AGENT = f"nbray-jupyter/{__version__}"
MAX_HEADER_BYTES = 64 * 1024
STREAM_CHUNK_BYTES = 64 * 1024


class UpstreamUnavailable(ConnectionError):
    """The dashboard could not be reached, or refused the token."""


@dataclass
class Upstream:
    """A dashboard this server relays to."""

    url: str
    token: bytes = field(repr=False)
    cluster_id: str
    spawned: bool = False

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.hex()}", "User-Agent": USER_AGENT,
                "Accept": "application/json"}

    def ssl_context(self) -> ssl.SSLContext | None:
        """How to verify an HTTPS dashboard; None for plain HTTP."""
        return tls.public_client_context() if self.url.startswith("https://") else None


async def fetch(up: Upstream, method: str, path: str, query: str = "", timeout_s: float = 30.0) -> tuple[int, bytes]:
    """(status, body) of one call; UpstreamUnavailable when it cannot be made or the token is refused."""
    assert path.startswith("/api/")
    url = up.url + path + (f"?{query}" if query else "")
    request = HTTPRequest(url, method=method, headers=up.headers(), body=b"" if method == "POST" else None,
                          connect_timeout=min(5.0, timeout_s), request_timeout=timeout_s, follow_redirects=False,
                          decompress_response=False, ssl_options=up.ssl_context())
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except OSError as exc:  # refused, reset: raised by tornado even with raise_error=False
        raise UpstreamUnavailable(f"the dashboard at {up.url} is not reachable: {exc}") from None
    if response.code == 599:
        raise UpstreamUnavailable(f"the dashboard at {up.url} is not reachable: {response.error}")
    if response.code in (401, 403):
        raise UpstreamUnavailable(f"the dashboard at {up.url} refused the cluster token")
    return response.code, response.body or b""


class EventStream:
    """The dashboard's event stream, read as raw SSE bytes (HTTP/1.0: no chunk framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, up: Upstream, timeout_s: float = 5.0) -> EventStream:
        parts = urllib.parse.urlsplit(up.url)
        context = up.ssl_context()
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if context is not None else 80)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, limit=MAX_HEADER_BYTES, ssl=context, server_hostname=host if context else None),
                timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamUnavailable(f"the dashboard at {up.url} is not reachable: {exc}") from None
        headers = "".join(f"{k}: {v}\r\n" for k, v in up.headers().items() if k != "Accept")
        writer.write(f"GET /api/events HTTP/1.0\r\nHost: {host}:{port}\r\n{headers}"
                     "Accept: text/event-stream\r\n\r\n".encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise UpstreamUnavailable(f"no event stream from {up.url}: {exc!r}") from None
        status_line = head.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status != 200:
            writer.close()
            raise UpstreamUnavailable(f"the dashboard at {up.url} answered {status} to the event stream")
        return cls(reader, writer)

    async def read(self) -> bytes:
        """The next bytes of the stream; b"" when it ended."""
        try:
            return await self._reader.read(STREAM_CHUNK_BYTES)
        except OSError:
            return b""

    def close(self) -> None:
        self._writer.close()
