"""A seeded chaos harness: run a workload on a real cluster while processes,
nodes and messages fail, and check that nothing was lost (driver side, used
by tests/integration/test_chaos_suite.py).

    from nbray.testing.chaos import chaos_seed, run_scenario
    from nbray.testing.chaos_scenarios import SCENARIOS

    seed = chaos_seed()                         # NBRAY_CHAOS_SEED or fresh, printed
    report = run_scenario(SCENARIOS["worker_kill_retries"], seed, rounds=3)

Every random choice a scenario makes (which worker dies, when) comes from
``Chaos.rng``, seeded from the run's seed and the scenario's name, so a
failure replays with ``NBRAY_CHAOS_SEED=<seed>``; every failure message
names the seed and the scenario. After the rounds the harness checks the
invariants a fault must not break: every resource is free again, no daemon
logged an unhandled traceback, and the cluster leaves no process or
/dev/shm file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nbray.testing import Cluster, LeakError, descendant_pids, shm_files, wait_for_condition

SEED_ENV = "NBRAY_CHAOS_SEED"
# Ray's chaos tests give the cluster this long to hand every lease back.
RESOURCES_SETTLE_S = 60.0
# Logs of the cluster's own daemons; workers' logs hold the user's errors.
DAEMON_LOG_PREFIXES = ("gcs", "raylet")
TRACEBACK_MARKER = "Traceback (most recent call last)"

# Failure detection shrunk so that a killed node is noticed in about a second.
FAST_DETECTION: dict[str, Any] = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
                                  "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


class ChaosFailure(AssertionError):
    """A chaos scenario lost or corrupted a result, or broke an invariant."""


def parse_seed(text: str | None) -> int | None:
    """The seed in ``NBRAY_CHAOS_SEED`` (decimal or 0x-hex); None if unset or blank.

    Raises ValueError for text that is not an integer."""
    if text is None or not text.strip():
        return None
    return int(text.strip(), 0)


def chaos_seed(environ: Mapping[str, str] | None = None) -> int:
    """The run's seed: from ``NBRAY_CHAOS_SEED`` or fresh; printed so a failure can be replayed."""
    env = os.environ if environ is None else environ
    seed = parse_seed(env.get(SEED_ENV))
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    print(f"chaos seed: {seed} (replay with {SEED_ENV}={seed})")
    return seed


def scenario_rng(seed: int, scenario: str) -> random.Random:
    """The random stream of one scenario: the same seed and name give the same choices."""
    return random.Random(f"{seed}:{scenario}")


def failure_message(seed: int, scenario: str, detail: str, round_index: int | None = None) -> str:
    where = f" round={round_index}" if round_index is not None else ""
    return f"[chaos seed={seed} scenario={scenario}{where}] {detail} (replay with {SEED_ENV}={seed})"


@dataclasses.dataclass
class Tally:
    """Results of a workload compared with its fault-free expectation."""

    checked: int = 0
    lost: int = 0
    wrong: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    def compare(self, label: str, expected: list[Any], got: list[Any] | None) -> None:
        """Count `got` against `expected`: a missing entry (or None for all) is lost, a different one wrong."""
        self.checked += len(expected)
        if got is None:
            self.lost += len(expected)
            self.problems.append(f"{label}: all {len(expected)} results lost")
            return
        missing = max(0, len(expected) - len(got))
        bad = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
        self.lost += missing
        self.wrong += len(bad) + max(0, len(got) - len(expected))
        if missing:
            self.problems.append(f"{label}: {missing} of {len(expected)} results lost")
        if bad:
            self.problems.append(f"{label}: {len(bad)} wrong, first at {bad[0]}: "
                                 f"expected {expected[bad[0]]!r}, got {got[bad[0]]!r}")
        if len(got) > len(expected):
            self.problems.append(f"{label}: {len(got) - len(expected)} results more than expected")

    def merge(self, other: Tally) -> None:
        self.checked += other.checked
        self.lost += other.lost
        self.wrong += other.wrong
        self.problems.extend(other.problems)


@dataclasses.dataclass
class Report:
    """One scenario's run, as the docs' table shows it."""

    scenario: str
    seed: int
    rounds: int
    tally: Tally
    seconds: float

    def row(self) -> str:
        return (f"| {self.scenario} | {self.rounds} | {self.tally.checked} | {self.tally.lost} | "
                f"{self.tally.wrong} | {self.seconds:.1f} s |")


class Chaos:
    """What a scenario's round works with: the cluster, its random stream, a tally."""

    def __init__(self, cluster: Cluster, seed: int, scenario: str, rng: random.Random, scratch_dir: str) -> None:
        self.cluster = cluster
        self.seed = seed
        self.scenario = scenario
        self.rng = rng
        self.scratch_dir = scratch_dir
        self.round_index = 0
        self.tally = Tally()
        self.events: list[str] = []

    def fail(self, detail: str) -> ChaosFailure:
        """The error to raise, naming the seed, scenario and round."""
        return ChaosFailure(failure_message(self.seed, self.scenario, detail, self.round_index))

    def check(self, condition: Any, detail: str) -> None:
        if not condition:
            raise self.fail(detail)

    def note(self, event: str) -> None:
        """Remember a fault injected (shown when the scenario fails)."""
        self.events.append(f"r{self.round_index}: {event}")

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_for_condition(condition, timeout=timeout, message=what)
        except TimeoutError as exc:
            raise self.fail(str(exc)) from None

    def pause(self, max_s: float) -> float:
        """A random delay in [0, max_s] drawn from the scenario's stream; sleeps it
        (the point is to land a fault at a random moment, not to wait for anything)."""
        delay = self.rng.uniform(0.0, max_s)
        time.sleep(delay)
        return delay


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A cluster shape, an environment, and a round that injects faults."""

    name: str
    run_round: Callable[[Chaos], None]
    head_args: dict[str, Any] = dataclasses.field(default_factory=lambda: {"num_cpus": 2})
    worker_nodes: tuple[dict[str, Any], ...] = ()
    system_config: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(FAST_DETECTION))
    # Environment for every process of the cluster and the driver, from the scenario's stream.
    environment: Callable[[random.Random], dict[str, str]] | None = None


# ---- processes -------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def worker_pids(cluster: Cluster) -> list[int]:
    """Worker processes: the children of each node's zygote."""
    pids = []
    for node in cluster.list_all_nodes():
        for zygote in children(node.processes["raylet"].pid):
            pids.extend(children(zygote))
    return pids


def gcs_child(cluster: Cluster) -> int:
    """The pid of the GCS the head's supervisor runs now."""
    assert cluster.head is not None, "the cluster has no head node"
    supervisor = cluster.head.processes["gcs"].pid
    found = sorted(pid for pid in descendant_pids([supervisor]) if parent_pid(pid) == supervisor)
    if len(found) != 1:
        raise RuntimeError(f"expected one GCS under supervisor {supervisor}, found {found}")
    return found[0]


def sigkill(pid: int) -> bool:
    """SIGKILL `pid`; False if it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


# ---- invariants ------------------------------------------------------------------------------------


def unsettled_resources(total: Mapping[str, float], available: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """{resource: (available, total)} for each resource not entirely free."""
    return {k: (available.get(k, 0.0), v) for k, v in total.items() if abs(available.get(k, 0.0) - v) > 1e-6}


def daemon_tracebacks(session_dir: str) -> dict[str, str]:
    """{log file: first lines of its first traceback} for GCS and raylet logs that hold one."""
    logs = os.path.join(session_dir, "logs")
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(logs))
    except OSError:
        return found
    for name in names:
        if not name.startswith(DAEMON_LOG_PREFIXES):
            continue
        try:
            with open(os.path.join(logs, name), errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        at = text.find(TRACEBACK_MARKER)
        if at >= 0:
            found[name] = text[max(0, at - 200):at + 1500]
    return found


def check_resources_settle(chaos: Chaos, timeout: float = RESOURCES_SETTLE_S) -> None:
    import nbray

    last: dict[str, tuple[float, float]] = {}

    def settled() -> bool:
        nonlocal last
        last = unsettled_resources(nbray.cluster_resources(), nbray.available_resources())
        return not last

    try:
        wait_for_condition(settled, timeout=timeout, message="resources free again")
    except TimeoutError:
        raise chaos.fail(f"resources still held {timeout:.0f} s after the workload: {last}") from None


def check_no_daemon_tracebacks(chaos: Chaos, session_dir: str) -> None:
    found = daemon_tracebacks(session_dir)
    if found:
        detail = "\n".join(f"--- {name} ---\n{text}" for name, text in found.items())
        raise chaos.fail(f"unhandled traceback in daemon logs {sorted(found)}:\n{detail}")


# ---- running ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the nodes started inside inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_scenario(scenario: Scenario, seed: int, rounds: int, scratch_dir: str) -> Report:
    """Start the scenario's cluster, run `rounds` rounds, check every invariant, tear down.

    Raises ChaosFailure (naming seed and scenario) on a lost or wrong result
    or a broken invariant; other errors are re-raised as ChaosFailure too,
    with the faults injected so far."""
    import nbray

    rng = scenario_rng(seed, scenario.name)
    env = scenario.environment(rng) if scenario.environment else {}
    shm_before = set(shm_files())
    start = time.monotonic()
    with environment(env):
        cluster = Cluster(initialize_head=True, head_node_args=dict(scenario.head_args),
                          system_config=dict(scenario.system_config))
        chaos = Chaos(cluster, seed, scenario.name, rng, scratch_dir)
        session_dir = cluster.session_dir
        try:
            for node_args in scenario.worker_nodes:
                cluster.add_node(**node_args)
            cluster.connect()
            for index in range(rounds):
                chaos.round_index = index
                scenario.run_round(chaos)
            if chaos.tally.lost or chaos.tally.wrong:
                raise chaos.fail(f"{chaos.tally.lost} lost and {chaos.tally.wrong} wrong of "
                                 f"{chaos.tally.checked} results: {chaos.tally.problems}")
            check_resources_settle(chaos)
        except ChaosFailure as exc:
            raise ChaosFailure(f"{exc}\nfaults injected: {chaos.events}") from exc
        except Exception as exc:
            raise chaos.fail(f"{type(exc).__name__}: {exc}\nfaults injected: {chaos.events}") from exc
        finally:
            nbray.shutdown()
            try:
                cluster.shutdown()
            except LeakError as exc:
                leak: LeakError | None = exc
            else:
                leak = None
    chaos.round_index = rounds
    if leak is not None:
        raise chaos.fail(f"the cluster left things behind: {leak}") from leak
    check_no_daemon_tracebacks(chaos, session_dir)
    leftover = set(shm_files()) - shm_before
    chaos.check(not leftover, f"/dev/shm files left behind: {sorted(leftover)}")
    report = Report(scenario.name, seed, rounds, chaos.tally, time.monotonic() - start)
    print(report.row())
    return report


__all__ = ["FAST_DETECTION", "SEED_ENV", "Chaos", "ChaosFailure", "Report", "Scenario", "Tally", "chaos_seed",
           "check_no_daemon_tracebacks", "check_resources_settle", "daemon_tracebacks", "environment",
           "failure_message", "gcs_child", "parse_seed", "run_scenario", "scenario_rng", "sigkill",
           "unsettled_resources", "worker_pids"]
