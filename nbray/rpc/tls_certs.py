"""Making a CA and certificates for a TLS cluster (``nbray tls init``, tests, benchmarks).

A directory holds ``ca.crt`` / ``ca.key`` (the cluster's own CA) and
``server.crt`` / ``server.key`` (the certificate every process of the
cluster presents, valid for the host names and IPs given). Keys are
ECDSA P-256 (fast handshakes, small records) and written with mode 0600.
Certificates carry the extensions strict verifiers (Python 3.13's default
context, browsers) insist on: key identifiers, critical basic constraints,
key usage, and both server and client authentication, since cluster
processes use the one certificate in both roles.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
CA_VALID_DAYS = 3650
# Apple platforms refuse longer-lived certificates from private CAs.
CERT_VALID_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    directory: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    hosts: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """The variables that turn TLS on with these files."""
        return {"NBRAY_USE_TLS": "1", "NBRAY_TLS_SERVER_CERT": self.server_cert,
                "NBRAY_TLS_SERVER_KEY": self.server_key, "NBRAY_TLS_CA_CERT": self.ca_cert}


def default_hosts() -> list[str]:
    """This machine as local clients name it."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    name = socket.gethostname()
    if name and name not in hosts:
        hosts.append(name)
    return hosts


def split_hosts(hosts: list[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(DNS names, IP addresses); raises ValueError for something that is neither."""
    names: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for host in hosts:
        text = host.strip().strip("[]")
        try:
            ips.append(ipaddress.ip_address(text))
            continue
        except ValueError:
            pass
        label_ok = all(part and len(part) <= 63 and part.replace("-", "").replace("_", "").isalnum()
                       for part in text.removeprefix("*.").split("."))
        if not text or not label_ok:
            raise ValueError(f"{host!r} is neither a host name nor an IP address")
        names.append(text)
    return names, ips


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def _write_public(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def init_directory(directory: str, hosts: list[str] | None = None, *, force: bool = False,
                   now: datetime.datetime | None = None) -> TlsFiles:
    """Create (or reuse) the CA in `directory` and a new server certificate for `hosts`.

    An existing CA is reused, so running this again on a copy of the
    directory signs a certificate for another machine of the same cluster.
    Raises FileExistsError when a server certificate exists (unless
    `force`), ValueError for a malformed host.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = list(dict.fromkeys(hosts or default_hosts()))
    names, ips = split_hosts(hosts)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths = {f: os.path.join(os.path.abspath(directory), f)
             for f in (CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE)}
    if os.path.exists(paths[SERVER_CERT_FILE]) and not force:
        raise FileExistsError(f"{paths[SERVER_CERT_FILE]} exists; pass --force to replace it (the CA is kept)")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)  # tolerate clocks a little behind

    if os.path.exists(paths[CA_CERT_FILE]) and os.path.exists(paths[CA_KEY_FILE]):
        with open(paths[CA_CERT_FILE], "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(paths[CA_KEY_FILE], "rb") as f:
            loaded = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths[CA_KEY_FILE]} is not an EC key made by 'nbray tls init'")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nbray"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "nbray cluster CA")])
        ca_public = ca_key.public_key()
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name).public_key(ca_public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_public), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(paths[CA_KEY_FILE], ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        _write_public(paths[CA_CERT_FILE], ca_cert.public_bytes(serialization.Encoding.PEM))

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nbray"),
                         x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(paths[SERVER_KEY_FILE], key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _write_public(paths[SERVER_CERT_FILE], cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(os.path.abspath(directory), paths[CA_CERT_FILE], paths[CA_KEY_FILE],
                    paths[SERVER_CERT_FILE], paths[SERVER_KEY_FILE], tuple(hosts))
