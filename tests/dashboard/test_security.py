"""The checks every dashboard request passes before a handler runs (pure functions)."""

from __future__ import annotations

import pytest

from nbray.dashboard import params
from nbray.dashboard.security import (
    RequestRefused,
    check_method,
    check_path,
    check_request,
    check_token,
    is_browser_request,
)

TOKEN = bytes(range(32))


def status_of(fn, *args) -> int | None:
    try:
        fn(*args)
    except RequestRefused as exc:
        return exc.status
    return None


@pytest.mark.parametrize("headers", [
    {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"},
    {"Origin": "http://evil.example"},
    {"Referer": "http://127.0.0.1:8888/lab"},
    {"Sec-Fetch-Site": "cross-site"},
    {"sec-fetch-mode": "no-cors"},
    {"Access-Control-Request-Method": "POST"},
])
def test_browser_requests_are_recognised(headers: dict[str, str]) -> None:
    assert is_browser_request(headers)


def test_programs_are_not_browsers() -> None:
    assert not is_browser_request({"User-Agent": "nbray-jupyter/0.1.0", "Authorization": "Bearer x"})
    assert not is_browser_request({"User-Agent": "curl/8.0"})


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_browsers_may_only_read(method: str) -> None:
    assert status_of(check_method, method, {"Origin": "http://evil.example"}) == 405
    for allowed in ("GET", "HEAD", "OPTIONS"):
        assert status_of(check_method, allowed, {"Origin": "http://evil.example"}) is None


def test_methods_are_an_allow_list() -> None:
    assert status_of(check_method, "POST", {}) is None
    for method in ("PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND"):
        assert status_of(check_method, method, {}) == 405


def test_token_missing_is_401_wrong_is_403() -> None:
    assert status_of(check_token, None, TOKEN) == 401
    assert status_of(check_token, "", TOKEN) == 401
    assert status_of(check_token, "Basic dXNlcjpwYXNz", TOKEN) == 401
    assert status_of(check_token, "Bearer ", TOKEN) == 401
    assert status_of(check_token, "Bearer " + "00" * 32, TOKEN) == 403
    assert status_of(check_token, "Bearer " + TOKEN.hex()[:-2], TOKEN) == 403
    assert status_of(check_token, "Bearer " + TOKEN.hex() + "00", TOKEN) == 403
    assert status_of(check_token, "Bearer not-hex-\u00e9", TOKEN) == 403
    assert status_of(check_token, "Bearer " + TOKEN.hex(), TOKEN) is None
    assert status_of(check_token, "bearer " + TOKEN.hex().upper(), TOKEN) is None


@pytest.mark.parametrize("path", [
    "/api/../etc/passwd", "/api/tasks/..", "/api/tasks/%2e%2e/x", "/api/tasks/..%2f..%2fetc%2fpasswd",
    "//api/cluster", "/api/./cluster", "/api\\cluster", "/api/cluster%00", "/api/tasks/\u00e9",
    "/" + "a" * 300,
])
def test_suspicious_paths_are_refused(path: str) -> None:
    assert status_of(check_path, path) in (400, 414)


def test_plain_paths_pass() -> None:
    for path in ("/api/cluster", "/api/tasks/" + "ab" * 24, "/api/tasks/" + "ab" * 24 + "/cancel"):
        assert status_of(check_path, path) is None


def test_path_is_checked_before_the_token() -> None:
    # A traversal attempt learns nothing about the token check.
    assert status_of(check_request, "GET", "/api/../x", {}, TOKEN) == 400
    assert status_of(check_request, "GET", "/api/cluster", {}, TOKEN) == 401
    assert status_of(check_request, "POST", "/api/cluster", {"Origin": "x"}, TOKEN) == 405


def q(**values: str) -> dict[str, list[bytes]]:
    return {k: [v.encode()] for k, v in values.items()}


def test_query_parameters_are_validated() -> None:
    ok = params.parse_query(q(job_id="0000000A", state="finished,FAILED", limit="10", func="f"), params.TASKS_QUERY)
    assert ok == {"job_id": "0000000a", "state": frozenset({"FINISHED", "FAILED"}), "limit": 10, "func": "f"}
    bad = [
        q(url="http://example.com"),            # unknown: nothing is ever proxied
        q(job_id="xyz"), q(job_id="00"), q(state="SLEEPING"), q(limit="0"), q(limit="-1"),
        q(limit="100001"), q(offset="1e9"), q(func="a\nb"), q(func="x" * 201), q(node_id="ab" * 27),
        {"limit": [b"1", b"2"]}, {"func": [b"\xff"]},
    ]
    for query in bad:
        assert status_of(params.parse_query, query, params.TASKS_QUERY) == 400, query
    assert status_of(params.parse_query, q(limit="5"), params.NO_QUERY) == 400
