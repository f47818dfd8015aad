"""The %%remote round-trip benchmark runs end to end (nbray microbenchmark calls it)."""

from __future__ import annotations

import pytest

from nbray.jupyter.bench import measure_remote_cell_roundtrip

pytestmark = pytest.mark.timeout(120)


def test_measure_remote_cell_roundtrip(address: str) -> None:
    result = measure_remote_cell_roundtrip(address, samples=5, warmup=1)
    assert result["name"] == "remote_cell_roundtrip" and result["samples"] == 5
    assert 0 < result["min_ms"] <= result["p50_ms"] <= result["max_ms"]
    assert result["local_cell_p50_ms"] > 0
    assert isinstance(result["meets_target"], bool)


def test_the_microbenchmark_command_reports_every_case_it_runs() -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "microbenchmark", "--quick", "--json",
                          "--only", "put small,remote cell"], capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)["nbray"]
    assert set(figures) == {"put small (/s)", "%%remote cell round trip (ms)"}
    assert all(value > 0 for value in figures.values()), figures
