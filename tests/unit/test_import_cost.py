"""What each kind of nbray process imports before it does its work.

Every cluster start runs several interpreters (GCS, raylet, worker factory,
driver), and ``nbray status`` is one more: modules they do not need on that
path (TLS, fault injection, the protocol of other services, the connection
machinery of a one-off client) must stay unimported. Each check runs in a
fresh interpreter and reads ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nbray import protocol

pytestmark = pytest.mark.timeout(120)

# Never needed by any process below unless a feature asks for it.
NEVER = {"ssl", "grpc", "pyarrow", "IPython", "numpy", "nbray.rpc.fault_injection", "nbray.rpc.tls_socket",
         "nbray.rpc.tls_connection"}


def _modules_after(code: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBRAY_")}  # TLS and faults off
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=100, env=env)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_importing_the_package_loads_no_heavy_module():
    loaded = _modules_after("import nbray")
    assert not loaded & (NEVER | {"google.protobuf", "cloudpickle", "dataclasses", "nbray.common.config"})


def test_a_driver_starts_its_cluster_before_importing_the_protocol_and_rpc_modules():
    # init() spawns the GCS and the raylet with what nbray.api imports; the rest loads while they start.
    loaded = _modules_after("import nbray.api")
    late = {"google.protobuf", "nbray.protocol", "nbray.rpc.connection", "nbray.rpc.handshake",
            "nbray.rpc.eventloop", "nbray.rpc.blocking", "nbray.worker.core_worker", "nbray.node.launcher",
            "cloudpickle", "nbray.common.serialization"}
    assert not loaded & (NEVER | late), sorted(loaded & (NEVER | late))


def test_the_status_command_loads_only_what_one_gcs_call_needs():
    loaded = _modules_after(
        "from nbray.scripts import cli\n"
        "cli.build_parser().parse_args(['status'])\n"
        "from nbray.node import session\n"
        "from nbray.rpc.blocking import BlockingClient\n"
        "from nbray.protocol import method\n"
        "method('GcsService.GetClusterStatus')\n")
    unneeded = {"nbray.rpc.connection", "nbray.rpc.eventloop", "nbray.protocol.raylet_pb2",
                "nbray.protocol.core_worker_pb2", "nbray.protocol.client_pb2", "cloudpickle",
                "nbray.common.serialization"}
    assert "nbray.protocol.gcs_pb2" in loaded
    assert not loaded & (NEVER | unneeded), sorted(loaded & (NEVER | unneeded))


def test_the_raylet_starts_its_worker_factory_before_importing_configuration():
    # ``python -m nbray.raylet`` imports this module, then starts the factory, then imports the raylet.
    loaded = _modules_after("import nbray.raylet.zygote_process")
    heavy = {"nbray.common.config", "dataclasses", "tempfile", "nbray.node.registry", "google.protobuf"}
    assert not loaded & (NEVER | heavy), sorted(loaded & (NEVER | heavy))


@pytest.mark.parametrize("module", ["nbray.gcs.supervisor", "nbray.raylet.raylet"])
def test_cluster_daemons_load_no_tls_or_fault_injection_code_when_those_are_off(module):
    loaded = _modules_after(f"import {module}")
    assert "nbray.protocol.gcs_pb2" in loaded  # the probe imported what it should
    assert not loaded & NEVER, sorted(loaded & NEVER)


def test_method_ids_do_not_depend_on_which_service_is_loaded_first():
    expected = {m.full_name: m.id for m in protocol.METHODS}
    last_of_each = {}
    for m in protocol.METHODS:
        last_of_each[m.service] = m.full_name
    names = list(reversed(last_of_each.values()))  # the last service first: loads everything before it
    out = subprocess.run(
        [sys.executable, "-c",
         "import json, sys\nfrom nbray.protocol import method, service_methods\n"
         f"ids = {{n: method(n).id for n in {names!r}}}\n"
         "ids.update({m.full_name: m.id for m in service_methods('GcsService')})\n"
         "print(json.dumps(ids))\n"],
        capture_output=True, text=True, timeout=100, check=True)
    got = json.loads(out.stdout)
    assert got == {name: expected[name] for name in got}
    assert len(got) > len(names)


def test_one_service_alone_is_loaded_for_its_methods():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom nbray.protocol import method\n"
         "print(method('GcsService.GetClusterStatus').id, 'nbray.protocol.raylet_pb2' in sys.modules)\n"],
        capture_output=True, text=True, timeout=100, check=True)
    assert out.stdout.split() == [str(protocol.method("GcsService.GetClusterStatus").id), "False"]


def test_an_unknown_service_or_method_is_a_key_error():
    with pytest.raises(KeyError, match="no nbray service named 'NoService'"):
        protocol.method("NoService.Call")
    with pytest.raises(KeyError):
        protocol.method("GcsService.NoSuchCall")
    with pytest.raises(AttributeError):
        protocol.no_such_name  # noqa: B018
