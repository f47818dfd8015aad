"""The seeded chaos suite (nbray.testing.chaos): each scenario runs its
workload while processes, nodes and messages fail, then checks that no
result was lost or wrong and that the cluster settled without leaks.

The seed comes from NBRAY_CHAOS_SEED (or is fresh and printed); a failure
names it. The smoke variant (one round each) runs by default; the full
run is slow (``pytest -m slow``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nbray.testing.chaos import chaos_seed, run_scenario
from nbray.testing.chaos_scenarios import SCENARIOS

# Rounds of the slow run, sized to stay within the suite's 6-minute budget on 2 cores.
FULL_ROUNDS = {"worker_kill_retries": 8, "actor_restarts": 10, "lineage_chain": 8, "gcs_kill": 6,
               "rpc_loss_and_delay": 12, "cross_node_get": 8, "store_full_spilling": 6}


@pytest.fixture(scope="module")
def seed() -> Iterator[int]:
    yield chaos_seed()


@pytest.mark.chaos
@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_chaos_smoke(name: str, seed: int, tmp_path: os.PathLike) -> None:
    report = run_scenario(SCENARIOS[name], seed, rounds=1, scratch_dir=str(tmp_path))
    assert report.tally.checked > 0 and report.tally.lost == 0 and report.tally.wrong == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_chaos_full(name: str, seed: int, tmp_path: os.PathLike) -> None:
    report = run_scenario(SCENARIOS[name], seed, rounds=FULL_ROUNDS[name], scratch_dir=str(tmp_path))
    assert report.tally.checked > 0 and report.tally.lost == 0 and report.tally.wrong == 0
