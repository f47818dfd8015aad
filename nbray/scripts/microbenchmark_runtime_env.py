"""``python -m nbray.scripts.microbenchmark_runtime_env``: what runtime
environments and the Jobs API cost.

Starts a one-node cluster with a dashboard on this machine and measures, for
several rounds (medians reported):

* a plain task, for reference;
* the first task with a new 10 MB working_dir (10 files of random bytes,
  new each round): pack, upload through the GCS, unpack on the node, start
  a worker in it;
* later tasks with that working_dir (the environment cached on the node),
  as the extra time over a plain task;
* the first task in a new worker with a pip environment whose venv is
  already built (the same requirement with other env_vars: a new worker,
  the cached venv);
* a job's submission until its status reads RUNNING (SDK, polling every
  10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

WORKING_DIR_FILES = 10
WORKING_DIR_FILE_BYTES = 1024 * 1024
LATER_TASKS = 20
STATUS_POLL_S = 0.01
TIMEOUT_S = 180.0


def _wheel(root: Path, name: str) -> Path:
    """A pure-Python wheel made by hand (offline)."""
    dist = f"{name}-0.1.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 1\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = root / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, text in files.items():
            zf.writestr(p, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n")
    return path


def _task_s(remote_function: Any) -> float:
    """Seconds from submitting one task to having its result."""
    import nbray

    t0 = time.perf_counter()
    nbray.get(remote_function.remote(), timeout=TIMEOUT_S)
    return time.perf_counter() - t0


def measure(rounds: int, scratch: Path) -> dict[str, list[float]]:
    import nbray
    from nbray.job_submission import JobStatus, JobSubmissionClient
    from nbray.testing import Cluster

    cluster = Cluster()
    out: dict[str, list[float]] = {k: [] for k in ("plain_task_ms", "first_task_new_10mb_working_dir_ms",
                                                   "later_task_extra_ms", "first_task_cached_pip_env_ms",
                                                   "job_submit_to_running_ms")}
    try:
        node = cluster.add_node(num_cpus=2, include_dashboard=True, dashboard_port=0)
        nbray.init(address=cluster.address)
        jobs = JobSubmissionClient(node.extra["dashboard_url"])

        @nbray.remote
        def noop() -> int:
            return 1

        nbray.get(noop.remote(), timeout=TIMEOUT_S)
        wheel = _wheel(scratch, "rtbench_pkg")
        nbray.get(noop.options(runtime_env={"pip": [str(wheel)]}).remote(), timeout=TIMEOUT_S)  # builds the venv
        for r in range(rounds):
            plain = statistics.median(_task_s(noop) for _ in range(LATER_TASKS))
            wd = scratch / f"wd{r}"
            wd.mkdir()
            for i in range(WORKING_DIR_FILES):
                (wd / f"blob{i}.bin").write_bytes(os.urandom(WORKING_DIR_FILE_BYTES))
            with_wd = noop.options(runtime_env={"working_dir": str(wd)})
            first = _task_s(with_wd)
            later = statistics.median(_task_s(with_wd) for _ in range(LATER_TASKS))
            pip_env = noop.options(runtime_env={"pip": [str(wheel)], "env_vars": {"ROUND": str(r)}})
            pip_first = _task_s(pip_env)
            gate = scratch / f"gate{r}"
            t0 = time.perf_counter()
            sid = jobs.submit_job(entrypoint=f"while [ ! -e {gate} ]; do sleep 0.05; done")
            while jobs.get_job_status(sid) != JobStatus.RUNNING:
                if time.perf_counter() - t0 > TIMEOUT_S:
                    raise TimeoutError(f"job {sid} did not start in {TIMEOUT_S} s")
                time.sleep(STATUS_POLL_S)
            job_s = time.perf_counter() - t0
            gate.touch()
            jobs.wait_until_done(sid, TIMEOUT_S)
            out["plain_task_ms"].append(plain * 1000)
            out["first_task_new_10mb_working_dir_ms"].append(first * 1000)
            out["later_task_extra_ms"].append((later - plain) * 1000)
            out["first_task_cached_pip_env_ms"].append(pip_first * 1000)
            out["job_submit_to_running_ms"].append(job_s * 1000)
    finally:
        nbray.shutdown()
        cluster.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbray.scripts.microbenchmark_runtime_env",
                                     description="costs of runtime environments and job submission")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="every round's figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="nbray-rtbench-") as scratch:
        figures = measure(args.rounds, Path(scratch))
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for name, values in figures.items():
        print(f"{name:<40} median {statistics.median(values):9.1f}   "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
