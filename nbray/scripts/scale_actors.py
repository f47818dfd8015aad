"""``python -m nbray.scripts.scale_actors --actors 200``: how many idle actors
one machine holds, and what each costs.

Starts a local cluster, creates idle actors (each one worker process forked
from the node's worker factory), then reads the kernel's accounting of
every process (``/proc/PID/smaps_rollup``): each actor's private memory
(USS) and proportional share (PSS), and how much the raylet, the GCS and
this driver grew for them (one connection and a table entry per actor).
From the machine's available memory it extrapolates how many would fit;
the output says which figure is measured and which extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from nbray.testing.process_memory import ZERO, ProcessMemory, children_by_parent, cpu_seconds, memory_of

MIB = 1024 * 1024


def actors_that_fit(available_bytes: int, per_actor_bytes: int, reserve_bytes: int) -> int:
    """Actors that fit in `available_bytes`, keeping `reserve_bytes` for
    everything else. Raises ValueError for a cost that is not positive."""
    if per_actor_bytes <= 0:
        raise ValueError(f"the memory per actor must be positive, not {per_actor_bytes}")
    return max(0, (available_bytes - reserve_bytes) // per_actor_bytes)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _tree_memory(root: int, skip: set[int]) -> ProcessMemory:
    tree = children_by_parent()
    total, todo = ZERO, [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        try:
            total += memory_of(pid)
        except ProcessLookupError:
            continue
        todo += tree.get(pid, [])
    return total


def measure(actors: int, batch: int, reserve_mib: int, idle_window_s: float = 5.0) -> dict[str, Any]:
    import nbray
    from nbray.api import _state

    nbray.init(num_cpus=2, object_store_memory=64 * MIB)
    try:
        node = _state.node
        assert node is not None
        raylet_pid, gcs_pid = node.pids()["raylet"], node.pids()["gcs"]
        available_before = available_memory_bytes()

        @nbray.remote
        class Idle:
            def pid(self) -> int:
                return os.getpid()

        actor_class: Any = Idle  # a remote class: .remote() is added by the decorator
        warm = actor_class.remote()  # the first actor loads the class everywhere
        skip = {nbray.get(warm.pid.remote())}
        raylet0 = _tree_memory(raylet_pid, skip)
        gcs0, driver0 = _tree_memory(gcs_pid, set()), memory_of(os.getpid())
        handles: list[Any] = []
        pids: list[int] = []
        began = time.perf_counter()
        while len(handles) < actors:
            new = [actor_class.remote() for _ in range(min(batch, actors - len(handles)))]
            pids += nbray.get([a.pid.remote() for a in new], timeout=600)
            handles += new
        create_s = time.perf_counter() - began
        cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        time.sleep(idle_window_s)  # the window is the measurement: what idle actors burn
        idle_cpu = (sum(cpu_seconds(p) for p in pids) - cpu0) / (time.monotonic() - t0)
        each = [memory_of(p) for p in pids]
        dropped = available_before - available_memory_bytes()
        skip |= set(pids)
        raylet_growth = _tree_memory(raylet_pid, skip).pss - raylet0.pss  # raylet and worker factory
        gcs_growth = _tree_memory(gcs_pid, set()).pss - gcs0.pss  # its supervisor and the server
        driver_growth = memory_of(os.getpid()).pss - driver0.pss
        uss = statistics.median(m.uss for m in each)
        pss = statistics.median(m.pss for m in each)
        overhead = (raylet_growth + gcs_growth + driver_growth) / actors
        per_actor = int(pss + max(overhead, 0))
        return {
            "actors created (measured)": actors,
            "creation rate (actors/s)": actors / create_s,
            "private memory per idle actor, USS median (MiB)": uss / MIB,
            "proportional memory per idle actor, PSS median (MiB)": pss / MIB,
            "RSS per idle actor, median (MiB)": statistics.median(m.rss for m in each) / MIB,
            "raylet and worker factory growth per actor (MiB)": raylet_growth / actors / MIB,
            "GCS growth per actor (MiB)": gcs_growth / actors / MIB,
            "driver growth per actor (MiB)": driver_growth / actors / MIB,
            "machine memory available before (GiB)": available_before / 1024 / MIB,
            "CPU of all idle actors together (share of one core)": idle_cpu,
            # Includes what the kernel holds for each process (page tables,
            # socket buffers), and whatever else the machine did meanwhile.
            "drop in MemAvailable per actor (MiB)": dropped / actors / MIB,
            "actors that would fit, from PSS and growth (extrapolated)":
                actors + actors_that_fit(available_memory_bytes(), per_actor, reserve_mib * MIB),
            "actors that would fit, from the drop in MemAvailable (extrapolated)":
                actors + actors_that_fit(available_memory_bytes(), max(dropped // actors, 1), reserve_mib * MIB),
        }
    finally:
        nbray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.scale_actors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50, help="actors created before waiting for them")
    parser.add_argument("--reserve-mib", type=int, default=2048,
                        help="memory left for everything else when extrapolating")
    args = parser.parse_args(argv)
    if args.actors < 1 or args.batch < 1:
        parser.error("--actors and --batch must be at least 1")
    json.dump(measure(args.actors, args.batch, args.reserve_mib), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
