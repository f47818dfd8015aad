"""The dashboard's DNS-rebinding guard: which Host headers are answered (pure functions)."""

from __future__ import annotations

import socket

import pytest

from nbray.dashboard.security import RequestRefused, allowed_host_names, check_host, check_request

pytestmark = pytest.mark.timeout(30)

TOKEN = bytes(range(32))
AUTH = {"Authorization": "Bearer " + TOKEN.hex()}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8265", "127.0.0.1.evil.example",
                                  "localhost.evil.example:80", "[evil]:1", "EVIL.EXAMPLE"])
def test_foreign_names_are_refused(host: str) -> None:
    with pytest.raises(RequestRefused) as info:
        check_host(host, allowed_host_names("127.0.0.1"))
    assert info.value.status == 403
    # Even with the right token: the guard runs before it.
    with pytest.raises(RequestRefused):
        check_request("GET", "/api/cluster", {**AUTH, "Host": host}, TOKEN, allowed_host_names("127.0.0.1"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8265", "[::1]:8265", "::1", "10.1.2.3:80", "localhost",
                                  "LOCALHOST:8265", "app.localhost", None, ""])
def test_addresses_and_local_names_are_answered(host: str | None) -> None:
    check_host(host, allowed_host_names("127.0.0.1"))


def test_bind_name_machine_names_and_configured_names_are_answered() -> None:
    allowed = allowed_host_names("head.internal", "proxy.example, other.example")
    for host in ("head.internal:8265", socket.gethostname(), "proxy.example", "other.example:443"):
        check_host(host, allowed)
    with pytest.raises(RequestRefused):
        check_host("evil.example", allowed)


def test_a_star_turns_the_guard_off() -> None:
    check_host("evil.example", allowed_host_names("127.0.0.1", "*"))
