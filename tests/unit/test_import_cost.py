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
import tempfile

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


@pytest.mark.parametrize("module", ["nbray.gcs.supervisor", "nbray.raylet.main"])
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


def test_nbray_util_binds_its_names_on_first_use():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, nbray.util as u\n"
         "print(sorted(m for m in sys.modules if m.startswith('nbray.util')))\n"
         "import nbray.util.placement_group\n"  # a submodule of the same name as a function
         "assert callable(u.placement_group), u.placement_group\n"
         "from nbray.util import ActorPool, placement_group, remove_placement_group, state\n"
         "from nbray.util.actor_pool import ActorPool as A\n"
         "from nbray.util import placement_group as pgm\n"
         "import nbray.util.state as st\n"
         "assert ActorPool is A and u.ActorPool is A and state is st and u.state is st\n"
         "assert u.placement_group is placement_group and u.remove_placement_group is remove_placement_group\n"
         "assert u.get_current_placement_group and u.get_placement_group and u.placement_group_table\n"
         "assert u.accelerators.INTEL_GAUDI and u.scheduling_strategies.NodeAffinitySchedulingStrategy\n"
         "assert callable(u.list_named_actors) and callable(u.get_node_ip_address)\n"
         "assert set(u.__all__) | {'accelerators', 'state'} <= set(dir(u))\n"
         "try:\n"
         "    u.no_such_name\n"
         "except AttributeError as exc:\n"
         "    print('refused', exc)\n"],
        capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    first, refused = out.stdout.splitlines()
    # the package and its light placement-group helpers: no state API or ActorPool
    assert first == "['nbray.util', 'nbray.util.placement_group']"
    assert refused == "refused module 'nbray.util' has no attribute 'no_such_name'"


# What workers need for plain tasks, and never before: the state API, placement
# groups and ActorPool, the progress-bar drawing, runtime_env packaging, asyncio.
WORKER_NEVER = NEVER | {"asyncio", "zipfile", "nbray.util.state", "nbray.util.actor_pool",
                        "nbray.experimental.bar_display",
                        "nbray.experimental.bar_state", "nbray.runtime_env.packaging",
                        "nbray.runtime_env.resolve"}


def test_the_worker_factory_preloads_no_module_a_plain_task_does_not_use():
    loaded = _modules_after("from nbray.raylet import zygote\nzygote.preload()\nimport nbray.worker.executor")
    assert {"nbray.worker.core_worker", "nbray.util.metrics", "cloudpickle"} <= loaded
    assert not loaded & WORKER_NEVER, sorted(loaded & WORKER_NEVER)


def test_the_raylet_imports_no_packaging_or_pip_code_and_the_gcs_no_uuid_or_subprocess():
    unneeded = {"zipfile", "shutil", "tempfile", "subprocess", "nbray.runtime_env.packaging",
                "nbray.runtime_env.pip_env", "nbray.runtime_env.resolve", "asyncio"}
    loaded = _modules_after("import nbray.raylet.zygote_process\nimport nbray.raylet.main")
    assert not loaded & (NEVER | unneeded), sorted(loaded & (NEVER | unneeded))
    loaded = _modules_after("import nbray.gcs.supervisor")
    gcs_unneeded = {"uuid", "zipfile", "asyncio", "subprocess"}
    assert not loaded & (NEVER | gcs_unneeded), sorted(loaded & (NEVER | gcs_unneeded))


def test_the_raylet_starts_its_worker_factory_with_os_and_sys_alone():
    # ``python -m nbray.raylet`` runs this before anything else: typing, argparse,
    # socket, subprocess and json all wait until the factory runs. A short session
    # path, as nbray makes them (a deep one needs a hashed socket directory).
    with tempfile.TemporaryDirectory(prefix="nbray-") as session_dir:
        for sub in ("logs", "sockets"):
            os.mkdir(os.path.join(session_dir, sub))
        _check_the_early_start(session_dir)


def _check_the_early_start(session_dir: str) -> None:
    argv = ["--node-id", "ab" * 28, "--gcs-address", "127.0.0.1:1", "--session-dir", session_dir]
    def modules_after(code: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", "import sys\n" + code + "\nsys.stdout.write(' '.join(sorted(sys.modules)))\n"],
            capture_output=True, text=True, timeout=100, env=dict(os.environ, NBRAY_AUTH_TOKEN="ab" * 32))
        assert out.returncode == 0, out.stderr
        return set(out.stdout.split())  # not json: it would count

    # What the interpreter itself loads here (e.g. ``re`` for a PYTHONWARNINGS filter) is no one's choice.
    at_start = modules_after("pass")
    loaded = modules_after(
        "from nbray.raylet import zygote_process\n"
        f"zygote_process.start_early({argv!r})\n"
        "import atexit\n"
        "early = zygote_process._early\n"
        "sys.modules['started'] = sys if early is not None else None\n"
        "atexit.register(early.discard)")  # stopping it needs more modules: after the listing
    assert "started" in loaded and "nbray.node.session" in loaded
    heavy = {"typing", "argparse", "socket", "subprocess", "json", "re", "enum", "nbray.common.config"}
    assert not (loaded - at_start) & heavy, sorted((loaded - at_start) & heavy)


def test_a_driver_loads_the_progress_bar_code_with_its_first_log_batch():
    loaded = _modules_after("import nbray.worker.log_output")
    assert "nbray.experimental.bar_display" not in loaded
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom nbray.protocol import gcs_pb2\nfrom nbray.worker.log_output import print_logs\n"
         "print_logs(gcs_pb2.LogBatch(entries=[gcs_pb2.LogEntry(task_name='f', pid=7, text='hi\\n')]))\n"
         "print('nbray.experimental.bar_display' in sys.modules)\n"],
        capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["(f pid=7) hi", "True"]
