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
