"""Notebook clients: ``nbray.init("nbray://HOST:10001")``.

A process outside the cluster (a notebook on a laptop) connects to the
client server on the head node; a session process there acts as its
driver. See ``nbray.client.core`` (this end), ``nbray.client.server`` and
``nbray.client.session`` (the cluster's end).
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from nbray.cluster_context import RayContext

DEFAULT_PORT = 10001


def parse_client_address(address: str) -> str:
    """``nbray://HOST[:PORT]`` (or ``ray://``) -> ``HOST:PORT``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.strip().rstrip("/")
    if not rest:
        raise ValueError(f"malformed client address {address!r}; expected nbray://HOST:PORT")
    host, sep, port = rest.rpartition(":")
    if not sep:
        return f"{rest}:{DEFAULT_PORT}"
    if not port.isdigit() or not host:
        raise ValueError(f"malformed client address {address!r}; expected nbray://HOST:PORT")
    return rest


def find_local_token(server_address: str) -> bytes | None:
    """The token of a cluster on this machine whose client server is at
    `server_address` (a client on the head's machine needs no setup): the
    clusters of the user's registry (any --temp-dir), then the default root's."""
    from nbray.node import session
    from nbray.rpc import auth

    host, _, port = server_address.rpartition(":")
    for path, info in session.local_head_sessions():
        listed = str(info.get("client_server_address", ""))
        listed_host, _, listed_port = listed.rpartition(":")
        if listed_port == port and (listed_host == host or host in ("localhost", "127.0.0.1", "0.0.0.0")):
            token_path = os.path.join(path, auth.TOKEN_FILE_NAME)
            if session.own_regular_file(token_path):
                return auth.read_token_file(token_path)
    return None


def connect_client(address: str, *, namespace: str | None, runtime_env: dict[str, Any] | None,
                   token: str | None, init_kwargs: dict[str, Any], use_tls: bool | None = None) -> RayContext:
    """Connect this process to a cluster as a notebook client (called by init).

    ``use_tls``: None follows NBRAY_USE_TLS. Over TLS the server's
    certificate is verified against NBRAY_TLS_CA_CERT (else the system
    trust store) and must list the host of `address`; the token is still
    required. Raises ConnectionError naming the host and the reason when
    the server cannot be reached or verified, AuthenticationError without
    a token."""
    from nbray import api
    from nbray.client.core import ClientCore
    from nbray.common import module_shipping
    from nbray.common.config import get_config
    from nbray.exceptions import AuthenticationError
    from nbray.object_ref import _core
    from nbray.rpc import auth, tls

    server = parse_client_address(address)
    if use_tls is None:
        use_tls = tls.settings_from_env().use_tls
    tls_context = tls.public_client_context() if use_tls else None
    key: bytes | None
    if token:
        key = auth.decode_token(token, "the _auth_token argument")
    else:
        key = auth.token_from_environment() or find_local_token(server)
    if key is None:
        raise AuthenticationError(
            f"No cluster token for {address}: set NBRAY_AUTH_TOKEN (or NBRAY_AUTH_TOKEN_PATH) to the token "
            "printed by 'nbray get-auth-token' on the head node.")
    ignored = sorted(k for k, v in init_kwargs.items() if v)
    if ignored:
        import logging

        logging.getLogger("nbray").warning(
            "client mode: %s apply to the cluster, not to a client; set them with 'nbray start'",
            ", ".join(ignored))
    uploads: dict[str, bytes] = {}
    if runtime_env:
        from nbray.runtime_env import resolve

        # Local paths name files on this machine: pack them here, send the
        # session their URIs, and store the packages before any task runs.
        runtime_env, uploads = resolve.pack(runtime_env, "init()")
    client = ClientCore(server, key, get_config(), namespace=namespace, runtime_env=runtime_env,
                        tls_context=tls_context)
    if uploads:
        from nbray.runtime_env import resolve

        resolve.upload(client.gcs, uploads, get_config().runtime_env_package_chunk_bytes)
    # The cluster cannot import this process's own modules: they travel by value.
    module_shipping.configure(cluster_is_remote=True)
    _core[0] = client  # type: ignore[call-overload]
    api._state.client = client
    context = RayContext(client)
    context.dashboard_url = client.dashboard_url
    context.address_info["webui_url"] = client.dashboard_url
    context.address_info["address"] = address
    api._state.context = context
    atexit.register(_close_at_exit)
    return context


def _close_at_exit() -> None:
    from nbray import api

    try:
        api.shutdown()
    except Exception:
        pass


__all__ = ["DEFAULT_PORT", "connect_client", "parse_client_address"]
