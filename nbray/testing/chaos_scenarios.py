"""The chaos suite's scenarios (driver side): each round runs a workload with a
known fault-free answer while it injects one kind of fault, and tallies what
came back against that answer. See nbray.testing.chaos for the harness."""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from typing import Any

import nbray
from nbray.testing.chaos import FAST_DETECTION, Chaos, Scenario, gcs_child, sigkill

# Ray's default: three retries after the first attempt.
TASK_MAX_RETRIES = 3
ACTOR_MAX_RESTARTS = 2
CHAIN_DEPTH = 20
# Large enough to live in the shared-memory store (not inlined in replies).
BLOCK_INTS = 200_000
GET_TIMEOUT_S = 120.0


# ---- remote functions ----------------------------------------------------------------------------


@nbray.remote(max_retries=TASK_MAX_RETRIES)
def hold_until_released(marker_dir: str, value: int) -> int:
    """Announce this attempt (a file named by the pid), then run until released."""
    with open(os.path.join(marker_dir, str(os.getpid())), "w"):
        pass
    release = os.path.join(marker_dir, "release")
    while not os.path.exists(release):
        time.sleep(0.01)
    return value * value


class _Doubler:
    def double(self, x: int) -> tuple[int, int]:
        return 2 * x, os.getpid()


Doubler: Any = nbray.remote(max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=-1, num_cpus=0)(_Doubler)


@nbray.remote
def block(base: int) -> Any:
    import numpy as np

    return np.full(BLOCK_INTS, base, dtype=np.int64)


@nbray.remote
def link(previous: Any) -> Any:
    return previous + 1


@nbray.remote
def square(x: int) -> int:
    return x * x


@nbray.remote
def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


class _Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n


Counter: Any = nbray.remote(num_cpus=0)(_Counter)


def block_values(values: list[Any]) -> list[tuple[int, int]]:
    """(first element, sum) of each array: enough to tell a right block from a wrong one."""
    return [(int(v[0]), int(v.sum())) for v in values]


def expected_blocks(bases: list[int]) -> list[tuple[int, int]]:
    return [(b, b * BLOCK_INTS) for b in bases]


def get_or_none(chaos: Chaos, refs: Any, label: str, timeout: float = GET_TIMEOUT_S) -> Any:
    """nbray.get, or None (counted as lost by the tally) with the error noted."""
    try:
        return nbray.get(refs, timeout=timeout)
    except Exception as exc:  # any error is a lost result; the tally reports it
        chaos.note(f"{label}: {type(exc).__name__}: {exc}")
        chaos.tally.problems.append(f"{label}: {type(exc).__name__}: {str(exc)[:300]}")
        return None


# ---- workers SIGKILLed during tasks ---------------------------------------------------------------


def _pid_files(marker_dir: str) -> set[int]:
    return {int(n) for n in os.listdir(marker_dir) if n.isdigit()}


def worker_kill_round(chaos: Chaos) -> None:
    """Two tasks with max_retries=3; each attempt's worker is SIGKILLed until the
    retries run out, in an order and at moments drawn from the seed; the last
    attempt finishes. The state API must show exactly 3 FAILED + 1 FINISHED."""
    from nbray.util.state import list_tasks

    dirs = [os.path.join(chaos.scratch_dir, f"r{chaos.round_index}-t{t}") for t in range(2)]
    for d in dirs:
        os.makedirs(d)
    values = [chaos.rng.randrange(1000) for _ in dirs]
    refs = [hold_until_released.remote(d, v) for d, v in zip(dirs, values)]
    kills = [t for t in range(len(dirs)) for _ in range(TASK_MAX_RETRIES)]
    chaos.rng.shuffle(kills)
    killed: list[set[int]] = [set() for _ in dirs]
    def unkilled(t: int) -> set[int]:
        return _pid_files(dirs[t]) - killed[t]

    for t in kills:
        fresh = chaos.wait(functools.partial(unkilled, t), timeout=60, what=f"task {t} attempt {len(killed[t])} started")
        pid = min(fresh)
        chaos.pause(0.2)
        chaos.check(sigkill(pid), f"worker {pid} of task {t} exited before it was killed")
        chaos.note(f"SIGKILL worker {pid} of task {t}")
        killed[t].add(pid)
    for t, d in enumerate(dirs):
        chaos.wait(functools.partial(unkilled, t), timeout=60, what=f"task {t} final attempt started")
        with open(os.path.join(d, "release"), "w"):
            pass
    chaos.tally.compare("retried tasks", [v * v for v in values], get_or_none(chaos, refs, "retried tasks"))

    for t, ref in enumerate(refs):
        task_id = ref.task_id().hex()

        def attempts(task_id: str = task_id) -> list[dict[str, Any]] | None:
            rows = sorted(list_tasks(filters=[("task_id", "=", task_id)]), key=lambda r: r["attempt_number"])
            return rows if [r["state"] for r in rows][-1:] == ["FINISHED"] else None

        rows = chaos.wait(attempts, timeout=30, what=f"task {t}'s attempts recorded")
        states = [r["state"] for r in rows]
        chaos.check(states == ["FAILED"] * TASK_MAX_RETRIES + ["FINISHED"],
                    f"task {t}: expected {TASK_MAX_RETRIES} FAILED + 1 FINISHED attempts, got {states}")
        chaos.check([r["attempt_number"] for r in rows] == list(range(TASK_MAX_RETRIES + 1)),
                    f"task {t}: attempt numbers {[r['attempt_number'] for r in rows]}")
        # A killed worker's own events (which carry its pid) may die with it, so
        # only a pid that is recorded is checked: it must be one that was killed.
        failed_pids = {r["worker_pid"] for r in rows[:-1]} - {None}
        chaos.check(failed_pids <= killed[t], f"task {t}: failed attempts ran in {failed_pids}, killed {killed[t]}")


# ---- actor processes killed during calls ------------------------------------------------------------


def actor_kill_round(chaos: Chaos) -> None:
    """An actor with max_restarts=2, max_task_retries=-1 is killed twice among
    its calls: every call answers right (at-least-once), from three processes;
    a third kill uses up the restarts and the next call fails with RayActorError."""
    from nbray.exceptions import RayActorError
    from nbray.util.state import get_actor

    actor = Doubler.remote()
    calls = 30
    kill_at = set(chaos.rng.sample(range(2, calls - 2), ACTOR_MAX_RESTARTS))
    refs = []
    pid = nbray.get(actor.double.remote(-1), timeout=GET_TIMEOUT_S)[1]
    pids = {pid}
    for i in range(calls):
        refs.append(actor.double.remote(i))
        if i in kill_at:
            chaos.pause(0.05)
            sigkill(pid)
            chaos.note(f"SIGKILL actor process {pid} after call {i}")
            pid = nbray.get(actor.double.remote(-1), timeout=GET_TIMEOUT_S)[1]
            pids.add(pid)
    got = get_or_none(chaos, refs, "actor calls")
    chaos.tally.compare("actor calls", [2 * i for i in range(calls)], None if got is None else [g[0] for g in got])
    chaos.check(len(pids) == ACTOR_MAX_RESTARTS + 1, f"calls were served by {len(pids)} processes: {sorted(pids)}")
    row = chaos.wait(lambda: get_actor(actor._actor_id.hex()), timeout=10, what="the actor listed")
    chaos.check(row["num_restarts"] == ACTOR_MAX_RESTARTS, f"num_restarts {row['num_restarts']}")
    # The restarts are used up: one more death is final.
    sigkill(pid)
    try:
        nbray.get(actor.double.remote(0), timeout=GET_TIMEOUT_S)
    except RayActorError:
        pass
    else:
        raise chaos.fail("a call after the restarts were used up succeeded")


# ---- raylet holding the only copy killed: lineage through a chain --------------------------------


def lineage_chain_round(chaos: Chaos) -> None:
    """A 20-deep chain of tasks whose every object lives only on one node; that
    node's raylet is SIGKILLed and the last object rebuilt through the chain."""
    base = chaos.rng.randrange(1000)
    ref = block.options(resources={"holder": 0.01}).remote(base)
    for _ in range(CHAIN_DEPTH):
        ref = link.options(resources={"holder": 0.01}).remote(ref)  # drops the previous ref: lineage only
    ready, _ = nbray.wait([ref], timeout=GET_TIMEOUT_S, fetch_local=False)
    chaos.check(ready, "the chain did not finish before the fault")
    holder = next(n for n in chaos.cluster.worker_nodes if n.resources.get("holder"))
    chaos.cluster.add_node(num_cpus=1, resources={"holder": 1})
    chaos.pause(0.2)
    chaos.cluster.kill_raylet(holder)
    chaos.note(f"SIGKILL raylet of {holder.node_id.hex()[:8]}")
    got = get_or_none(chaos, ref, "chain end")
    chaos.tally.compare("chain end", expected_blocks([base + CHAIN_DEPTH]),
                        None if got is None else block_values([got]))


# ---- GCS killed during actor creation, placement-group creation and a job ------------------------


def _kill_gcs(chaos: Chaos, during: str) -> None:
    old = gcs_child(chaos.cluster)
    chaos.pause(0.1)
    sigkill(old)
    chaos.note(f"SIGKILL GCS {old} during {during}")

    def restarted() -> bool:
        try:
            return gcs_child(chaos.cluster) != old
        except RuntimeError:  # between the death and the new one
            return False

    chaos.wait(restarted, timeout=30, what="the supervisor restarted the GCS")


def gcs_kill_round(chaos: Chaos) -> None:
    from nbray.util.placement_group import placement_group, remove_placement_group

    start = chaos.rng.randrange(100)
    actor = Counter.remote(start)
    _kill_gcs(chaos, "actor creation")
    chaos.tally.compare("actor created across a GCS restart", [start + 1],
                        get_or_none(chaos, [actor.add.remote(1)], "actor call"))

    group = placement_group([{"CPU": 1}])
    _kill_gcs(chaos, "placement-group creation")
    chaos.check(group.wait(60), "the placement group was not created after the GCS restart")
    chaos.tally.compare("task in the group", [49],
                        get_or_none(chaos, [square.options(placement_group=group).remote(7)], "group task"))
    remove_placement_group(group)

    xs = [chaos.rng.randrange(1000) for _ in range(40)]
    refs = [slow_square.remote(x) for x in xs]
    _kill_gcs(chaos, "a job's tasks")
    chaos.tally.compare("job tasks", [x * x for x in xs], get_or_none(chaos, refs, "job tasks"))
    nbray.kill(actor)


# ---- RPC loss and delay ----------------------------------------------------------------------------

# Requests the GCS client resends after a loss (nbray/gcs/client.py), by class.
LOSSY_GCS_METHODS = {
    "reads": ("GetAllNodeInfo", "GetActorInfo", "GetNamedActor", "GetAllActorInfo", "KVGet", "KVKeys",
              "GetPlacementGroup", "WaitPlacementGroupReady", "GetAllPlacementGroup"),
    "writes with request ids": ("KVPut", "KVDel"),
    "creations keyed by id": ("RegisterActor", "CreatePlacementGroup"),
    "no-op repeats": ("KillActor", "RemovePlacementGroup", "ReportActorOutOfScope", "MarkJobFinished"),
}
RPC_LOSS_PROBABILITY = 0.15
RPC_DELAY_MS = (0, 3)


def rpc_fault_environment(rng: random.Random) -> dict[str, str]:
    failures = ";".join(f"GcsService.{m}={RPC_LOSS_PROBABILITY}:req,resp"
                        for methods in LOSSY_GCS_METHODS.values() for m in methods)
    return {"NBRAY_TESTING_RPC_FAILURE": failures,
            "NBRAY_TESTING_RPC_DELAY_MS": f"*={RPC_DELAY_MS[0]}:{RPC_DELAY_MS[1]}",
            "NBRAY_TESTING_RPC_SEED": str(rng.randrange(1 << 31))}


def rpc_fault_round(chaos: Chaos) -> None:
    from nbray.api import core_or_init
    from nbray.common.config import get_config
    from nbray.protocol import gcs_pb2
    from nbray.rpc.fault_injection import injector_for
    from nbray.util.placement_group import placement_group, remove_placement_group

    chaos.check(injector_for(get_config()) is not None, "RPC fault injection is off in the driver")
    r = chaos.round_index
    xs = [chaos.rng.randrange(1000) for _ in range(10)]
    chaos.tally.compare("tasks", [x * x for x in xs], get_or_none(chaos, [square.remote(x) for x in xs], "tasks"))
    counters = [Counter.remote(10 * i) for i in range(3)]
    chaos.tally.compare("actors", [10 * i + 1 for i in range(3)],
                        get_or_none(chaos, [c.add.remote(1) for c in counters], "actors"))
    named = Counter.options(name=f"named-{r}").remote(100)
    chaos.tally.compare("named actor", [105],
                        get_or_none(chaos, [nbray.get_actor(f"named-{r}").add.remote(5)], "named actor"))
    gcs = core_or_init().gcs
    for i in range(10):
        gcs.call("KVPut", gcs_pb2.KVPutRequest(ns="chaos", key=b"%d-%d" % (r, i), value=b"%d" % i))
    keys = sorted(gcs.call("KVKeys", gcs_pb2.KVKeysRequest(ns="chaos", prefix=b"%d-" % r)).keys)
    chaos.tally.compare("kv keys", sorted(b"%d-%d" % (r, i) for i in range(10)), keys)
    values = [gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="chaos", key=b"%d-%d" % (r, i))).value for i in range(10)]
    chaos.tally.compare("kv values", [b"%d" % i for i in range(10)], values)
    group = placement_group([{"CPU": 1}], name=f"pg-{r}")
    chaos.check(group.wait(60), "the placement group was not created")
    chaos.tally.compare("group task", [49],
                        get_or_none(chaos, [square.options(placement_group=group).remote(7)], "group task"))
    remove_placement_group(group)
    for c in [*counters, named]:
        nbray.kill(c)


# ---- node death during a cross-node get ------------------------------------------------------------


def cross_node_get_round(chaos: Chaos) -> None:
    """Blocks made on a far node are being pulled by the driver when that node's
    raylet is SIGKILLed; the get returns every block (pulled or rebuilt)."""
    import numpy as np

    bases = [chaos.rng.randrange(1000) for _ in range(4)]
    big = 2_500_000  # 20 MB each: the pull takes a while

    refs = [make_big.options(resources={"far": 0.01}).remote(b, big) for b in bases]
    ready, _ = nbray.wait(refs, num_returns=len(refs), timeout=GET_TIMEOUT_S, fetch_local=False)
    chaos.check(len(ready) == len(refs), "the blocks were not made before the fault")
    far = next(n for n in chaos.cluster.worker_nodes if n.resources.get("far"))
    chaos.cluster.add_node(num_cpus=1, resources={"far": 1})
    result: dict[str, Any] = {}

    def pull() -> None:
        result["values"] = get_or_none(chaos, refs, "cross-node get")

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()
    chaos.pause(0.3)
    chaos.cluster.kill_raylet(far)
    chaos.note(f"SIGKILL raylet of {far.node_id.hex()[:8]} during the get")
    puller.join(GET_TIMEOUT_S + 30)
    chaos.check(not puller.is_alive(), "the get hung after the node died")
    values = result.get("values")
    chaos.tally.compare("pulled blocks", [(b, b * big) for b in bases],
                        None if values is None else [(int(v[0]), int(np.sum(v))) for v in values])


@nbray.remote
def make_big(base: int, n: int) -> Any:
    import numpy as np

    return np.full(n, base, dtype=np.int64)


# ---- store full: puts and returns spill ------------------------------------------------------------

STORE_BYTES = 64 << 20


def store_full_round(chaos: Chaos) -> None:
    """Three times the store's size in puts and task returns: objects spill and
    come back, every one with its own value."""
    from nbray.api import core_or_init
    from nbray.protocol import method, raylet_pb2

    n = 1_000_000  # 8 MB
    put_bases = [chaos.rng.randrange(1000) for _ in range(12)]
    task_bases = [chaos.rng.randrange(1000) for _ in range(12)]
    import numpy as np

    puts = [nbray.put(np.full(n, b, dtype=np.int64)) for b in put_bases]
    made = [make_big.remote(b, n) for b in task_bases]
    order = list(range(len(puts) + len(made)))
    chaos.rng.shuffle(order)
    everything = puts + made
    expected = [(b, b * n) for b in put_bases + task_bases]
    got: list[tuple[int, int]] | None = []
    for i in order:
        value = get_or_none(chaos, everything[i], f"object {i}")
        if value is None:
            got = None
            break
        assert got is not None
        got.append((int(value[0]), int(np.sum(value))))
        del value
    chaos.tally.compare("spilled objects", [expected[i] for i in order], got)
    stats = core_or_init().raylet.call_sync(method("RayletService.GetNodeStats"), raylet_pb2.GetNodeStatsRequest(), 10)
    chaos.check(stats.spilled_objects_total > 0, "nothing was spilled: the scenario did not fill the store")


# Many restarts a minute, without the supervisor's growing backoff: the
# scenario kills the GCS again and again on purpose.
GCS_RESTART_CONFIG = {**FAST_DETECTION, "gcs_reregister_grace_ms": 4_000, "gcs_reconnect_timeout_ms": 60_000,
                      "gcs_max_restarts_per_minute": 60, "gcs_restart_max_backoff_ms": 500}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("worker_kill_retries", worker_kill_round),
    Scenario("actor_restarts", actor_kill_round),
    Scenario("lineage_chain", lineage_chain_round, head_args={"num_cpus": 1},
             worker_nodes=({"num_cpus": 1, "resources": {"holder": 1}},)),
    Scenario("gcs_kill", gcs_kill_round, system_config=GCS_RESTART_CONFIG),
    Scenario("rpc_loss_and_delay", rpc_fault_round, environment=rpc_fault_environment),
    Scenario("cross_node_get", cross_node_get_round, head_args={"num_cpus": 1},
             worker_nodes=({"num_cpus": 1, "resources": {"far": 1}},)),
    Scenario("store_full_spilling", store_full_round,
             head_args={"num_cpus": 1, "object_store_memory": STORE_BYTES}),
)}

__all__ = ["SCENARIOS"]
