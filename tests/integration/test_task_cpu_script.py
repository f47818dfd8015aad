"""``python -m nbray.scripts.task_cpu`` runs and reports a rate and a CPU cost per task."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.timeout(180)]


def test_the_task_cpu_benchmark_reports_a_rate_and_cpu_per_task(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nbray.scripts.task_cpu", "--tasks", "500", "--rounds", "2"],
                         capture_output=True, text=True, timeout=150,
                         env={**os.environ, "NBRAY_TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    assert figures["tasks async (/s)"] > 0
    # every task costs the driver and its worker something: a zero means the children were not counted
    assert figures["CPU per task, all processes (us)"] > 10
