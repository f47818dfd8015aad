"""Building the ``nbray`` parser (``nbray --help``, and the first step of
every command) imports no protocol, RPC, TLS or config module: each command
imports what it needs when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nbray.rpc import tls
from nbray.scripts import tls_cli

pytestmark = pytest.mark.timeout(60)

_PROBE = """
import json, sys
from nbray.scripts import cli
parser = cli.build_parser()
parser.parse_args(["status", "--temp-dir", "/nowhere"])
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_parser_imports_no_heavy_module() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=50)
    loaded = set(json.loads(out.stdout))
    heavy = {"ssl", "google.protobuf", "nbray.protocol", "nbray.common.config", "nbray.rpc", "nbray.rpc.tls"}
    assert not loaded & heavy, f"the parser pulled in {sorted(loaded & heavy)}"
    assert "nbray.scripts.tls_cli" in loaded  # its flags are still registered


def test_tls_flag_help_names_the_variables_the_flags_set() -> None:
    assert tls_cli.USE_TLS_ENV == tls.USE_TLS_ENV
    assert tls_cli.SERVER_CERT_ENV == tls.SERVER_CERT_ENV
    assert tls_cli.SERVER_KEY_ENV == tls.SERVER_KEY_ENV
    assert tls_cli.CA_CERT_ENV == tls.CA_CERT_ENV
    assert tls_cli.ALLOW_INSECURE_ENV == tls.ALLOW_INSECURE_ENV
