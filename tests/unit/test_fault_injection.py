"""Parsing of the RPC fault-injection specs and the seeded decisions."""

from __future__ import annotations

import pickle

import pytest

from nbray.exceptions import ConnectionLostError
from nbray.rpc.fault_injection import (
    NO_FAULT,
    DelayRule,
    FailureRule,
    FaultSpecError,
    InjectedRpcFailure,
    build_injector,
    parse_delay_spec,
    parse_failure_spec,
    process_seed,
    rule_for,
)

pytestmark = pytest.mark.timeout(10)

METHODS = [("GcsService", "RegisterActor"), ("GcsService", "KVPut"), ("RayletService", "RequestWorkerLease"),
           ("RayletService", "ReturnWorker")]


def test_failure_spec_entries_kinds_and_wildcards() -> None:
    rules = parse_failure_spec(" GcsService.RegisterActor=0.2:req,resp ; GcsService.*=0.5:resp;*=1 ; ")
    assert rules == {
        "GcsService.RegisterActor": FailureRule(0.2, ("req", "resp")),
        "GcsService.*": FailureRule(0.5, ("resp",)),
        "*": FailureRule(1.0, ("req", "resp")),
    }
    # kinds are kept in a fixed order whatever the spec's order
    assert parse_failure_spec("A.B=0.1:resp,req")["A.B"].kinds == ("req", "resp")
    assert parse_failure_spec("") == {} and parse_failure_spec(" ; ") == {}


@pytest.mark.parametrize("spec, bad, problem", [
    ("GcsService.KVPut=0.2;GcsService.RegisterActor", "GcsService.RegisterActor", "TARGET=VALUE"),
    ("GcsService.KVPut=1.5", "GcsService.KVPut=1.5", "not in [0, 1]"),
    ("GcsService.KVPut=x", "GcsService.KVPut=x", "not a number"),
    ("GcsService.KVPut=nan", "GcsService.KVPut=nan", "finite"),
    ("GcsService.KVPut=0.1:lost", "GcsService.KVPut=0.1:lost", "unknown failure kind 'lost'"),
    ("KVPut=0.1", "KVPut=0.1", "Service.Method"),
    ("Gcs*.KVPut=0.1", "Gcs*.KVPut=0.1", "Service.Method"),
    ("A.B=0.1;A.B=0.2", "A.B=0.2", "appears twice"),
])
def test_malformed_failure_spec_names_the_entry(spec: str, bad: str, problem: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_failure_spec(spec)
    assert info.value.entry == bad and problem in str(info.value)
    assert isinstance(info.value, ValueError)


def test_delay_spec_and_its_errors() -> None:
    assert parse_delay_spec("RayletService.RequestWorkerLease=5:20;*=3") == {
        "RayletService.RequestWorkerLease": DelayRule(5, 20), "*": DelayRule(3, 3)}
    for spec, problem in [("A.B=20:5", "MIN <= MAX"), ("A.B=-1", "MIN <= MAX"), ("A.B=1:999999", "capped"),
                          ("A.B=1:x", "not a number")]:
        with pytest.raises(FaultSpecError, match=problem):
            parse_delay_spec(spec)


def test_most_specific_rule_wins() -> None:
    rules = {"*": 1, "GcsService.*": 2, "GcsService.KVPut": 3}
    assert rule_for(rules, "GcsService", "KVPut") == 3
    assert rule_for(rules, "GcsService", "RegisterActor") == 2
    assert rule_for(rules, "RayletService", "ReturnWorker") == 1
    assert rule_for({}, "GcsService", "KVPut") is None


def test_unknown_targets_are_refused() -> None:
    with pytest.raises(FaultSpecError, match="no such method"):
        build_injector("GcsService.RegisterActr=0.5", "", 0, METHODS, pid=1)
    with pytest.raises(FaultSpecError, match="no such method"):
        build_injector("", "Nope.*=1", 0, METHODS, pid=1)
    assert build_injector("", "", 0, METHODS, pid=1) is None


def test_decisions_follow_rules_and_replay_from_the_seed() -> None:
    spec = "GcsService.RegisterActor=0.3:req,resp;GcsService.KVPut=1:resp"
    inj = build_injector(spec, "RayletService.*=2:4", 7, METHODS, pid=1234)
    assert inj is not None and inj.seed == process_seed(7, 1234)
    assert inj.decide(1).drop_reply  # KVPut: every reply lost
    faults = [inj.decide(0) for _ in range(2000)]
    lost_req = sum(f.drop_request for f in faults)
    lost_resp = sum(f.drop_reply for f in faults)
    assert not any(f.drop_request and f.drop_reply for f in faults)
    assert 450 <= lost_req + lost_resp <= 750 and lost_req > 200 and lost_resp > 200
    delays = [inj.decide(2).delay_s for _ in range(200)]
    assert all(0.002 <= d <= 0.004 for d in delays) and len(set(delays)) > 100
    # a one-way message cannot lose a reply it never gets
    assert inj.decide(1, oneway=True) == NO_FAULT
    assert inj.active(3) and 0.002 <= inj.decide(3).delay_s <= 0.004
    again = build_injector(spec, "RayletService.*=2:4", 7, METHODS, pid=1234)
    assert again is not None
    again.decide(1)
    assert [again.decide(0) for _ in range(2000)] == faults
    other = build_injector(spec, "RayletService.*=2:4", 7, METHODS, pid=1235)
    assert other is not None and other.seed != inj.seed


def test_injected_failure_reads_as_a_lost_connection() -> None:
    err = InjectedRpcFailure("GcsService.KVPut to gcs: the reply was dropped (injected fault)")
    assert isinstance(err, ConnectionLostError) and err.code == "connection_lost"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InjectedRpcFailure and str(back) == str(err)
