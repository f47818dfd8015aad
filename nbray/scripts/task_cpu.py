"""``python -m nbray.scripts.task_cpu``: the rate of async tasks and their CPU cost.

Starts a local cluster (``init(num_cpus=2)``), then times rounds of N
``f.remote()`` followed by one ``get``, and reports the best rate and the
least CPU per task summed over this driver and every process it started
(GCS, raylet, worker factory, workers). CPU per task is steadier than the
rate on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time

import psutil


def _cpu_seconds(me: psutil.Process) -> float:
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            c = p.cpu_times()
        except psutil.Error:
            continue  # ended meanwhile
        total += c.user + c.system
    return total


def measure(tasks: int, rounds: int) -> dict[str, float]:
    import nbray

    nbray.init(num_cpus=2)
    try:
        @nbray.remote
        def f() -> int:
            return 1

        nbray.get([f.remote() for _ in range(2000)])  # warm: workers up, code shipped
        me = psutil.Process()
        rates, cpus = [], []
        for _ in range(rounds):
            c0, t0 = _cpu_seconds(me), time.perf_counter()
            nbray.get([f.remote() for _ in range(tasks)])
            elapsed, c1 = time.perf_counter() - t0, _cpu_seconds(me)
            rates.append(tasks / elapsed)
            cpus.append(1e6 * (c1 - c0) / tasks)
        return {"tasks async (/s)": max(rates), "CPU per task, all processes (us)": min(cpus)}
    finally:
        nbray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.task_cpu", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.tasks, args.rounds), indent=2))


if __name__ == "__main__":
    main()
