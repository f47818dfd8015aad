"""``python -m nbray.scripts.scale_nodes --raylets 64``: many raylets on
this machine in one cluster (nbray/testing/scale.py), with the figures a
large cluster depends on, printed as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nbray.testing.scale import MIB, HealthCheck, ManyNodes, death_detection_bound_s


def measure(nodes: ManyNodes) -> dict[str, Any]:
    """Every figure of a started, connected ManyNodes (kills two nodes)."""
    out: dict[str, Any] = {"raylets": nodes.raylets}
    cold_s, ran = nodes.run_task_on_every_node()
    misplaced = [t.hex()[:8] for t, r in ran.items() if t != r]
    if misplaced:
        raise AssertionError(f"tasks pinned to nodes {misplaced} ran elsewhere")
    warm_s, _ = nodes.run_task_on_every_node()
    out["pinned task on every node, first round (s)"] = cold_s
    out["pinned task on every node, again (s)"] = warm_s
    out["pinned task, per node, again (ms)"] = warm_s / len(ran) * 1000
    out["status request, median (ms)"] = nodes.status_latency_s() * 1000
    command_s, bare_s = nodes.status_command_s()
    out["nbray status command, median of 3 (s)"] = command_s
    out["bare interpreter start, median of 3 (s)"] = bare_s
    idle = nodes.idle_cpu_share()
    out["idle cluster CPU (share of one core)"] = sum(idle.values())
    for kind, share in idle.items():
        out[f"idle CPU, {kind} (share of one core)"] = share
    memory = nodes.memory_per_node()
    for name, m in (("raylet", memory.raylet), ("worker factory", memory.worker_factory),
                    ("workers", memory.workers)):
        out[f"memory per node, {name}: PSS (MiB)"] = m.pss / MIB
        out[f"memory per node, {name}: private (MiB)"] = m.uss / MIB
    out["workers per node"] = memory.workers_per_node
    out["death bound (s)"] = death_detection_bound_s(nodes.health_check)
    out["killed raylet declared dead after (s)"] = nodes.kill_one()
    out["hung raylet declared dead after (s)"] = nodes.hang_one()
    out["status request with two nodes dead, median (ms)"] = nodes.status_latency_s() * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.scale_nodes", description=__doc__)
    parser.add_argument("--raylets", type=int, default=64, help="nodes, the head's included")
    parser.add_argument("--cpus-per-raylet", type=float, default=1)
    parser.add_argument("--store-mib", type=int, default=64)
    parser.add_argument("--join-timeout-s", type=float, default=60)
    parser.add_argument("--health-check-period-ms", type=int, default=HealthCheck.period_ms)
    parser.add_argument("--health-check-timeout-ms", type=int, default=HealthCheck.timeout_ms)
    parser.add_argument("--health-check-failure-threshold", type=int, default=HealthCheck.failure_threshold)
    args = parser.parse_args(argv)
    check = HealthCheck(args.health_check_period_ms, args.health_check_timeout_ms,
                        args.health_check_failure_threshold)
    with ManyNodes(args.raylets, cpus_per_raylet=args.cpus_per_raylet, store_bytes=args.store_mib * MIB,
                   health_check=check) as nodes:
        join_s = nodes.start(timeout_s=args.join_timeout_s)
        nodes.connect()
        figures = {"all joined (s)": join_s, **measure(nodes)}
    json.dump(figures, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
