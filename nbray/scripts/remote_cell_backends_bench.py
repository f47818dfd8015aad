"""``python -m nbray.scripts.remote_cell_backends_bench``: the ``%%remote``
round trip on the nbray runtime and on Ray, side by side.

Runs in the benchmarking process. Each round measures both backends in turn
(``nbray.jupyter.bench``: a real kernel, execute_request -> execute_reply of
a trivial ``%%remote`` cell): the nbray runtime on a one-node
``nbray.testing.Cluster`` with a kernel of this Python, then Ray in another
interpreter (``--ray-python``, where Ray is installed: ``.venv-ray``) that
starts a one-node Ray cluster and a kernel of that Python. The medians over
the rounds of each backend's p50 and p95 are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RAY_PYTHON = ROOT / ".venv-ray" / "bin" / "python"
NUM_CPUS = 2
RAY_ROUND_TIMEOUT_S = 900

_RAY_SIDE = """
import json, sys
import ray
from nbray.jupyter.bench import measure_remote_cell_roundtrip

context = ray.init(num_cpus=int(sys.argv[3]), include_dashboard=False, log_to_driver=False)
try:
    result = measure_remote_cell_roundtrip(context.address_info["gcs_address"], samples=int(sys.argv[1]),
                                           warmup=int(sys.argv[2]), backend="ray")
finally:
    ray.shutdown()
print("RESULT", json.dumps(result))
"""


def measure_nbray(samples: int, warmup: int) -> dict[str, Any]:
    from nbray.jupyter.bench import measure_remote_cell_roundtrip
    from nbray.testing import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": NUM_CPUS})
    try:
        return measure_remote_cell_roundtrip(cluster.address, samples=samples, warmup=warmup)
    finally:
        cluster.shutdown()


def measure_ray(ray_python: str, samples: int, warmup: int) -> dict[str, Any]:
    """One round on Ray, in `ray_python`. Raises RuntimeError when it fails."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env = {k: v for k, v in env.items() if not k.startswith("NBRAY_")}
    # a throwaway local cluster: left unset, Ray turns token auth on for a new local cluster and
    # writes ~/.ray/auth_token, which every later `ray start` on this machine then demands
    env.setdefault("RAY_AUTH_MODE", "disabled")
    done = subprocess.run([ray_python, "-c", _RAY_SIDE, str(samples), str(warmup), str(NUM_CPUS)],
                          capture_output=True, text=True, env=env, timeout=RAY_ROUND_TIMEOUT_S)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT "):]))
    raise RuntimeError(f"the Ray round failed under {ray_python} (exit {done.returncode}): {done.stderr[-3000:]}")


def summarize(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over rounds of each round's p50, p95 and local-cell floor."""
    return {key: statistics.median(r[key] for r in rounds) for key in ("p50_ms", "p95_ms", "local_cell_p50_ms")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.remote_cell_backends_bench",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per backend, alternating (default 3)")
    parser.add_argument("--samples", type=int, default=30, help="timed cells per round (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed cells first (default 5)")
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON),
                        help="a Python with Ray and ipykernel (default: .venv-ray; scripts/setup_ray_env.sh)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.samples < 1 or args.warmup < 0:
        parser.error("--rounds and --samples must be at least 1, --warmup at least 0")
    if not Path(args.ray_python).exists():
        parser.error(f"{args.ray_python} does not exist: build it with scripts/setup_ray_env.sh")
    per_backend: dict[str, list[dict[str, Any]]] = {"nbray": [], "ray": []}
    for i in range(args.rounds):
        per_backend["nbray"].append(measure_nbray(args.samples, args.warmup))
        per_backend["ray"].append(measure_ray(args.ray_python, args.samples, args.warmup))
        print(f"round {i + 1}/{args.rounds}: nbray p50 {per_backend['nbray'][-1]['p50_ms']:.1f} ms, "
              f"ray p50 {per_backend['ray'][-1]['p50_ms']:.1f} ms", file=sys.stderr)
    figures = {name: summarize(rounds) for name, rounds in per_backend.items()}
    if args.json:
        print(json.dumps({"rounds": args.rounds, "samples": args.samples, "backends": figures}, indent=2))
        return 0
    print(f"%%remote round trip, medians over {args.rounds} rounds of {args.samples} cells:")
    print(f"{'backend':<8} {'p50 ms':>8} {'p95 ms':>8} {'empty local cell p50 ms':>24}")
    for name, fig in figures.items():
        print(f"{name:<8} {fig['p50_ms']:>8.1f} {fig['p95_ms']:>8.1f} {fig['local_cell_p50_ms']:>24.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
