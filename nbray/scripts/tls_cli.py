"""``nbray tls init`` and the TLS flags of ``nbray start``.

    nbray tls init DIR [--host NAME ...] [--force]
    nbray start --head --use-tls --tls-server-cert DIR/server.crt --tls-server-key DIR/server.key \\
                --tls-ca-cert DIR/ca.crt [--allow-insecure-network]

The flags set the same environment variables as Ray's ``RAY_USE_TLS`` and
friends, with nbray's prefix, so every process the node starts inherits
them.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

# The environment variables the flags set, as nbray.rpc.tls names them
# (spelled out so that building the parser does not import ssl; a unit test
# keeps them equal).
USE_TLS_ENV = "NBRAY_USE_TLS"
SERVER_CERT_ENV = "NBRAY_TLS_SERVER_CERT"
SERVER_KEY_ENV = "NBRAY_TLS_SERVER_KEY"
CA_CERT_ENV = "NBRAY_TLS_CA_CERT"
ALLOW_INSECURE_ENV = "NBRAY_ALLOW_INSECURE_NETWORK"


def add_parser(sub: Any) -> None:
    """Register ``nbray tls``."""
    p = sub.add_parser("tls", help="create certificates for a TLS cluster",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tls_sub = p.add_subparsers(dest="tls_command", required=True)
    init = tls_sub.add_parser("init", help="create a CA and a certificate for the cluster's hosts")
    init.add_argument("directory", help="where to write ca.crt, ca.key, server.crt and server.key")
    init.add_argument("--host", action="append", default=[], metavar="NAME",
                      help="a host name or IP the certificate is valid for (repeatable; default: "
                           "localhost, 127.0.0.1, ::1 and this machine's name)")
    init.add_argument("--force", action="store_true", help="replace an existing server certificate")
    init.set_defaults(func=cmd_tls_init)


def cmd_tls_init(args: argparse.Namespace) -> int:
    from nbray.rpc.tls_certs import init_directory

    files = init_directory(args.directory, args.host or None, force=args.force)
    env = files.environment()
    q = shlex.quote
    print(f"Wrote a CA and a certificate for {', '.join(files.hosts)} to {files.directory}:")
    print(f"  {files.ca_cert}     the CA: every machine and notebook client needs it")
    print(f"  {files.ca_key}     the CA's key: keep it private (run this again on a copy of the "
          "directory to sign a certificate for another machine)")
    print(f"  {files.server_cert} / server.key  the certificate every process of the cluster presents")
    print("\nStart a head node with TLS:")
    print(f"  nbray start --head --use-tls --tls-server-cert {q(files.server_cert)} "
          f"--tls-server-key {q(files.server_key)} --tls-ca-cert {q(files.ca_cert)} --node-ip-address HOST")
    print("\nDrivers and other nodes need the same settings in their environment:")
    print("  export " + " ".join(f"{k}={q(v)}" for k, v in env.items()))
    print("\nNotebook clients need only the CA:")
    print(f"  export NBRAY_USE_TLS=1 NBRAY_TLS_CA_CERT={q(files.ca_cert)}")
    return 0


def add_start_flags(p: argparse.ArgumentParser) -> None:
    """The TLS flags of ``nbray start``."""
    p.add_argument("--use-tls", action="store_true", default=None,
                   help=f"mutual TLS on every TCP port of this node (sets {USE_TLS_ENV}=1)")
    p.add_argument("--tls-server-cert", default=None, metavar="FILE",
                   help=f"certificate this node's processes present ({SERVER_CERT_ENV})")
    p.add_argument("--tls-server-key", default=None, metavar="FILE", help=f"its key ({SERVER_KEY_ENV})")
    p.add_argument("--tls-ca-cert", default=None, metavar="FILE",
                   help=f"CA that peers' certificates must be signed by ({CA_CERT_ENV})")
    p.add_argument("--allow-insecure-network", action="store_true", default=None,
                   help=f"listen on a non-loopback address without TLS ({ALLOW_INSECURE_ENV}=1)")


def apply_start_flags(args: argparse.Namespace, listen_hosts: list[str]) -> None:
    """Put the flags into the environment the node's processes inherit, and
    check now (before anything starts) that the node may listen on
    `listen_hosts`. Raises TlsConfigError or InsecureNetworkError."""
    from nbray.rpc import tls

    values = {tls.SERVER_CERT_ENV: args.tls_server_cert, tls.SERVER_KEY_ENV: args.tls_server_key,
              tls.CA_CERT_ENV: args.tls_ca_cert}
    for name, value in values.items():
        if value:
            os.environ[name] = os.path.abspath(value)  # processes start in other directories
    if args.use_tls:
        os.environ[tls.USE_TLS_ENV] = "1"
    if args.allow_insecure_network:
        os.environ[tls.ALLOW_INSECURE_ENV] = "1"
    settings = tls.settings_from_env()
    if not settings.use_tls and any(values.values()):
        raise tls.TlsConfigError("--tls-server-cert, --tls-server-key and --tls-ca-cert take effect with "
                                 "--use-tls (or NBRAY_USE_TLS=1)")
    tls.check_cluster_settings(settings)
    for host in listen_hosts:
        tls.check_bind(host, settings)
