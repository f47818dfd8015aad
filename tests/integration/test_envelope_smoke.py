"""The scale envelope (``nbray microbenchmark --envelope``), scaled down:
every case runs end to end and reports a figure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from nbray.scripts.microbenchmark_envelope import SMOKE, case_names

pytestmark = [pytest.mark.envelope, pytest.mark.timeout(150)]

LARGER_THAN_STORE = "envelope: object larger than the store, put and read back (s)"


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "nbray.scripts.microbenchmark_envelope", "--smoke"],
                         capture_output=True, text=True, timeout=140, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    return {k: float(v) for k, v in json.loads(out.stdout).items()}


def test_every_envelope_case_reports_a_figure(figures: dict[str, float]) -> None:
    assert set(figures) == set(case_names(SMOKE))
    for name, value in figures.items():
        assert math.isfinite(value) and value > 0, (name, value)
    assert figures["envelope: driver memory per pending task (B)"] < 64 * 1024


def test_an_object_larger_than_the_store_is_put_and_read_back(figures: dict[str, float]) -> None:
    # Served from a fallback file (tests/integration/test_spilling.py checks the file's life).
    assert math.isfinite(figures[LARGER_THAN_STORE]) and figures[LARGER_THAN_STORE] > 0
