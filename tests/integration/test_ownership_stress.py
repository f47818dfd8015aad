"""Seeded randomized stress of ownership (nbray/testing/ownership_stress.py).

The slow test runs a long seeded run; a failure names its seed, and
``NBRAY_OWNERSHIP_STRESS_SEED=<seed> pytest -m slow tests/integration/test_ownership_stress.py``
replays it. The quick tests keep the driver itself honest: it must reject
wrong values, wrong errors and hangs, and cover every scenario.
"""

import pytest

from nbray.exceptions import GetTimeoutError, OwnerDiedError
from nbray.testing import ownership_stress
from nbray.testing.ownership_stress import (
    SCENARIOS,
    SEED_ENV,
    OwnershipStressFailure,
    run_ownership_stress,
    seed_from_env,
)

# Sized for about three minutes on two shared cores (about 0.13 s a round).
SLOW_ROUNDS = 1200


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ownership_stress_seeded(shared_cluster):
    seed = seed_from_env()
    print(f"ownership stress: {SEED_ENV}={seed}")  # shown with a failure, for a replay
    report = run_ownership_stress(seed, SLOW_ROUNDS, get_timeout_s=30.0, check_leaks=True)
    assert set(report.scenarios) == set(SCENARIOS), report.scenarios
    assert report.checks >= SLOW_ROUNDS


@pytest.mark.timeout(240)
def test_every_scenario_passes_once(shared_cluster):
    for i, name in enumerate(SCENARIOS):
        report = run_ownership_stress(1000 + i, 2, scenarios=[name])
        assert report.scenarios == {name: 2}
        assert report.checks >= 2


def _bare_run():
    return ownership_stress._Run(seed=42, get_timeout_s=1.0, log=None)


def test_check_rejects_a_wrong_value_and_names_the_seed():
    run = _bare_run()
    with pytest.raises(OwnershipStressFailure, match=f"(?s)seed=42.*{SEED_ENV}=42"):
        run.check("value", lambda: [1, 2], value=[1, 3])


def test_check_rejects_a_wrong_or_mislabelled_error():
    run = _bare_run()

    def owner_died():
        raise OwnerDiedError("00", "addr", message="the owner died")

    def value_error():
        raise ValueError("nope")

    assert isinstance(run.check("ok", owner_died, errors=(OwnerDiedError,)), OwnerDiedError)
    with pytest.raises(OwnershipStressFailure, match="raised ValueError"):
        run.check("wrong error", value_error, errors=(OwnerDiedError,))
    with pytest.raises(OwnershipStressFailure, match="does not say"):
        run.check("wrong text", owner_died, errors=(OwnerDiedError,), message="its creator")
    with pytest.raises(OwnershipStressFailure, match="expected OwnerDiedError"):
        run.check("no error", lambda: 5, errors=(OwnerDiedError,))


def test_check_reports_a_hang():
    def hang():
        raise GetTimeoutError("not ready")

    with pytest.raises(OwnershipStressFailure, match="hung"):
        _bare_run().check("hang", hang, value=1)


def test_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(SEED_ENV, "1234")
    assert seed_from_env() == 1234
    monkeypatch.setenv(SEED_ENV, "x")
    with pytest.raises(ValueError, match=SEED_ENV):
        seed_from_env()
    monkeypatch.delenv(SEED_ENV)
    assert seed_from_env(default=7) == 7


def test_unknown_scenario_is_refused(shared_cluster):
    with pytest.raises(ValueError, match="unknown scenarios"):
        run_ownership_stress(1, 1, scenarios=["no_such"])


def test_same_seed_draws_the_same_rounds():
    draws = []
    for _ in range(2):
        run = _bare_run()
        names = list(SCENARIOS)
        draws.append([run.rng.choices(names, [SCENARIOS[n][1] for n in names])[0] for _ in range(50)])
    assert draws[0] == draws[1]
