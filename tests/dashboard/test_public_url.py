"""The URL the dashboard reports for the address it binds."""

from __future__ import annotations

from nbray.dashboard.server import public_url


def test_loopback_and_wildcard_binds() -> None:
    assert public_url("127.0.0.1", 8265, "127.0.0.1:6379") == "http://127.0.0.1:8265"
    # Bound to every interface: reachable at the head's address.
    assert public_url("0.0.0.0", 8265, "10.0.0.5:6379") == "http://10.0.0.5:8265"
    assert public_url("::1", 8265, "10.0.0.5:6379") == "http://[::1]:8265"
