"""Seeded loss and delay of RPCs, for testing (every nbray process).

Off unless ``testing_rpc_failure`` or ``testing_rpc_delay_ms`` is set
(``NBRAY_TESTING_RPC_FAILURE`` / ``NBRAY_TESTING_RPC_DELAY_MS``; processes a
node starts inherit the environment). The caller's side of a connection
applies the faults, so one process's spec governs the requests it sends:

``testing_rpc_failure`` — entries separated by ``;``::

    TARGET=PROB[:KINDS]

``TARGET`` is ``Service.Method``, ``Service.*`` or ``*``. ``PROB`` in [0, 1]
is the chance that a call fails. ``KINDS`` is a comma-separated subset of
``req`` (the request is dropped before it is sent: the handler never runs)
and ``resp`` (the handler runs but its reply is dropped); a failing call
picks one of them uniformly; the default is both. Either way the caller
gets ``InjectedRpcFailure`` (a ``ConnectionLostError``: "it may or may not
have taken effect") at once, which is what a dropped connection looks like,
so retry paths run without waiting for a deadline. One-way messages only
know ``req``.

``testing_rpc_delay_ms`` — entries separated by ``;``::

    TARGET=MIN[:MAX]

delays each request of the target by a uniform random number of
milliseconds in [MIN, MAX] before it is sent (requests may then overtake
each other, as on a real network with retries).

The most specific entry wins (method, then service, then ``*``). The
random stream of a process is seeded from ``testing_rpc_seed`` and the
process id, and logged, so a run can be replayed.

Example::

    NBRAY_TESTING_RPC_FAILURE="GcsService.RegisterActor=0.2:resp;GcsService.KVPut=0.2:req,resp"
    NBRAY_TESTING_RPC_DELAY_MS="RayletService.RequestWorkerLease=0:20"
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
from collections.abc import Iterable
from typing import Any

from nbray.exceptions import ConnectionLostError

logger = logging.getLogger(__name__)

ENTRY_SEPARATOR = ";"
KIND_REQUEST = "req"
KIND_REPLY = "resp"
_KINDS = (KIND_REQUEST, KIND_REPLY)
# Longest delay a spec may ask for: a typo must not stall a cluster for hours.
MAX_DELAY_MS = 60_000.0


class FaultSpecError(ValueError):
    """A fault-injection spec that cannot be parsed; names the bad entry."""

    def __init__(self, setting: str, entry: str, problem: str) -> None:
        self.setting = setting
        self.entry = entry
        self.problem = problem
        super().__init__(f"{setting}: bad entry {entry!r}: {problem}")


class InjectedRpcFailure(ConnectionLostError):
    """A request or reply dropped on purpose by the fault-injection spec."""

    def __reduce__(self) -> Any:
        return (InjectedRpcFailure, (self.message,))


@dataclasses.dataclass(frozen=True)
class FailureRule:
    probability: float
    kinds: tuple[str, ...]  # subset of ("req", "resp"), in that order


@dataclasses.dataclass(frozen=True)
class DelayRule:
    min_ms: float
    max_ms: float


def _split_entries(text: str) -> list[str]:
    return [e.strip() for e in text.split(ENTRY_SEPARATOR) if e.strip()]


def _split_target(setting: str, entry: str) -> tuple[str, str]:
    target, sep, value = entry.partition("=")
    target = target.strip()
    if not sep or not value.strip():
        raise FaultSpecError(setting, entry, "expected TARGET=VALUE")
    if target != "*":
        service, dot, name = target.partition(".")
        if not dot or not service or not name or "*" in service or ("*" in name and name != "*"):
            raise FaultSpecError(setting, entry, "the target must be Service.Method, Service.* or *")
    return target, value.strip()


def _number(setting: str, entry: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(setting, entry, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise FaultSpecError(setting, entry, f"{what} must be finite")
    return value


def parse_failure_spec(text: str, setting: str = "testing_rpc_failure") -> dict[str, FailureRule]:
    """``TARGET=PROB[:KINDS];...`` -> {target: rule}. Raises FaultSpecError."""
    rules: dict[str, FailureRule] = {}
    for entry in _split_entries(text):
        target, value = _split_target(setting, entry)
        prob_text, colon, kinds_text = value.partition(":")
        prob = _number(setting, entry, prob_text.strip(), "the probability")
        if not 0.0 <= prob <= 1.0:
            raise FaultSpecError(setting, entry, f"the probability {prob} is not in [0, 1]")
        if colon:
            kinds = [k.strip() for k in kinds_text.split(",")]
            for k in kinds:
                if k not in _KINDS:
                    raise FaultSpecError(setting, entry, f"unknown failure kind {k!r} (use req, resp)")
        else:
            kinds = list(_KINDS)
        if target in rules:
            raise FaultSpecError(setting, entry, f"{target} appears twice")
        rules[target] = FailureRule(prob, tuple(k for k in _KINDS if k in kinds))
    return rules


def parse_delay_spec(text: str, setting: str = "testing_rpc_delay_ms") -> dict[str, DelayRule]:
    """``TARGET=MIN[:MAX];...`` (milliseconds) -> {target: rule}. Raises FaultSpecError."""
    rules: dict[str, DelayRule] = {}
    for entry in _split_entries(text):
        target, value = _split_target(setting, entry)
        lo_text, colon, hi_text = value.partition(":")
        lo = _number(setting, entry, lo_text.strip(), "the minimum")
        hi = _number(setting, entry, hi_text.strip(), "the maximum") if colon else lo
        if lo < 0 or hi < lo:
            raise FaultSpecError(setting, entry, f"need 0 <= MIN <= MAX, got {lo}:{hi}")
        if hi > MAX_DELAY_MS:
            raise FaultSpecError(setting, entry, f"delays are capped at {MAX_DELAY_MS:.0f} ms")
        if target in rules:
            raise FaultSpecError(setting, entry, f"{target} appears twice")
        rules[target] = DelayRule(lo, hi)
    return rules


def rule_for(rules: dict[str, Any], service: str, name: str) -> Any:
    """The most specific rule for a method: exact, then ``Service.*``, then ``*``."""
    for key in (f"{service}.{name}", f"{service}.*", "*"):
        rule = rules.get(key)
        if rule is not None:
            return rule
    return None


def check_targets(rules: Iterable[str], methods: Iterable[tuple[str, str]], setting: str) -> None:
    """A target that names no known method or service is a typo: refuse it."""
    pairs = list(methods)
    full = {f"{s}.{n}" for s, n in pairs}
    services = {s for s, _ in pairs}
    for target in rules:
        if target == "*" or target in full:
            continue
        service, _, name = target.partition(".")
        if name == "*" and service in services:
            continue
        raise FaultSpecError(setting, target, "no such method or service")


def process_seed(base_seed: int, pid: int) -> int:
    """The seed of one process: differs per process, fixed per (seed, pid)."""
    return (base_seed & 0xFFFFFFFF) << 32 | (pid & 0xFFFFFFFF)


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do with one call. ``delay_s`` applies before sending."""

    drop_request: bool = False
    drop_reply: bool = False
    delay_s: float = 0.0


NO_FAULT = Fault()


class FaultInjector:
    """Per-method rules (indexed by method id) and the seeded random stream."""

    def __init__(self, failures: dict[str, FailureRule], delays: dict[str, DelayRule],
                 methods: list[tuple[str, str]], seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._failures: list[FailureRule | None] = [rule_for(failures, s, n) for s, n in methods]
        self._delays: list[DelayRule | None] = [rule_for(delays, s, n) for s, n in methods]

    def active(self, method_id: int) -> bool:
        return self._failures[method_id] is not None or self._delays[method_id] is not None

    def decide(self, method_id: int, oneway: bool = False) -> Fault:
        """Draw the fault of one call of `method_id`."""
        failure = self._failures[method_id]
        delay = self._delays[method_id]
        if failure is None and delay is None:
            return NO_FAULT
        rng = self._rng
        drop_request = drop_reply = False
        if failure is not None and failure.probability > 0 and rng.random() < failure.probability:
            kinds = failure.kinds if not oneway else tuple(k for k in failure.kinds if k == KIND_REQUEST)
            if kinds:
                kind = kinds[0] if len(kinds) == 1 else rng.choice(kinds)
                drop_request = kind == KIND_REQUEST
                drop_reply = kind == KIND_REPLY
        delay_s = 0.0
        if delay is not None and delay.max_ms > 0:
            delay_s = rng.uniform(delay.min_ms, delay.max_ms) / 1000
        return Fault(drop_request, drop_reply, delay_s)


def build_injector(failure_spec: str, delay_spec: str, base_seed: int, methods: list[tuple[str, str]],
                   pid: int | None = None) -> FaultInjector | None:
    """The injector for these settings, or None when both are empty.

    Raises FaultSpecError for a malformed spec or a target that names no
    method of `methods` ((service, name) pairs in method-id order)."""
    failures = parse_failure_spec(failure_spec)
    delays = parse_delay_spec(delay_spec)
    if not failures and not delays:
        return None
    check_targets(failures, methods, "testing_rpc_failure")
    check_targets(delays, methods, "testing_rpc_delay_ms")
    seed = process_seed(base_seed, os.getpid() if pid is None else pid)
    return FaultInjector(failures, delays, methods, seed)


_cache_key: tuple[str, str, int, int] | None = None
_cached: FaultInjector | None = None


def injector_for(config: Any) -> FaultInjector | None:
    """This process's injector for `config` (a ``Config``), built once per
    distinct setting and process; None when injection is off (the default)."""
    global _cache_key, _cached
    failure = config.testing_rpc_failure
    delay = config.testing_rpc_delay_ms
    if not failure and not delay:
        return None
    key = (failure, delay, config.testing_rpc_seed, os.getpid())
    if key != _cache_key:
        from nbray.protocol import METHODS  # late: keeps this module's parsing free of protobuf

        injector = build_injector(failure, delay, config.testing_rpc_seed,
                                  [(m.service, m.name) for m in METHODS])
        _cached, _cache_key = injector, key
        if injector is not None:
            logger.warning("RPC fault injection is on in pid %d (seed %d, from testing_rpc_seed %d and the pid): "
                           "failures %r, delays %r", os.getpid(), injector.seed, config.testing_rpc_seed,
                           failure, delay)
    return _cached
