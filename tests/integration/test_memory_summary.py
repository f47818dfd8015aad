"""memory_summary() at Ray's internal path, and the `nbray memory` command."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nbray

pytestmark = pytest.mark.timeout(120)

RECORDING = {"num_cpus": 2, "_system_config": {"record_ref_creation_sites": True}}


def _line_of(report, object_ref):
    lines = [line for line in report.splitlines() if line.rstrip().endswith(object_ref.hex())]
    assert lines, f"{object_ref.hex()} missing from:\n{report}"
    return lines[0]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "memory", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.mark.parametrize("ray_start", [RECORDING], indirect=True)
def test_summary_lists_each_reference_with_owner_size_type_and_call_site(ray_start, tmp_path):
    from nbray._private.internal_api import memory_summary

    big = nbray.put(np.zeros(200_000))  # 1.6 MB, in the shared-memory store
    inner = nbray.put("inner")
    outer = nbray.put([inner])
    inner_hex = inner.hex()
    del inner  # now only held inside `outer`
    flag = tmp_path / "go"

    @nbray.remote
    def wait_for(path, value):
        import time

        while not os.path.exists(path):
            time.sleep(0.01)
        return len(value)

    @nbray.remote
    class Holder:
        def ping(self):
            return True

    holder = Holder.remote()
    nbray.get(holder.ping.remote())
    pending_arg = nbray.put(np.ones(1000))
    pending = wait_for.remote(str(flag), pending_arg)

    report = memory_summary(units="KB", line_wrap=False)
    big_line = _line_of(report, big)
    assert "LOCAL_REFERENCE" in big_line and "1600.1" in big_line  # KB, decimal
    assert f"pid {os.getpid()} (DRIVER)" in big_line  # its owner
    assert "test_memory_summary.py" in big_line and "(put object)" in big_line
    assert "USED_BY_PENDING_TASK" in _line_of(report, pending_arg)
    assert "(task call)" in _line_of(report, pending)
    assert "LOCAL_REFERENCE" in _line_of(report, outer)
    assert [line for line in report.splitlines() if inner_hex in line and "CAPTURED_IN_OBJECT" in line]
    assert "ACTOR_HANDLE" in report
    assert "--- Aggregate object store stats across all nodes ---" in report

    by_site = memory_summary(group_by="STACK_TRACE", sort_by="REFERENCE_TYPE")
    assert "--- Summary for call site: (put object) " in by_site
    flag.write_text("go")
    assert nbray.get(pending) == 1000


def test_memory_command(shared_cluster, capsys):
    from nbray.scripts import cli

    address = shared_cluster.address_info["gcs_address"]
    ref = nbray.put(np.zeros(300_000))

    out = _cli("--address", address, "--units", "MB", "--sort-by", "REFERENCE_TYPE")  # the real command
    assert out.returncode == 0, out.stderr
    assert "2.40 MB" in _line_of(out.stdout, ref)
    assert "call site" in out.stdout.lower()  # tells how to turn recording on

    assert cli.main(["memory", "--address", address, "--stats-only"]) == 0
    stats = capsys.readouterr().out
    assert "Plasma memory usage" in stats and ref.hex() not in stats

    assert cli.main(["memory", "--address", address, "--group-by", "STACK_TRACE", "--num-entries", "0"]) == 0
    per_site = capsys.readouterr().out
    assert "--- Summary for call site: disabled ---" in per_site and ref.hex() not in per_site

    with pytest.raises(SystemExit) as bad:
        cli.main(["memory", "--address", address, "--group-by", "OWNER"])
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err
