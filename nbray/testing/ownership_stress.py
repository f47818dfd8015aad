"""Seeded randomized stress of ownership and borrowing (runs in a driver).

Each round draws one scenario from the seed and checks, for every
``get`` it makes, that the right value or the right typed error comes back
within a bound; a ``get`` that times out is a hang, which is a failure.
The scenarios pass refs nested in arguments and return values, through
borrowers that hand them on to tasks and actors, and kill owners and
borrowers (SIGKILL of their processes, or ``nbray.kill``) at chosen points:

    nested_args        driver-owned objects (inline and shared-memory,
                       refs to refs) reach tasks through chains of borrowers
    nested_returns     a task's worker owns objects it returns refs to
    owner_killed       an actor owns objects that the driver and another
                       actor borrow; the owner dies: OwnerDiedError
    borrower_killed    a borrower dies; the owner and the other borrowers
                       keep every value
    task_owner_killed  the pooled worker that owns returned objects dies
    worker_crash       a task's worker dies mid-task: WorkerCrashedError
    detached           an actor creates a detached and a child actor, then
                       dies: the detached one keeps serving, the child dies
                       with its owner (ActorDiedError naming the owner)
    racy_kill          gets race an owner's kill: the value or
                       OwnerDiedError, never a hang

At the end every ref of the run is dropped and the driver's reference
table must shrink back to where it started (nothing leaked).

    from nbray.testing.ownership_stress import run_ownership_stress
    report = run_ownership_stress(seed=1234, rounds=300)

A failure raises OwnershipStressFailure naming the seed, round and
scenario; ``NBRAY_OWNERSHIP_STRESS_SEED`` replays it in the tests.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nbray
from nbray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    OwnerDiedError,
    RayActorError,
    WorkerCrashedError,
)
from nbray.object_ref import ObjectRef

SEED_ENV = "NBRAY_OWNERSHIP_STRESS_SEED"
# Above the 100 KiB inline limit: such objects live in shared memory.
LARGE_PAYLOAD_BYTES = 150 * 1024
# Gets inside tasks and actors: bounded, so a hang there cannot outlive
# the run (the driver's own bound reports it first).
INNER_GET_TIMEOUT_S = 60.0

Payload = tuple[int, bytes]


class OwnershipStressFailure(AssertionError):
    """A get returned the wrong thing, the wrong error, or hung."""


@dataclass
class StressReport:
    seed: int
    rounds: int
    elapsed_s: float
    scenarios: Counter[str] = field(default_factory=Counter)
    checks: int = 0


# ---- remote code ------------------------------------------------------------------------------------


def payload(tag: int, large: bool) -> Payload:
    return (tag, bytes(LARGE_PAYLOAD_BYTES) if large else b"")


def resolve(obj: Any) -> list[int]:
    """Tags of every payload reachable from `obj` (refs, refs to refs,
    lists and dicts of them), fetched level by level."""
    refs: list[ObjectRef] = []
    _collect(obj, refs)
    if not refs:
        return _tags(obj)
    values = dict(zip([r.hex() for r in refs], nbray.get(refs, timeout=INNER_GET_TIMEOUT_S)))
    return _substitute(obj, values)


def _collect(obj: Any, out: list[ObjectRef]) -> None:
    if isinstance(obj, ObjectRef):
        out.append(obj)
    elif isinstance(obj, list):
        for item in obj:
            _collect(item, out)
    elif isinstance(obj, dict):
        for key in sorted(obj):
            _collect(obj[key], out)


def _substitute(obj: Any, values: dict[str, Any]) -> list[int]:
    if isinstance(obj, ObjectRef):
        return resolve(values[obj.hex()])
    if isinstance(obj, list):
        return [t for item in obj for t in _substitute(item, values)]
    if isinstance(obj, dict):
        return [t for key in sorted(obj) for t in _substitute(obj[key], values)]
    return _tags(obj)


def _tags(value: Any) -> list[int]:
    if isinstance(value, tuple):
        return [value[0]]
    if isinstance(value, list):
        return [t for item in value for t in _tags(item)]
    raise TypeError(f"not a payload: {type(value).__name__}")


@nbray.remote
def produce(tag: int, large: bool) -> Payload:
    return payload(tag, large)


@nbray.remote
def consume(refs: Any) -> list[int]:
    return resolve(refs)


@nbray.remote
def consume_top(*values: Any) -> list[int]:
    """Top-level ref arguments arrive as values."""
    return [t for v in values for t in resolve(v)]


@nbray.remote
def relay(refs: Any, depth: int) -> list[int]:
    """A borrower that hands the refs on to another borrower."""
    if depth <= 0:
        return resolve(refs)
    result: list[int] = nbray.get(relay.remote(refs, depth - 1), timeout=INNER_GET_TIMEOUT_S)
    return result


@nbray.remote
def echo(refs: Any) -> Any:
    """Return borrowed refs (the caller borrows them back)."""
    return refs


@nbray.remote
def make_owned(tags: list[int], large: list[bool], via_task: bool) -> tuple[list[ObjectRef], int]:
    """Objects owned by this task's worker, and that worker's pid."""
    refs = [produce.remote(t, lg) if via_task else nbray.put(payload(t, lg)) for t, lg in zip(tags, large)]
    return refs, os.getpid()


@nbray.remote(max_retries=0)
def crash(refs: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Holder:
    """An actor that owns, holds, reads and hands on refs."""

    def __init__(self) -> None:
        self.held: dict[str, Any] = {}
        self.owned: list[ObjectRef] = []
        self.kin: list[Any] = []

    def pid(self) -> int:
        return os.getpid()

    def own(self, tags: list[int], large: list[bool], via_task: bool, keep: bool) -> list[ObjectRef]:
        refs = [produce.remote(t, lg) if via_task else nbray.put(payload(t, lg)) for t, lg in zip(tags, large)]
        if keep:
            self.owned = refs
        return refs

    def hold(self, key: str, refs: Any) -> bool:
        self.held[key] = refs
        return True

    def read(self, key: str) -> list[int]:
        return resolve(self.held[key])

    def forward(self, other: Any, key: str, refs: Any) -> bool:
        """Hand borrowed refs on to another actor."""
        ok: bool = nbray.get(other.hold.remote(key, refs), timeout=INNER_GET_TIMEOUT_S)
        return ok

    def pass_on(self, key: str) -> list[int]:
        result: list[int] = nbray.get(consume.remote(self.held[key]), timeout=INNER_GET_TIMEOUT_S)
        return result

    def spawn(self, detached_name: str, refs: Any) -> tuple[Any, Any]:
        """A detached actor holding `refs` and a child actor, both alive."""
        detached = Holder.options(name=detached_name, lifetime="detached").remote()
        child = Holder.remote()
        nbray.get([detached.hold.remote("from_creator", refs), child.pid.remote()], timeout=INNER_GET_TIMEOUT_S)
        self.kin = [detached, child]
        return detached, child


# Typed as Any: the remote class handle gains .remote/.options at runtime.
Holder: Any = nbray.remote(max_restarts=0)(_Holder)


# ---- the driver ------------------------------------------------------------------------------------


_NO_VALUE = object()


class _Run:
    def __init__(self, seed: int, get_timeout_s: float, log: Callable[[str], None] | None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.get_timeout_s = get_timeout_s
        self.log = log
        self.round = 0
        self.scenario = ""
        self.checks = 0
        self.next_tag = 1

    # ---- helpers --------------------------------------------------------------------------------

    def fail(self, detail: str) -> None:
        raise OwnershipStressFailure(
            f"ownership stress failed: seed={self.seed} round={self.round} scenario={self.scenario}: "
            f"{detail}\nreplay: {SEED_ENV}={self.seed}")

    def check(self, label: str, fn: Callable[[], Any], value: Any = _NO_VALUE,
              errors: tuple[type[BaseException], ...] = (), message: str = "") -> Any:
        """Run `fn` (which gets with a timeout): it must return `value` or
        raise one of `errors` (whose text contains `message`)."""
        self.checks += 1
        try:
            got = fn()
        except GetTimeoutError as exc:
            self.fail(f"{label}: hung (no answer within the bound): {exc}")
        except BaseException as exc:
            if not errors or not isinstance(exc, errors):
                self.fail(f"{label}: raised {type(exc).__name__}: {exc}; expected "
                          f"{_describe(value, errors)}")
            if message and message not in str(exc):
                self.fail(f"{label}: {type(exc).__name__} does not say {message!r}: {exc}")
            return exc
        if value is _NO_VALUE:
            self.fail(f"{label}: returned {_short(got)}; expected {_describe(value, errors)}")
        if got != value:
            self.fail(f"{label}: returned {_short(got)}; expected {_short(value)}")
        return got

    def get(self, refs: Any) -> Any:
        return nbray.get(refs, timeout=self.get_timeout_s)

    def tags(self, n: int) -> list[int]:
        first = self.next_tag
        self.next_tag += n
        return list(range(first, first + n))

    def larges(self, n: int) -> list[bool]:
        return [self.rng.random() < 0.3 for _ in range(n)]

    def nest(self, refs: list[ObjectRef]) -> Any:
        """Wrap refs in a random container shape (resolve() reads any)."""
        shape = self.rng.randrange(3)
        if shape == 0:
            return list(refs)
        if shape == 1:
            return {f"k{i:03d}": r for i, r in enumerate(refs)}
        return [[r] for r in refs]

    def driver_objects(self, n: int) -> tuple[list[ObjectRef], list[int]]:
        """Objects the driver owns: puts, task returns, and refs to refs."""
        tags = self.tags(n)
        large = self.larges(n)
        refs: list[ObjectRef] = []
        for t, lg in zip(tags, large):
            how = self.rng.randrange(3)
            if how == 0:
                refs.append(nbray.put(payload(t, lg)))
            elif how == 1:
                refs.append(produce.remote(t, lg))
            else:
                refs.append(nbray.put([produce.remote(t, lg)]))  # a ref to a ref
        return refs, tags

    def kill_actor(self, handle: Any, pid: int) -> None:
        if self.rng.random() < 0.5:
            nbray.kill(handle)
        else:
            _sigkill(pid)

    def await_actor_death(self, handle: Any, label: str) -> None:
        """Calls to the actor fail once the cluster has seen it die."""
        deadline = time.monotonic() + self.get_timeout_s
        while time.monotonic() < deadline:
            try:
                self.get(handle.pid.remote())
            except RayActorError:
                return
            except GetTimeoutError:
                break
        self.fail(f"{label}: the actor was killed but calls to it still do not fail")

    # ---- scenarios ----------------------------------------------------------------------------

    def nested_args(self) -> None:
        refs, tags = self.driver_objects(self.rng.randint(1, 4))
        how = self.rng.randrange(4)
        if how == 0:
            out = consume.remote(self.nest(refs))
        elif how == 1:
            out = relay.remote(self.nest(refs), self.rng.randint(1, 2))
        elif how == 2:
            out = consume_top.remote(*refs)
        else:
            # the refs come back from a borrower, and go on to another
            out = consume.remote(echo.remote(refs))
        if self.rng.random() < 0.5:
            del refs  # only the pending task holds them now
        self.check("nested_args", lambda: self.get(out), value=tags)

    def nested_returns(self) -> None:
        n = self.rng.randint(1, 4)
        tags = self.tags(n)
        owned = make_owned.remote(tags, self.larges(n), self.rng.random() < 0.5)
        inner, _pid = self.get(owned)
        if self.rng.random() < 0.5:
            self.check("get returned refs", lambda: resolve(inner), value=tags)
        else:
            self.check("pass returned refs on", lambda: self.get(consume.remote(self.nest(inner))), value=tags)

    def owner_killed(self) -> None:
        owner = Holder.remote()
        borrower = Holder.remote() if self.rng.random() < 0.6 else None
        n = self.rng.randint(1, 3)
        tags = self.tags(n)
        refs = self.get(owner.own.remote(tags, self.larges(n), self.rng.random() < 0.5,
                                         self.rng.random() < 0.5))
        pid = self.get(owner.pid.remote())
        if borrower is not None:
            self.get(borrower.hold.remote("r", self.nest(refs)))
        self.kill_actor(owner, pid)
        self.await_actor_death(owner, "owner")
        dead = (OwnerDiedError,)
        self.check("driver gets objects of a dead owner", lambda: resolve(refs), errors=dead)
        self.check("task gets objects of a dead owner", lambda: self.get(consume.remote(self.nest(refs))),
                   errors=dead)
        if borrower is not None:
            self.check("borrower actor reads objects of a dead owner",
                       lambda: self.get(borrower.read.remote("r")), errors=dead)

    def borrower_killed(self) -> None:
        refs, tags = self.driver_objects(self.rng.randint(1, 3))
        first = Holder.remote()
        second = Holder.remote()
        nested = self.nest(refs)
        self.get(first.hold.remote("r", nested))
        # the first borrower hands the refs on to the second one
        self.get(first.forward.remote(second, "r", nested))
        pid = self.get(first.pid.remote())
        self.kill_actor(first, pid)
        if self.rng.random() < 0.5:
            del refs, nested  # the surviving borrower holds the only refs
        else:
            self.check("driver still reads its objects", lambda: resolve(refs), value=tags)
        self.await_actor_death(first, "borrower")
        self.check("surviving borrower reads", lambda: self.get(second.read.remote("r")), value=tags)
        self.check("surviving borrower passes on", lambda: self.get(second.pass_on.remote("r")), value=tags)

    def task_owner_killed(self) -> None:
        n = self.rng.randint(1, 3)
        tags = self.tags(n)
        inner, pid = self.get(make_owned.remote(tags, self.larges(n), self.rng.random() < 0.5))
        _sigkill(pid)
        if not _await_exit(pid, self.get_timeout_s):
            self.fail(f"worker {pid} did not exit after SIGKILL")
        self.check("objects of a dead task owner", lambda: resolve(inner), errors=(OwnerDiedError,))

    def worker_crash(self) -> None:
        refs, tags = self.driver_objects(self.rng.randint(1, 2))
        nested = self.nest(refs)
        self.check("worker dies mid-task", lambda: self.get(crash.remote(nested)), errors=(WorkerCrashedError,))
        # the crashed borrower does not take the owner's objects with it
        self.check("objects outlive a crashed borrower", lambda: self.get(consume.remote(nested)), value=tags)

    def detached(self) -> None:
        creator = Holder.remote()
        mine, mine_tags = self.driver_objects(self.rng.randint(1, 2))
        name = f"stress-detached-{self.seed}-{self.round}"
        detached, child = self.get(creator.spawn.remote(name, self.nest(mine)))
        theirs = self.get(creator.own.remote(self.tags(1), [False], False, True))
        self.get(creator.forward.remote(detached, "theirs", theirs))
        pid = self.get(creator.pid.remote())
        try:
            self.kill_actor(creator, pid)
            self.await_actor_death(creator, "creator")
            self.check("detached actor outlives its creator", lambda: self.get(detached.read.remote("from_creator")),
                       value=mine_tags)
            self.check("detached actor found by name", lambda: self.get(nbray.get_actor(name).pid.remote()),
                       value=self.get(detached.pid.remote()))
            self.check("detached actor reads objects of its dead creator",
                       lambda: self.get(detached.read.remote("theirs")), errors=(OwnerDiedError,))
            self.check("child actor dies with its owner", lambda: self.get(child.pid.remote()),
                       errors=(ActorDiedError,), message="owner")
        finally:
            nbray.kill(detached)

    def racy_kill(self) -> None:
        owner = Holder.remote()
        n = self.rng.randint(1, 3)
        tags = self.tags(n)
        refs = self.get(owner.own.remote(tags, self.larges(n), self.rng.random() < 0.5, True))
        pid = self.get(owner.pid.remote())
        pending = consume.remote(self.nest(refs))
        self.kill_actor(owner, pid)
        either = (OwnerDiedError,)
        self.check("task racing its owner's death", lambda: self.get(pending), value=tags, errors=either)
        self.check("driver racing the owner's death", lambda: resolve(refs), value=tags, errors=either)


SCENARIOS: dict[str, tuple[Callable[[_Run], None], int]] = {
    # name: (scenario, weight); cheap task-only rounds are drawn most often
    "nested_args": (_Run.nested_args, 30),
    "nested_returns": (_Run.nested_returns, 20),
    "owner_killed": (_Run.owner_killed, 8),
    "borrower_killed": (_Run.borrower_killed, 8),
    "task_owner_killed": (_Run.task_owner_killed, 6),
    "worker_crash": (_Run.worker_crash, 6),
    "detached": (_Run.detached, 4),
    "racy_kill": (_Run.racy_kill, 8),
}


def run_ownership_stress(seed: int, rounds: int, *, get_timeout_s: float = 30.0,
                         scenarios: list[str] | None = None,
                         log: Callable[[str], None] | None = None,
                         check_leaks: bool = True) -> StressReport:
    """Run `rounds` seeded rounds against the connected cluster.

    Raises OwnershipStressFailure (naming the seed) on a wrong result, a
    wrong error or a hang, and (with `check_leaks`) if the driver still
    holds references of the run once every ref was dropped."""
    names = scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {sorted(SCENARIOS)}")
    weights = [SCENARIOS[n][1] for n in names]
    run = _Run(seed, get_timeout_s, log)
    report = StressReport(seed, rounds, 0.0)
    baseline_ids = set(_driver_ref_table())
    baseline = len(baseline_ids)
    start = time.monotonic()
    for i in range(rounds):
        run.round = i
        run.scenario = run.rng.choices(names, weights)[0]
        if log is not None:
            log(f"round {i}: {run.scenario}")
        SCENARIOS[run.scenario][0](run)
        report.scenarios[run.scenario] += 1
    report.elapsed_s = time.monotonic() - start
    report.checks = run.checks
    run.scenario = "(end of run)"
    if check_leaks:
        _await_refs_released(run, baseline, baseline_ids)
    return report


def seed_from_env(default: int | None = None) -> int:
    """The seed to use: NBRAY_OWNERSHIP_STRESS_SEED, else `default`, else a fresh one."""
    text = os.environ.get(SEED_ENV)
    if text:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{SEED_ENV}={text!r} is not an integer seed") from None
    return default if default is not None else random.SystemRandom().randrange(1 << 32)


# ---- process and reference helpers ---------------------------------------------------------------


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _await_exit(pid: int, timeout_s: float) -> bool:
    """Wait for a process (not necessarily our child) to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(fd)


def _driver_ref_table() -> dict[bytes, Any]:
    from nbray.object_ref import _core

    core = _core[0]
    if core is None:
        raise RuntimeError("run_ownership_stress needs a connected driver: call nbray.init() first")
    with core.lock:
        return dict(core.refs.refs)


def _driver_refs() -> int:
    return len(_driver_ref_table())


def _await_refs_released(run: _Run, baseline: int, baseline_ids: set[bytes]) -> None:
    """Every ref of the run is gone: the driver's table shrinks back."""
    import gc

    from nbray.testing import wait_for_condition

    gc.collect()
    try:
        # borrowers' releases travel between processes before the table shrinks
        wait_for_condition(lambda: _driver_refs() <= baseline, timeout=run.get_timeout_s)
    except TimeoutError:
        left = [_leftover(oid, ref) for oid, ref in _driver_ref_table().items() if oid not in baseline_ids]
        run.fail(f"{len(left)} reference(s) still held by the driver after every ref was dropped: "
                 + "; ".join(left[:10]))


def _leftover(object_id: bytes, ref: Any) -> str:
    """One leftover entry, with the borrowers (worker ids) still counted."""
    borrowers = {wid.hex()[:12]: n for wid, n in (ref.borrowers or {}).items()}
    return (f"{object_id.hex()} (owned={ref.owned}, local={ref.local}, submitted={ref.submitted}, "
            f"contained={ref.contained}, lineage_pins={ref.lineage_pins}, borrowers={borrowers})")


def _describe(value: Any, errors: tuple[type[BaseException], ...]) -> str:
    parts = [] if value is _NO_VALUE else [_short(value)]
    parts += [e.__name__ for e in errors]
    return " or ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
