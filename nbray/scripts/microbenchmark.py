"""``nbray microbenchmark``: throughput and latency of nbray's hot paths.

Every case is written against the Ray API through a module parameter
(``rt``), so the same code measures nbray and, with ``--compare-ray`` when
Ray is installed, Ray on the same machine. Reference figures measured with
Ray 2.60 on these 2-core machines are printed alongside.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# Ray 2.60 measured by these same cases on a 2-core, 24 GiB machine.
RAY_REFERENCE = {
    "init to first result (s)": 5.3,
    "tasks sync (/s)": 269,
    "tasks async (/s)": 689,
    "actor calls sync (/s)": 781,
    "actor calls async (/s)": 2114,
    "put small (/s)": 1340,
    "get small (/s)": 6064,
    "put 100 MB (GB/s)": 1.97,
    "get 100 MB zero-copy (GB/s)": 600.0,
    "wait on 1k ready refs (/s)": 3804,
    "placement group create+remove (/s)": 175,
    "client: actor calls sync (/s)": 158,
    "client: put 100 MB (GB/s)": 0.05,
    "client: tasks async (/s)": 680,
}

TARGETS = {
    "init to first result (s)": ("<=", 1.0),
    "tasks sync (/s)": (">=", 3000),
    "tasks async (/s)": (">=", 20000),
    "actor calls sync (/s)": (">=", 3000),
    "actor calls async (/s)": (">=", 20000),
    "put small (/s)": (">=", 20000),
    "get small (/s)": (">=", 50000),
    "put 100 MB (GB/s)": (">=", 4.5),
    "wait on 1k ready refs (/s)": (">=", 5000),
    "object transfer 200 MB between nodes (GB/s)": (">=", 2.0),
    "placement group create+remove (/s)": (">=", 1000),
    "client: tasks async (/s)": (">=", 5000),
    "client: actor calls sync (/s)": (">=", 1000),
    "client: put 100 MB (GB/s)": (">=", 0.5),
    "%%remote cell round trip (ms)": ("<=", 50),
}

MB = 1024 * 1024

# The cases each group measures (``--only`` picks groups by these names).
CORE_CASES = ("tasks sync (/s)", "tasks async (/s)", "actor calls sync (/s)", "actor calls async (/s)",
              "put small (/s)", "get small (/s)", "put 100 MB (GB/s)", "put 100 MB first (GB/s)",
              "get 100 MB zero-copy (GB/s)", "get 100 MB (ms)", "task with a 100 MB argument (ms)",
              "wait on 1k ready refs (/s)")
MULTINODE_CASES = ("object transfer 200 MB between nodes (GB/s)", "tasks async spread over 2 nodes (/s)",
                   "placement group create+remove (/s)")
CLIENT_CASES = ("client: connect to first result (s)", "client: tasks async (/s)", "client: tasks sync (/s)",
                "client: actor calls sync (/s)", "client: put 100 MB (GB/s)", "client: get 100 MB (GB/s)")
REMOTE_CELL_CASE = "%%remote cell round trip (ms)"


def _timed(fn: Callable[[], int], duration_s: float, trials: int) -> float:
    """Best rate (operations per second) over `trials` runs of ~duration_s."""
    rates = []
    for _ in range(trials):
        count = 0
        start = time.perf_counter()
        while True:
            count += fn()
            elapsed = time.perf_counter() - start
            if elapsed >= duration_s:
                break
        rates.append(count / elapsed)
    return max(rates)


def core_cases(rt: Any, quick: bool) -> dict[str, float]:
    import numpy as np

    duration = 0.5 if quick else 2.0
    trials = 2 if quick else 3
    out: dict[str, float] = {}

    @rt.remote
    def noop() -> int:
        return 0

    @rt.remote
    def take(a: Any) -> int:
        return 0

    @rt.remote
    class Actor:
        def noop(self) -> int:
            return 0

    rt.get([noop.remote() for _ in range(100)])
    out["tasks sync (/s)"] = _timed(lambda: (rt.get(noop.remote()), 1)[1], duration, trials)

    def async_batch() -> int:
        rt.get([noop.remote() for _ in range(1000)])
        return 1000

    out["tasks async (/s)"] = _timed(async_batch, duration, trials)

    actor = Actor.remote()  # type: ignore[attr-defined]
    rt.get(actor.noop.remote())
    out["actor calls sync (/s)"] = _timed(lambda: (rt.get(actor.noop.remote()), 1)[1], duration, trials)

    def actor_batch() -> int:
        rt.get([actor.noop.remote() for _ in range(1000)])
        return 1000

    out["actor calls async (/s)"] = _timed(actor_batch, duration, trials)

    def put_batch() -> int:
        for _ in range(1000):
            rt.put(0)
        return 1000

    out["put small (/s)"] = _timed(put_batch, duration, trials)
    small = rt.put(0)

    def get_batch() -> int:
        for _ in range(1000):
            rt.get(small)
        return 1000

    out["get small (/s)"] = _timed(get_batch, duration, trials)

    array = np.zeros(100 * MB // 8)
    puts = []
    for _ in range(5 if not quick else 3):
        start = time.perf_counter()
        ref = rt.put(array)
        puts.append(time.perf_counter() - start)
        del ref
        time.sleep(0.05)  # let the release reach the store so the space is reused
    out["put 100 MB (GB/s)"] = array.nbytes / min(puts) / 1e9
    out["put 100 MB first (GB/s)"] = array.nbytes / puts[0] / 1e9

    ref = rt.put(array)
    gets = []
    for _ in range(5):
        start = time.perf_counter()
        value = rt.get(ref)
        gets.append(time.perf_counter() - start)
        del value
    out["get 100 MB zero-copy (GB/s)"] = array.nbytes / statistics.median(gets) / 1e9
    out["get 100 MB (ms)"] = statistics.median(gets) * 1000

    rt.get(take.remote(ref))
    start = time.perf_counter()
    for _ in range(5):
        rt.get(take.remote(ref))
    out["task with a 100 MB argument (ms)"] = (time.perf_counter() - start) / 5 * 1000
    del ref

    refs = [noop.remote() for _ in range(1000)]
    rt.get(refs)

    def wait_once() -> int:
        rt.wait(refs, num_returns=len(refs))
        return 1

    out["wait on 1k ready refs (/s)"] = _timed(wait_once, duration, trials)
    return out


def init_to_first_result(runtime: str) -> float:
    """Seconds from a fresh interpreter to the first task result (import included)."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        f"import {runtime} as rt\n"
        "rt.init(num_cpus=2)\n"
        "@rt.remote\n"
        "def f(): return 1\n"
        "rt.get(f.remote())\n"
        "print('ELAPSED', time.perf_counter() - t0)\n"
        "rt.shutdown()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    for line in result.stdout.splitlines():
        if line.startswith("ELAPSED"):
            return float(line.split()[1])
    raise RuntimeError(f"init benchmark failed: {result.stderr[-2000:]}")


def multinode_cases(quick: bool) -> dict[str, float]:
    """Two raylets on this machine: transfers, spread tasks, placement groups."""
    import numpy as np

    import nbray
    from nbray.testing import Cluster
    from nbray.util.placement_group import placement_group, remove_placement_group
    from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out: dict[str, float] = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 600 * MB})
    worker = cluster.add_node(num_cpus=1, object_store_memory=600 * MB)
    try:
        nbray.init(address=cluster.address)

        @nbray.remote
        def make(n: int) -> Any:
            return np.ones(n, dtype=np.uint8)

        @nbray.remote
        def noop() -> int:
            return 0

        there = NodeAffinitySchedulingStrategy(worker.node_id.hex(), soft=False)
        times = []
        for _ in range(2 if quick else 4):
            ref = make.options(scheduling_strategy=there).remote(200 * MB)
            nbray.wait([ref], fetch_local=False)
            start = time.perf_counter()
            value = nbray.get(ref)
            times.append(time.perf_counter() - start)
            del value, ref
        out["object transfer 200 MB between nodes (GB/s)"] = 200 * MB / min(times) / 1e9

        def spread_batch() -> int:
            nbray.get([noop.options(scheduling_strategy="SPREAD").remote() for _ in range(1000)])
            return 1000

        out["tasks async spread over 2 nodes (/s)"] = _timed(spread_batch, 0.5 if quick else 2.0, 2)

        def pg_cycle() -> int:
            pg = placement_group([{"CPU": 0.01}])
            pg.wait(10)
            remove_placement_group(pg)
            return 1

        out["placement group create+remove (/s)"] = _timed(pg_cycle, 0.5 if quick else 2.0, 2)
    finally:
        nbray.shutdown()
        cluster.shutdown()
    return out


def run_cases(rt_name: str, quick: bool, only: list[str] | None) -> dict[str, float]:
    import importlib

    results: dict[str, float] = {}
    def want(name: str) -> bool:
        return not only or any(o.lower() in name.lower() for o in only)

    if want("init to first result (s)"):  # the case's name, as --only matches by substring
        results["init to first result (s)"] = init_to_first_result(rt_name)
    rt = importlib.import_module(rt_name)
    if any(want(n) for n in CORE_CASES):
        rt.init(num_cpus=2)
        try:
            results.update({k: v for k, v in core_cases(rt, quick).items() if want(k)})
        finally:
            rt.shutdown()
    if rt_name == "nbray":
        if any(want(n) for n in MULTINODE_CASES):
            results.update({k: v for k, v in multinode_cases(quick).items() if want(k)})
        if any(want(n) for n in CLIENT_CASES):
            try:
                from nbray.client.bench import client_cases

                results.update({k: v for k, v in client_cases(quick).items() if want(k)})
            except ImportError:
                pass
        if only and any("transport" in o.lower() for o in only):
            # Only when asked for by name: it compares two transports, gRPC
            # among them, rather than measuring nbray's own paths.
            from nbray.scripts import microbenchmark_transport as transport

            try:
                results.update(transport.medians(transport.compare(quick, want)))
            except transport.GrpcMissingError as exc:
                print(exc, file=sys.stderr)
        if want(REMOTE_CELL_CASE):
            try:
                from nbray.jupyter.bench import measure_remote_cell_roundtrip

                results[REMOTE_CELL_CASE] = _remote_cell(measure_remote_cell_roundtrip)
            except ImportError:
                pass
    return results


def _remote_cell(measure: Callable[[str], dict[str, Any]]) -> float:
    from nbray.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        result = measure(cluster.address)
        return float(result["p50_ms"])
    finally:
        cluster.shutdown()


def _verdict(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    op, target = TARGETS[name]
    ok = value <= target if op == "<=" else value >= target
    return f"{'ok ' if ok else 'MISS'} ({op} {target:g})"


def ray_cases_elsewhere(python: str, quick: bool, only: list[str] | None) -> dict[str, float]:
    """Run the Ray cases in another interpreter (Ray installed apart from nbray)."""
    code = ("import json, sys\n"
            "from nbray.scripts.microbenchmark import run_cases\n"
            "print('RESULTS', json.dumps(run_cases('ray', json.loads(sys.argv[1]), json.loads(sys.argv[2]))))\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([python, "-c", code, json.dumps(quick), json.dumps(only)], capture_output=True,
                            text=True, env=env, timeout=1800)
    for line in result.stdout.splitlines():
        if line.startswith("RESULTS "):
            return {k: float(v) for k, v in json.loads(line[len("RESULTS "):]).items()}
    raise RuntimeError(f"the Ray cases failed under {python}: {result.stderr[-2000:]}")


def run(as_json: bool = False, quick: bool = False, only: str | None = None, compare_ray: bool = False,
        ray_python: str | None = None, tls: bool = False, envelope: bool = False,
        envelope_tasks: int | None = None, envelope_put_gib: float | None = None) -> int:
    """``tls``: run the network cases (tasks, actors and transfers between
    two nodes, client mode) in plaintext and over TLS, side by side, instead
    of the usual cases. ``envelope``: the single-node scale envelope instead
    (microbenchmark_envelope.py), with N queued tasks and a put of the given
    size."""
    os.environ.setdefault("NBRAY_TMPDIR", os.path.join("/tmp", f"nbray-bench-{os.getpid()}"))
    only_list = [o.strip() for o in only.split(",")] if only else None
    if envelope:
        return _run_envelope(as_json, only_list, compare_ray, ray_python, envelope_tasks, envelope_put_gib)
    if tls:
        from nbray.scripts import microbenchmark_tls

        figures = microbenchmark_tls.compare(quick, only_list)
        if as_json:
            print(json.dumps({"tls_comparison": figures}, indent=2))
        else:
            print(microbenchmark_tls.format_comparison(figures))
        return 0
    results = run_cases("nbray", quick, only_list)
    ray_results: dict[str, float] = {}
    if ray_python:
        ray_results = ray_cases_elsewhere(ray_python, quick, only_list)
    elif compare_ray:
        try:
            import ray  # noqa: F401

            ray_results = run_cases("ray", quick, only_list)
        except ImportError:
            print("Ray is not installed here (see --ray-python); showing reference figures only.",
                  file=sys.stderr)
    return _report(as_json, results, ray_results)


def _run_envelope(as_json: bool, only: list[str] | None, compare_ray: bool, ray_python: str | None,
                  tasks: int | None, put_gib: float | None) -> int:
    import dataclasses

    from nbray.scripts import microbenchmark_envelope as envelope

    sizes = envelope.Sizes()
    if tasks:
        sizes = dataclasses.replace(sizes, queued_tasks=tasks)
    if put_gib:
        sizes = dataclasses.replace(sizes, put_bytes=int(put_gib * envelope.GIB))
    results = envelope.run_envelope("nbray", sizes, envelope.wanted(only))
    ray_results: dict[str, float] = {}
    if ray_python:
        ray_results = envelope.envelope_elsewhere(ray_python, sizes, only)
    elif compare_ray:
        ray_results = envelope.run_envelope("ray", sizes, envelope.wanted(only))
    return _report(as_json, results, ray_results)


def _report(as_json: bool, results: dict[str, float], ray_results: dict[str, float]) -> int:
    if as_json:
        print(json.dumps({"nbray": results, "ray_measured": ray_results, "ray_reference": RAY_REFERENCE,
                          "targets": TARGETS}, indent=2))
        return 0
    width = max(len(k) for k in results) + 2
    print(f"{'case':<{width}} {'nbray':>12} {'Ray 2.60 (ref)':>15} {'Ray (measured)':>15}  target")
    for name, value in results.items():
        ref = RAY_REFERENCE.get(name)
        measured = ray_results.get(name)
        print(f"{name:<{width}} {value:>12,.2f} {('' if ref is None else f'{ref:,.2f}'):>15} "
              f"{('' if measured is None else f'{measured:,.2f}'):>15}  {_verdict(name, value)}")
    return 0
