"""Request checks of the dashboard: token, browser guard, paths (dashboard process).

Pure functions over header and query values, so they are tested without a
server. Every request goes through ``check_request`` before any handler
code runs and before its body is read (the handlers stream bodies and
discard them; nothing a client sends is ever deserialized).

Order of the checks, and why:

1. The path: only printable ASCII, no ``..``, ``//``, backslashes or
   percent-encoded dots/slashes. Routes are fixed patterns anyway; this
   turns traversal attempts into a plain 400 before routing.
2. The Host header (DNS rebinding): a page on ``evil.example`` whose name
   is made to resolve to this machine sends ``Host: evil.example``. Only
   IP addresses, ``localhost``, this machine's names, the bind address and
   the names in ``dashboard_allowed_hosts`` are answered (403 otherwise).
   A request without a Host header (HTTP/1.0) does not come from a browser.
3. The browser guard: a request that looks like it comes from a browser
   (a ``Mozilla`` user agent, or ``Origin``, ``Referer``, ``Sec-Fetch-*``
   or CORS headers) may only use GET, HEAD and OPTIONS. An allow-list, not
   a deny-list: Ray's guard blocked POST and PUT but forgot DELETE
   (CVE-2026-27482).
4. The token: ``Authorization: Bearer <hex>``, compared in constant time.
   Missing: 401; present but wrong: 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Mapping

BROWSER_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST"})
_BROWSER_HEADERS = ("origin", "referer", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user",
                    "access-control-request-method", "access-control-request-headers")
_PATH_OK = re.compile(r"/[A-Za-z0-9_\-./]*")
_BAD_PATH_PARTS = ("..", "//", "\\", "/./")
MAX_PATH_CHARS = 256
LOCAL_HOST_NAMES = frozenset({"localhost"})


class RequestRefused(Exception):
    """A request failed a check; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """True when the headers look like a web browser sent the request."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get("user-agent", "").startswith("Mozilla"):
        return True
    return any(name in lowered for name in _BROWSER_HEADERS)


def check_path(path: str) -> None:
    """Refuse paths that are not plain, normalised ASCII (before routing).

    ``path`` is the raw request path without the query string, still
    percent-encoded: an encoded dot or slash is refused too.
    """
    if len(path) > MAX_PATH_CHARS:
        raise RequestRefused(414, "path too long")
    lowered = path.lower()
    if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
        raise RequestRefused(400, "encoded dots, slashes and NULs are not allowed in paths")
    if not _PATH_OK.fullmatch(path) or any(part in path for part in _BAD_PATH_PARTS) or path.endswith("/.."):
        raise RequestRefused(400, "invalid path")


def allowed_host_names(bind_host: str, configured: str = "") -> frozenset[str]:
    """Names the dashboard answers to (``configured``: comma-separated, "*" for any)."""
    names = {*LOCAL_HOST_NAMES, bind_host, socket.gethostname(), socket.getfqdn(), *configured.split(",")}
    return frozenset(n.strip().strip("[]").lower() for n in names if n.strip())


def check_host(host: str | None, allowed: frozenset[str] = LOCAL_HOST_NAMES) -> None:
    """Refuse a Host header naming this server by a name it does not know (403)."""
    if not host or "*" in allowed:
        return
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    try:
        ipaddress.ip_address(name)
        return  # a page served from an IP address cannot rebind it to another host
    except ValueError:
        pass
    if name in allowed or name.endswith(".localhost"):
        return
    raise RequestRefused(403, "unknown Host header (DNS-rebinding guard): use an IP address, localhost or a "
                              "name listed in NBRAY_DASHBOARD_ALLOWED_HOSTS")


def check_method(method: str, headers: Mapping[str, str]) -> None:
    if method not in ALLOWED_METHODS:
        raise RequestRefused(405, f"method {method} is not allowed")
    if method not in BROWSER_METHODS and is_browser_request(headers):
        raise RequestRefused(405, f"browsers may only use {', '.join(sorted(BROWSER_METHODS))}")


def check_token(authorization: str | None, token: bytes) -> None:
    """Raise 401 without a bearer token, 403 with a wrong one."""
    if not authorization:
        raise RequestRefused(401, "the cluster token is required (Authorization: Bearer <token>)")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise RequestRefused(401, "the cluster token is required (Authorization: Bearer <token>)")
    # Compare the text forms: a malformed token is as wrong as a different
    # one, and compare_digest takes the same time for both.
    presented = value.strip().lower().encode("ascii", "replace")
    if not hmac.compare_digest(presented, token.hex().encode("ascii")):
        raise RequestRefused(403, "invalid cluster token")


def check_request(method: str, path: str, headers: Mapping[str, str], token: bytes,
                  allowed_hosts: frozenset[str] = LOCAL_HOST_NAMES) -> None:
    """Every check a request must pass before a handler runs (see module docstring)."""
    check_path(path)
    check_host(headers.get("Host"), allowed_hosts)
    check_method(method, headers)
    check_token(headers.get("Authorization"), token)
