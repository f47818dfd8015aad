"""The %%remote round-trip benchmark runs end to end (nbray microbenchmark calls it)."""

from __future__ import annotations

import pytest

from nbray.jupyter.bench import measure_remote_cell_roundtrip

pytestmark = [pytest.mark.bench, pytest.mark.timeout(120)]


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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_tls_comparison_measures_both_sides() -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "microbenchmark", "--tls", "--quick", "--json",
                          "--only", "client: tasks sync"], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)["tls_comparison"]
    assert set(figures) == {"client: tasks sync (/s)"}
    assert figures["client: tasks sync (/s)"]["plain"] > 0 and figures["client: tasks sync (/s)"]["tls"] > 0


@pytest.mark.timeout(90)
def test_the_client_transport_comparison_measures_both_transports() -> None:
    import json
    import subprocess
    import sys

    pytest.importorskip("grpc", reason="the transport comparison needs grpcio (the dev extra)")
    out = subprocess.run([sys.executable, "-m", "nbray.scripts.cli", "microbenchmark", "--quick", "--json",
                          "--only", "client transport: actor calls sync,client transport: put"],
                         capture_output=True, text=True, timeout=80)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)["nbray"]
    assert set(figures) == {f"client transport: {case}, {transport} ({unit})"
                            for case, unit in (("actor calls sync", "/s"), ("put 100 MB", "GB/s"))
                            for transport in ("nbray framing", "gRPC")}
    assert all(value > 0 for value in figures.values()), figures
