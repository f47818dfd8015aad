"""TLS settings, contexts and the off-host listening policy (every nbray process).

TLS is off unless ``NBRAY_USE_TLS=1``. With it on, every TCP channel of a
cluster (GCS, raylets, core-worker ports, object transfers between raylets)
runs mutual TLS: each side presents ``NBRAY_TLS_SERVER_CERT`` /
``NBRAY_TLS_SERVER_KEY`` and verifies the other against
``NBRAY_TLS_CA_CERT``. Host names are not checked between cluster processes
(Dask does the same): the CA belongs to the cluster, so whoever holds a key
it signed is a member, and nodes join from addresses nobody listed in
advance. Notebook clients and dashboard users instead verify the server the
way a browser does (chain and host name, against ``NBRAY_TLS_CA_CERT`` or
the system trust store) and present no certificate: the cluster token
authenticates them. Unix sockets between processes of one node stay plain.

Listening on anything but loopback without TLS is refused unless
``NBRAY_ALLOW_INSECURE_NETWORK=1`` says so explicitly; then each process
logs one warning. Processes started by a node inherit all of this through
their environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # ssl is imported where a context is built: a process with TLS off never pays for it.
    import ssl

logger = logging.getLogger(__name__)

USE_TLS_ENV = "NBRAY_USE_TLS"
SERVER_CERT_ENV = "NBRAY_TLS_SERVER_CERT"
SERVER_KEY_ENV = "NBRAY_TLS_SERVER_KEY"
CA_CERT_ENV = "NBRAY_TLS_CA_CERT"
ALLOW_INSECURE_ENV = "NBRAY_ALLOW_INSECURE_NETWORK"

MINIMUM_VERSION_NAME = "TLSv1_2"  # ssl.TLSVersion member

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

SETUP_HINT = ("Create a CA and a certificate with 'nbray tls init DIR --host NAME ...' and start with "
              "'nbray start --use-tls ...' (or set NBRAY_USE_TLS=1, NBRAY_TLS_SERVER_CERT, "
              "NBRAY_TLS_SERVER_KEY and NBRAY_TLS_CA_CERT).")


class TlsConfigError(ValueError):
    """The TLS settings are incomplete, or name files that cannot be used."""


class InsecureNetworkError(ValueError):
    """A listener would accept plaintext connections from other machines."""


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """What the environment says about TLS (paths as given, unchecked)."""

    use_tls: bool = False
    server_cert: str = ""
    server_key: str = ""
    ca_cert: str = ""
    allow_insecure_network: bool = False


def parse_flag(value: str, name: str) -> bool:
    """A boolean environment variable: 1/0, true/false, yes/no, on/off."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TlsConfigError(f"{name}={value!r} is not a boolean; use 1 or 0")


def settings_from_env(environ: Mapping[str, str] | None = None) -> TlsSettings:
    env = os.environ if environ is None else environ
    return TlsSettings(
        use_tls=parse_flag(env.get(USE_TLS_ENV, ""), USE_TLS_ENV),
        server_cert=env.get(SERVER_CERT_ENV, "").strip(),
        server_key=env.get(SERVER_KEY_ENV, "").strip(),
        ca_cert=env.get(CA_CERT_ENV, "").strip(),
        allow_insecure_network=parse_flag(env.get(ALLOW_INSECURE_ENV, ""), ALLOW_INSECURE_ENV),
    )


def missing_cluster_settings(settings: TlsSettings) -> list[str]:
    """The variables a cluster process needs for mutual TLS that are unset."""
    named = ((SERVER_CERT_ENV, settings.server_cert), (SERVER_KEY_ENV, settings.server_key),
             (CA_CERT_ENV, settings.ca_cert))
    return [name for name, value in named if not value]


# ---- listening off-host ------------------------------------------------------------------------------------


def is_loopback_address(host: str) -> bool | None:
    """True/False for an IP literal (or "localhost"); None for a name to resolve.

    The wildcard addresses ("", 0.0.0.0, ::) listen on every interface, so
    they are not loopback."""
    text = host.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    if not text:
        return False
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return None


def bind_refusal(host: str, loopback: bool, settings: TlsSettings) -> str | None:
    """Why listening on `host` must be refused, or None when it is allowed."""
    if loopback or settings.use_tls or settings.allow_insecure_network:
        return None
    return (f"refusing to listen on {host or '0.0.0.0'} without TLS: other machines could connect in "
            "plaintext, and anyone who can read the cluster token on the wire can run code on this "
            f"cluster. {SETUP_HINT} To accept plaintext connections on a trusted network anyway, pass "
            f"--allow-insecure-network (or set {ALLOW_INSECURE_ENV}=1).")


_warned_insecure = False
_warn_lock = threading.Lock()


def check_bind(host: str, settings: TlsSettings | None = None) -> None:
    """Raise InsecureNetworkError when `host` is off-host and TLS is off (without the opt-out).

    A name is resolved: it counts as loopback only if every address it
    resolves to is loopback."""
    global _warned_insecure
    settings = settings if settings is not None else settings_from_env()
    loopback = is_loopback_address(host)
    if loopback is None:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            infos = []  # binding fails with its own error
        loopback = bool(infos) and all(is_loopback_address(str(info[4][0])) for info in infos)
    refusal = bind_refusal(host, loopback, settings)
    if refusal is not None:
        raise InsecureNetworkError(refusal)
    if not loopback and not settings.use_tls:
        with _warn_lock:
            if _warned_insecure:
                return
            _warned_insecure = True
        logger.warning("listening on %s without TLS (%s=1): traffic between machines, the cluster token "
                       "included, travels in plaintext", host or "0.0.0.0", ALLOW_INSECURE_ENV)


# ---- contexts ---------------------------------------------------------------------------------------------

# Contexts load files, so each is built once per process and settings.
_contexts: dict[tuple[str, TlsSettings], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _readable(path: str, variable: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise TlsConfigError(f"{variable}={path}: no such file. {SETUP_HINT}") from None
    except OSError as exc:
        raise TlsConfigError(f"{variable}={path}: cannot read it ({exc.strerror}); check the file's "
                             "owner and permissions.") from None


def _load_verify(ctx: ssl.SSLContext, path: str) -> None:
    import ssl

    _readable(path, CA_CERT_ENV)
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{CA_CERT_ENV}={path} is not a PEM certificate: {exc.reason or exc}") from None


def _load_chain(ctx: ssl.SSLContext, settings: TlsSettings) -> None:
    import ssl

    _readable(settings.server_cert, SERVER_CERT_ENV)
    _readable(settings.server_key, SERVER_KEY_ENV)
    try:
        ctx.load_cert_chain(settings.server_cert, settings.server_key)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"cannot use {SERVER_CERT_ENV}={settings.server_cert} with {SERVER_KEY_ENV}={settings.server_key}: "
            f"{exc.reason or exc} (is it a PEM certificate, and the key that belongs to it?)") from None


def _require_cluster_settings(settings: TlsSettings) -> None:
    missing = missing_cluster_settings(settings)
    if missing:
        raise TlsConfigError(f"{USE_TLS_ENV}=1 but {', '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set. {SETUP_HINT}")


def _build(kind: str, settings: TlsSettings) -> ssl.SSLContext:
    import ssl

    if kind in ("cluster-server", "cluster-client"):
        _require_cluster_settings(settings)
        server = kind == "cluster-server"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_chain(ctx, settings)
        _load_verify(ctx, settings.ca_cert)
    elif kind == "public-server":
        if not settings.server_cert or not settings.server_key:
            raise TlsConfigError(f"{USE_TLS_ENV}=1 needs {SERVER_CERT_ENV} and {SERVER_KEY_ENV}. {SETUP_HINT}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_NONE  # clients prove themselves with the token
        _load_chain(ctx, settings)
    else:  # "public-client": a notebook or browser-like client checks the server
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if settings.ca_cert:
            _load_verify(ctx, settings.ca_cert)
    ctx.minimum_version = ssl.TLSVersion[MINIMUM_VERSION_NAME]
    if ctx.protocol == ssl.PROTOCOL_TLS_SERVER:
        # No session resumption between nbray processes: connections are long-lived.
        ctx.num_tickets = 0
    return ctx


def _context(kind: str, settings: TlsSettings | None) -> ssl.SSLContext:
    settings = settings if settings is not None else settings_from_env()
    key = (kind, settings)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = _build(kind, settings)
    return ctx


def cluster_server_context(settings: TlsSettings | None = None) -> ssl.SSLContext | None:
    """For a cluster process's TCP listener; None while TLS is off."""
    settings = settings if settings is not None else settings_from_env()
    return _context("cluster-server", settings) if settings.use_tls else None


def cluster_client_context(settings: TlsSettings | None = None) -> ssl.SSLContext | None:
    """For a cluster process connecting to another over TCP; None while TLS is off."""
    settings = settings if settings is not None else settings_from_env()
    return _context("cluster-client", settings) if settings.use_tls else None


def public_server_context(settings: TlsSettings | None = None) -> ssl.SSLContext | None:
    """For listeners users reach (client server, dashboard): no client
    certificate asked; None while TLS is off."""
    settings = settings if settings is not None else settings_from_env()
    return _context("public-server", settings) if settings.use_tls else None


def public_client_context(settings: TlsSettings | None = None) -> ssl.SSLContext:
    """For a notebook client or an HTTPS caller: verifies the server's chain
    and host name against NBRAY_TLS_CA_CERT, else the system trust store."""
    return _context("public-client", settings)


def check_cluster_settings(settings: TlsSettings | None = None) -> None:
    """Build the cluster contexts now, so a bad setting fails before anything starts."""
    settings = settings if settings is not None else settings_from_env()
    if settings.use_tls:
        cluster_server_context(settings)
        cluster_client_context(settings)
        public_server_context(settings)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed TLS handshake, for error messages."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or exc.reason or str(exc)
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).replace("_", " ").lower()
    return str(exc)
