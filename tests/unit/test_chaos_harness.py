"""The chaos harness's pure parts: seeds, messages, tallies and log checks."""

from __future__ import annotations

import os

import pytest

from nbray.testing.chaos import (
    SEED_ENV,
    Chaos,
    ChaosFailure,
    Tally,
    chaos_seed,
    daemon_tracebacks,
    environment,
    failure_message,
    parse_seed,
    scenario_rng,
    unsettled_resources,
)
from nbray.testing.chaos_scenarios import LOSSY_GCS_METHODS, SCENARIOS, rpc_fault_environment

pytestmark = pytest.mark.timeout(10)


def test_seed_from_the_environment_or_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_seed(None) is None and parse_seed("  ") is None
    assert parse_seed("42") == 42 and parse_seed("0x10") == 16
    with pytest.raises(ValueError):
        parse_seed("forty-two")
    assert chaos_seed({SEED_ENV: "7"}) == 7
    assert "NBRAY_CHAOS_SEED=7" in capsys.readouterr().out
    fresh = chaos_seed({})
    assert f"NBRAY_CHAOS_SEED={fresh}" in capsys.readouterr().out


def test_a_scenario_draws_the_same_choices_from_the_same_seed() -> None:
    draws = [scenario_rng(5, "gcs_kill").random() for _ in range(2)]
    assert draws[0] == draws[1]
    assert scenario_rng(5, "gcs_kill").random() != scenario_rng(5, "lineage_chain").random()
    assert scenario_rng(5, "gcs_kill").random() != scenario_rng(6, "gcs_kill").random()


def test_failures_name_the_seed_and_the_scenario() -> None:
    text = failure_message(99, "cross_node_get", "2 lost", round_index=1)
    assert "seed=99" in text and "scenario=cross_node_get" in text and "round=1" in text
    assert "NBRAY_CHAOS_SEED=99" in text
    chaos = Chaos(cluster=None, seed=3, scenario="x", rng=scenario_rng(3, "x"), scratch_dir="/")  # type: ignore[arg-type]
    with pytest.raises(ChaosFailure, match=r"seed=3 scenario=x round=0\] broken"):
        chaos.check(False, "broken")
    chaos.check(True, "fine")


def test_tally_counts_lost_and_wrong_results() -> None:
    tally = Tally()
    tally.compare("ok", [1, 2, 3], [1, 2, 3])
    assert (tally.checked, tally.lost, tally.wrong, tally.problems) == (3, 0, 0, [])
    tally.compare("short", [1, 2, 3], [1])
    tally.compare("bad", [1, 2], [1, 5])
    tally.compare("gone", [1, 2], None)
    tally.compare("long", [1], [1, 1])
    assert (tally.checked, tally.lost, tally.wrong) == (11, 4, 2)
    assert any("bad: 1 wrong, first at 1: expected 2, got 5" in p for p in tally.problems)
    other = Tally(checked=1, lost=1)
    tally.merge(other)
    assert (tally.checked, tally.lost) == (12, 5)


def test_unsettled_resources_lists_what_is_still_held() -> None:
    assert unsettled_resources({"CPU": 2.0, "gpu": 1.0}, {"CPU": 2.0, "gpu": 1.0}) == {}
    assert unsettled_resources({"CPU": 2.0, "node1": 1.0}, {"CPU": 1.0}) == {"CPU": (1.0, 2.0), "node1": (0.0, 1.0)}


def test_tracebacks_are_found_only_in_daemon_logs(tmp_path: os.PathLike) -> None:
    logs = os.path.join(tmp_path, "logs")
    os.makedirs(logs)
    for name, text in {"gcs.err": "started\n", "raylet-ab.err": "ok\nTraceback (most recent call last):\n  boom\n",
                       "worker-1.err": "Traceback (most recent call last):\n user error\n"}.items():
        with open(os.path.join(logs, name), "w") as f:
            f.write(text)
    found = daemon_tracebacks(str(tmp_path))
    assert list(found) == ["raylet-ab.err"] and "boom" in found["raylet-ab.err"]
    assert daemon_tracebacks(os.path.join(tmp_path, "missing")) == {}


def test_environment_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBRAY_CHAOS_A", "old")
    monkeypatch.delenv("NBRAY_CHAOS_B", raising=False)
    with environment({"NBRAY_CHAOS_A": "new", "NBRAY_CHAOS_B": "set"}):
        assert os.environ["NBRAY_CHAOS_A"] == "new" and os.environ["NBRAY_CHAOS_B"] == "set"
    assert os.environ["NBRAY_CHAOS_A"] == "old" and "NBRAY_CHAOS_B" not in os.environ


def test_rpc_losses_target_only_methods_the_gcs_client_resends() -> None:
    from nbray.gcs.client import _RESENDABLE
    from nbray.rpc.fault_injection import parse_delay_spec, parse_failure_spec

    env = rpc_fault_environment(scenario_rng(1, "rpc_loss_and_delay"))
    rules = parse_failure_spec(env["NBRAY_TESTING_RPC_FAILURE"])
    lost = {target.split(".", 1)[1] for target in rules}
    assert lost == {m for methods in LOSSY_GCS_METHODS.values() for m in methods}
    assert lost <= _RESENDABLE
    assert "*" in parse_delay_spec(env["NBRAY_TESTING_RPC_DELAY_MS"])
    assert env == rpc_fault_environment(scenario_rng(1, "rpc_loss_and_delay"))


def test_the_suite_covers_every_fault_the_tracker_lists() -> None:
    assert set(SCENARIOS) == {"worker_kill_retries", "actor_restarts", "lineage_chain", "gcs_kill",
                              "rpc_loss_and_delay", "cross_node_get", "store_full_spilling"}
