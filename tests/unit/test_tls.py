"""TLS settings, the off-host listening policy, certificates and the TLS socket, without a cluster."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.rpc import tls
from nbray.rpc.handshake import tls_failure_message
from nbray.rpc.tls_certs import TlsFiles, init_directory, split_hosts
from nbray.rpc.tls_socket import TlsSocket
from nbray.scripts import tls_cli

pytestmark = pytest.mark.timeout(60)

TLS_VARIABLES = (tls.USE_TLS_ENV, tls.SERVER_CERT_ENV, tls.SERVER_KEY_ENV, tls.CA_CERT_ENV, tls.ALLOW_INSECURE_ENV)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_directory(str(tmp_path_factory.mktemp("certs")), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Made by another CA."""
    return init_directory(str(tmp_path_factory.mktemp("other")), ["localhost", "127.0.0.1"])


def cluster_settings(files: TlsFiles) -> tls.TlsSettings:
    return tls.TlsSettings(use_tls=True, server_cert=files.server_cert, server_key=files.server_key,
                           ca_cert=files.ca_cert)


# ---- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [("1", True), ("true", True), (" YES ", True), ("on", True),
                                           ("", False), ("0", False), ("False", False), ("off", False)])
def test_flags_accept_the_usual_spellings(text: str, expected: bool) -> None:
    assert tls.parse_flag(text, "X") is expected


def test_a_malformed_flag_names_the_variable() -> None:
    with pytest.raises(tls.TlsConfigError, match="NBRAY_USE_TLS='maybe' is not a boolean"):
        tls.settings_from_env({tls.USE_TLS_ENV: "maybe"})


def test_settings_come_from_the_environment() -> None:
    settings = tls.settings_from_env({tls.USE_TLS_ENV: "1", tls.SERVER_CERT_ENV: " /c.crt ",
                                      tls.SERVER_KEY_ENV: "/c.key", tls.CA_CERT_ENV: "/ca.crt"})
    assert settings == tls.TlsSettings(True, "/c.crt", "/c.key", "/ca.crt", False)
    assert tls.settings_from_env({}) == tls.TlsSettings()
    assert tls.settings_from_env({tls.ALLOW_INSECURE_ENV: "1"}).allow_insecure_network


def test_missing_cluster_settings_are_listed() -> None:
    assert tls.missing_cluster_settings(tls.TlsSettings(use_tls=True, server_cert="/c")) == [
        tls.SERVER_KEY_ENV, tls.CA_CERT_ENV]
    with pytest.raises(tls.TlsConfigError, match="NBRAY_TLS_SERVER_KEY, NBRAY_TLS_CA_CERT are not set"):
        tls.cluster_server_context(tls.TlsSettings(use_tls=True, server_cert="/c"))


def test_unreadable_files_are_named(tmp_path: Any, certs: TlsFiles) -> None:
    missing = str(tmp_path / "nope.crt")
    settings = tls.TlsSettings(use_tls=True, server_cert=missing, server_key=certs.server_key, ca_cert=certs.ca_cert)
    with pytest.raises(tls.TlsConfigError, match=f"NBRAY_TLS_SERVER_CERT={missing}: no such file"):
        tls.check_cluster_settings(settings)
    wrong_key = tls.TlsSettings(use_tls=True, server_cert=certs.server_cert, server_key=certs.ca_key,
                                ca_cert=certs.ca_cert)
    with pytest.raises(tls.TlsConfigError, match="the key that belongs to it"):
        tls.check_cluster_settings(wrong_key)


def test_contexts_are_none_while_tls_is_off() -> None:
    assert tls.cluster_server_context(tls.TlsSettings()) is None
    assert tls.cluster_client_context(tls.TlsSettings()) is None
    assert tls.public_server_context(tls.TlsSettings()) is None


def test_cluster_contexts_are_mutual(certs: TlsFiles) -> None:
    server = tls.cluster_server_context(cluster_settings(certs))
    assert server is not None and server.verify_mode == ssl.CERT_REQUIRED
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    public = tls.public_server_context(cluster_settings(certs))
    assert public is not None and public.verify_mode == ssl.CERT_NONE
    client = tls.public_client_context(tls.TlsSettings(ca_cert=certs.ca_cert))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


# ---- listening off-host ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host,expected", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True),
                                           ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                           ("", False), ("::", False), ("10.0.0.5", False),
                                           ("example.invalid", None)])
def test_loopback_addresses(host: str, expected: bool | None) -> None:
    assert tls.is_loopback_address(host) is expected


def test_off_host_without_tls_is_refused_with_both_ways_out() -> None:
    reason = tls.bind_refusal("10.0.0.5", False, tls.TlsSettings())
    assert reason is not None
    assert "10.0.0.5" in reason and "nbray tls init" in reason and "--use-tls" in reason
    assert "--allow-insecure-network" in reason and "NBRAY_ALLOW_INSECURE_NETWORK=1" in reason
    assert tls.bind_refusal("", False, tls.TlsSettings()) is not None
    assert tls.bind_refusal("127.0.0.1", True, tls.TlsSettings()) is None
    assert tls.bind_refusal("10.0.0.5", False, tls.TlsSettings(use_tls=True)) is None
    assert tls.bind_refusal("10.0.0.5", False, tls.TlsSettings(allow_insecure_network=True)) is None


def test_check_bind_refuses_and_warns_once(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.setattr(tls, "_warned_insecure", False)
    tls.check_bind("127.0.0.1", tls.TlsSettings())
    tls.check_bind("localhost", tls.TlsSettings())
    with pytest.raises(tls.InsecureNetworkError, match="refusing to listen on 0.0.0.0 without TLS"):
        tls.check_bind("0.0.0.0", tls.TlsSettings())
    opt_out = tls.TlsSettings(allow_insecure_network=True)
    with caplog.at_level(logging.WARNING, logger="nbray.rpc.tls"):
        tls.check_bind("0.0.0.0", opt_out)
        tls.check_bind("10.1.2.3", opt_out)
    warnings = [r for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warnings) == 1 and "plaintext" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nbray.rpc.tls"):
        tls.check_bind("0.0.0.0", tls.TlsSettings(use_tls=True))
    assert not caplog.records


# ---- nbray start flags -----------------------------------------------------------------------------------


@pytest.fixture
def clean_tls_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in TLS_VARIABLES:
        # setenv records the original value (or its absence), so whatever the code under test sets is undone
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield


def start_args(**kwargs: Any) -> argparse.Namespace:
    values: dict[str, Any] = {"use_tls": None, "tls_server_cert": None, "tls_server_key": None,
                              "tls_ca_cert": None, "allow_insecure_network": None}
    values.update(kwargs)
    return argparse.Namespace(**values)


def test_start_flags_refuse_an_off_host_plaintext_node(clean_tls_env: None) -> None:
    with pytest.raises(tls.InsecureNetworkError, match="--allow-insecure-network"):
        tls_cli.apply_start_flags(start_args(), ["10.0.0.5"])
    tls_cli.apply_start_flags(start_args(allow_insecure_network=True), ["10.0.0.5"])
    assert os.environ[tls.ALLOW_INSECURE_ENV] == "1"


def test_start_flags_set_the_inherited_environment(clean_tls_env: None, certs: TlsFiles) -> None:
    tls_cli.apply_start_flags(start_args(use_tls=True, tls_server_cert=certs.server_cert,
                                         tls_server_key=certs.server_key, tls_ca_cert=certs.ca_cert), ["0.0.0.0"])
    assert tls.settings_from_env() == cluster_settings(certs)


def test_certificate_flags_without_use_tls_are_an_error(clean_tls_env: None, certs: TlsFiles) -> None:
    with pytest.raises(tls.TlsConfigError, match="take effect with --use-tls"):
        tls_cli.apply_start_flags(start_args(tls_ca_cert=certs.ca_cert), ["127.0.0.1"])


# ---- certificates ----------------------------------------------------------------------------------------


def test_init_writes_private_keys_and_lists_every_host(tmp_path: Any) -> None:
    from cryptography import x509

    files = init_directory(str(tmp_path / "d"), ["head.example", "10.0.0.5", "::1"])
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with open(files.server_cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["head.example"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    assert files.environment()[tls.USE_TLS_ENV] == "1"


def test_init_keeps_the_ca_and_refuses_to_overwrite(tmp_path: Any) -> None:
    first = init_directory(str(tmp_path), ["a.example"])
    with open(first.ca_cert, "rb") as f:
        ca = f.read()
    with pytest.raises(FileExistsError, match="--force"):
        init_directory(str(tmp_path), ["b.example"])
    second = init_directory(str(tmp_path), ["b.example"], force=True)
    with open(second.ca_cert, "rb") as f:
        assert f.read() == ca


@pytest.mark.parametrize("host", ["", "bad host", "a..b", "x/y"])
def test_malformed_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an IP address"):
        split_hosts([host])


def test_tls_init_command_prints_the_settings(tmp_path: Any, capsys: Any) -> None:
    from nbray.scripts.cli import main

    assert main(["tls", "init", str(tmp_path / "c"), "--host", "127.0.0.1"]) == 0
    out = capsys.readouterr().out
    assert "--use-tls" in out and "NBRAY_TLS_CA_CERT=" in out
    assert os.path.exists(tmp_path / "c" / "server.key")


# ---- the TLS socket --------------------------------------------------------------------------------------


def tls_pair(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
             server_hostname: str | None = None) -> tuple[TlsSocket, TlsSocket, list[BaseException]]:
    """Handshake over loopback TCP: the server side non-blocking, stepped as bytes arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []
    holder: list[TlsSocket] = []

    def serve() -> None:
        raw, _ = listener.accept()
        raw.setblocking(False)
        server = TlsSocket(raw, server_ctx, server_side=True)
        holder.append(server)
        import select

        try:
            while not server.handshake_step(5.0):
                select.select([server], [], [], 5.0)
        except (ssl.SSLError, ConnectionError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    raw_client = socket.create_connection(listener.getsockname(), timeout=5)
    client = TlsSocket(raw_client, client_ctx, server_side=False, server_hostname=server_hostname)
    try:
        client.handshake(5.0, "127.0.0.1")
    except BaseException:
        client.close()
        raise
    finally:
        thread.join(10)
        listener.close()
    return holder[0], client, errors


def test_mutual_tls_moves_data_both_ways(certs: TlsFiles) -> None:
    server_ctx = tls.cluster_server_context(cluster_settings(certs))
    client_ctx = tls.cluster_client_context(cluster_settings(certs))
    assert server_ctx is not None and client_ctx is not None
    server, client, errors = tls_pair(server_ctx, client_ctx)
    try:
        assert not errors and client.peer_certificate is not None
        payload = os.urandom(3 * 1024 * 1024)  # many records
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        server.setblocking(True)
        server.settimeout(10)
        got = bytearray()
        while len(got) < len(payload):
            chunk = server.recv(1 << 20)
            assert chunk
            got += chunk
        sender.join(10)
        assert bytes(got) == payload
        server.sendall(b"reply")
        assert client.recv(5) == b"reply"
        with pytest.raises(NotImplementedError):
            client.send(b"plaintext")
    finally:
        server.close()
        client.close()


def test_a_certificate_from_another_ca_is_refused(certs: TlsFiles, other_certs: TlsFiles) -> None:
    server_ctx = tls.cluster_server_context(cluster_settings(certs))
    stranger = tls.cluster_client_context(cluster_settings(other_certs))
    assert server_ctx is not None and stranger is not None
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        tls_pair(server_ctx, stranger)
    message = tls_failure_message("10.0.0.5:6379", caught.value, cluster=True)
    assert message.startswith("TLS: the certificate of 10.0.0.5:6379 was not accepted: ")
    assert caught.value.verify_message in message
    assert "same CA on every machine" in message


def test_a_host_name_mismatch_names_the_host_and_the_reason(certs: TlsFiles) -> None:
    server_ctx = tls.public_server_context(cluster_settings(certs))
    client_ctx = tls.public_client_context(tls.TlsSettings(ca_cert=certs.ca_cert))
    assert server_ctx is not None
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        tls_pair(server_ctx, client_ctx, server_hostname="head.example")
    message = tls_failure_message("head.example:10001", caught.value, cluster=False)
    assert "head.example:10001" in message and "mismatch" in message.lower()
    assert tls.CA_CERT_ENV in message


def test_a_plaintext_peer_fails_the_server_handshake(certs: TlsFiles) -> None:
    server_ctx = tls.cluster_server_context(cluster_settings(certs))
    assert server_ctx is not None
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        server = TlsSocket(a, server_ctx, server_side=True)
        b.sendall(b"NBRAY\x00" + b"\x00" * 64)
        with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER|wrong version number"):
            server.handshake_step(5.0)
        server.close()  # as the listener does
        b.settimeout(5)
        answer = b.recv(64)
        assert answer == b"" or answer[0] == 0x15  # nothing, or a TLS alert record
    finally:
        b.close()


# ---- the benchmark's verdicts ----------------------------------------------------------------------------


def test_tls_cost_is_the_fraction_lost() -> None:
    from nbray.scripts.microbenchmark_tls import format_comparison, tls_cost, within_target

    assert tls_cost(1000.0, 900.0) == pytest.approx(0.10)
    assert tls_cost(2.0, 2.2) == pytest.approx(-0.10)  # faster over TLS: no cost
    assert within_target("tasks sync on the other node (/s)", 1000.0, 860.0)
    assert not within_target("tasks sync on the other node (/s)", 1000.0, 840.0)
    assert within_target("object transfer 200 MB between nodes (GB/s)", 3.0, 2.2)
    assert not within_target("object transfer 200 MB between nodes (GB/s)", 3.0, 2.0)
    with pytest.raises(ValueError, match="must be positive"):
        tls_cost(0.0, 1.0)
    table = format_comparison({"client: put 100 MB (GB/s)": {"plain": 1.0, "tls": 0.5}})
    assert "50%" in table and "MISS (<= 30%)" in table


def test_the_stream_and_call_costs_measure_each_mode(certs: TlsFiles) -> None:
    from nbray.scripts.microbenchmark_tls import call_cpu_us, stream_cpu_seconds

    settings = cluster_settings(certs)
    ciphers = {}
    for mode in ("plain", "tls", "tls1.2-aes128"):
        cpu_s, wall_s, ciphers[mode] = stream_cpu_seconds(mode, 4 << 20, settings)
        assert cpu_s > 0 and wall_s > 0
    assert ciphers["plain"] == "none"
    assert ciphers["tls"].startswith("TLSv1.3 ")  # nbray's own contexts keep TLS 1.3
    assert ciphers["tls1.2-aes128"].startswith("TLSv1.2 ") and "AES128-GCM" in ciphers["tls1.2-aes128"]
    figures = call_cpu_us("tls", 200, settings)
    assert set(figures) == {"sync_caller", "sync_server", "async_caller", "async_server"}
    assert figures["sync_caller"] > 0
