"""``nbray microbenchmark --tls``: the network paths in plaintext and over TLS, side by side.

Both runs use the same two-node cluster on this machine, with objects
between raylets sent over TCP (``same_host_object_transfer_over_unix`` off)
and the tasks and actors placed on the second node, so every measured call
crosses a TCP connection: the only difference between the runs is TLS.
Certificates are made in a temporary directory and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from nbray.rpc import tls

MB = 1024 * 1024

# Cases of the comparison, and whether each is a per-call rate (else a bulk transfer).
TLS_CASES = {
    "tasks sync on the other node (/s)": "rate",
    "tasks async on the other node (/s)": "rate",
    "actor calls sync on the other node (/s)": "rate",
    "actor calls async on the other node (/s)": "rate",
    "object transfer 200 MB between nodes (GB/s)": "bulk",
    "client: tasks async (/s)": "rate",
    "client: tasks sync (/s)": "rate",
    "client: actor calls sync (/s)": "rate",
    "client: put 100 MB (GB/s)": "bulk",
    "client: get 100 MB (GB/s)": "bulk",
}
# What TLS may cost, as a fraction of the plaintext figure.
ALLOWED_COST = {"rate": 0.15, "bulk": 0.30}
_TRANSFER_ENV = "NBRAY_SAME_HOST_OBJECT_TRANSFER_OVER_UNIX"


def tls_cost(plain: float, over_tls: float) -> float:
    """The fraction of the plaintext figure (higher is better) that TLS loses."""
    if plain <= 0:
        raise ValueError(f"a plaintext figure must be positive, not {plain}")
    return 1.0 - over_tls / plain


def within_target(case: str, plain: float, over_tls: float) -> bool:
    return tls_cost(plain, over_tls) <= ALLOWED_COST[TLS_CASES[case]]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the processes started inside (restored afterwards)."""
    saved = {name: os.environ.get(name) for name in (*values, tls.USE_TLS_ENV, tls.SERVER_CERT_ENV,
                                                     tls.SERVER_KEY_ENV, tls.CA_CERT_ENV)}
    for name in saved:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cluster_cases(quick: bool) -> dict[str, float]:
    import numpy as np

    import nbray
    from nbray.scripts.microbenchmark import _timed
    from nbray.testing import Cluster
    from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    duration, trials = (0.5, 2) if quick else (2.0, 3)
    out: dict[str, float] = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 600 * MB})
    other = cluster.add_node(num_cpus=1, object_store_memory=600 * MB)
    try:
        nbray.init(address=cluster.address)
        there = NodeAffinitySchedulingStrategy(other.node_id.hex(), soft=False)

        @nbray.remote
        def noop() -> int:
            return 0

        @nbray.remote
        def make(n: int) -> Any:
            return np.ones(n, dtype=np.uint8)

        @nbray.remote
        class Actor:
            def noop(self) -> int:
                return 0

        remote_noop = noop.options(scheduling_strategy=there)
        nbray.get([remote_noop.remote() for _ in range(100)])
        out["tasks sync on the other node (/s)"] = _timed(lambda: (nbray.get(remote_noop.remote()), 1)[1],
                                                          duration, trials)

        def task_batch() -> int:
            nbray.get([remote_noop.remote() for _ in range(1000)])
            return 1000

        out["tasks async on the other node (/s)"] = _timed(task_batch, duration, trials)
        # Before the actor exists: it would keep the node's only worker slot.
        times = []
        for _ in range(2 if quick else 4):
            ref = make.options(scheduling_strategy=there).remote(200 * MB)
            nbray.wait([ref], fetch_local=False)
            start = time.perf_counter()
            value = nbray.get(ref)
            times.append(time.perf_counter() - start)
            del value, ref
        out["object transfer 200 MB between nodes (GB/s)"] = 200 * MB / min(times) / 1e9
        actor = Actor.options(scheduling_strategy=there).remote()  # type: ignore[attr-defined]
        nbray.get(actor.noop.remote())
        out["actor calls sync on the other node (/s)"] = _timed(lambda: (nbray.get(actor.noop.remote()), 1)[1],
                                                                duration, trials)

        def actor_batch() -> int:
            nbray.get([actor.noop.remote() for _ in range(1000)])
            return 1000

        out["actor calls async on the other node (/s)"] = _timed(actor_batch, duration, trials)
    finally:
        nbray.shutdown()
        cluster.shutdown()
    return out


def _run_mode(quick: bool, want: Any) -> dict[str, float]:
    results: dict[str, float] = {}
    if any(want(n) for n in TLS_CASES if not n.startswith("client:")):
        results.update(_cluster_cases(quick))
    if any(want(n) for n in TLS_CASES if n.startswith("client:")):
        from nbray.client.bench import client_cases

        results.update(client_cases(quick))
    return {k: v for k, v in results.items() if k in TLS_CASES and want(k)}


def compare(quick: bool, only: list[str] | None) -> dict[str, dict[str, float]]:
    """{case: {"plain": figure, "tls": figure}} for the cases `only` selects."""
    from nbray.rpc.tls_certs import init_directory

    def want(name: str) -> bool:
        return not only or any(o.lower() in name.lower() for o in only)

    cert_dir = tempfile.mkdtemp(prefix="nbray-bench-tls-")
    try:
        files = init_directory(os.path.join(cert_dir, "certs"))
        with _environment({_TRANSFER_ENV: "0"}):
            plain = _run_mode(quick, want)
        with _environment({_TRANSFER_ENV: "0", **files.environment()}):
            over_tls = _run_mode(quick, want)
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    return {name: {"plain": plain[name], "tls": over_tls[name]} for name in TLS_CASES
            if name in plain and name in over_tls}


def format_comparison(figures: dict[str, dict[str, float]]) -> str:
    width = max([len(k) for k in figures] + [4]) + 2
    lines = [f"{'case (TLS vs plaintext)':<{width}} {'plain':>12} {'TLS':>12} {'cost':>7}  target"]
    for name, pair in figures.items():
        cost = tls_cost(pair["plain"], pair["tls"])
        allowed = ALLOWED_COST[TLS_CASES[name]]
        verdict = "ok " if cost <= allowed else "MISS"
        lines.append(f"{name:<{width}} {pair['plain']:>12,.2f} {pair['tls']:>12,.2f} {cost:>6.0%}  "
                     f"{verdict} (<= {allowed:.0%})")
    return "\n".join(lines)
