"""Benchmark: the round trip of a trivial ``%%remote`` cell through a real kernel.

Runs in the benchmarking process; starts an IPython kernel (jupyter_client),
connects it to the cluster at `address` (``HOST:PORT`` as a driver, or
``nbray://HOST:PORT`` as a client) and times execute_request ->
execute_reply of ``%%remote`` cells, next to an empty local cell as the
kernel's own floor. Called by ``nbray microbenchmark``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

REMOTE_CELL = "%%remote\n1 + 1"
LOCAL_CELL = "1 + 1"
TARGET_MS = 50.0


def _execute(kc: Any, code: str, timeout_s: float) -> tuple[float, dict[str, Any]]:
    """Seconds from sending `code` to its execute_reply; the reply content."""
    start = time.perf_counter()
    msg_id = kc.execute(code, store_history=True)
    while True:
        reply = kc.get_shell_msg(timeout=timeout_s)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - start
    while True:  # drain this cell's IOPub messages up to idle
        msg = kc.get_iopub_msg(timeout=timeout_s)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    return elapsed, reply["content"]


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(len(ms) * 0.9))],
        "p95_ms": ms[min(len(ms) - 1, int(len(ms) * 0.95))],
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def measure_remote_cell_roundtrip(address: str, *, samples: int = 30, warmup: int = 5,
                                  timeout_s: float = 60.0, kernel_name: str = "python3",
                                  backend: str = "nbray") -> dict[str, Any]:
    """Median and spread of a trivial ``%%remote`` cell's round trip, in ms.

    `backend` ``"ray"`` connects with ``%nbray init --backend ray`` (run this
    from a Python that has Ray: its kernel is that Python).

    Raises RuntimeError when the kernel cannot connect or a cell fails."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name=kernel_name, env=dict(os.environ), startup_timeout=timeout_s)
    try:
        flag = f"--backend {backend} " if backend != "nbray" else ""
        _, content = _execute(kc, f"%load_ext nbray\n%nbray init {flag}{address}", timeout_s)
        if content["status"] != "ok":
            raise RuntimeError(f"the kernel could not connect to {address}: {content.get('evalue')}")
        for _ in range(warmup):
            _execute(kc, REMOTE_CELL, timeout_s)
            _execute(kc, LOCAL_CELL, timeout_s)
        remote, local = [], []
        for _ in range(samples):
            elapsed, content = _execute(kc, REMOTE_CELL, timeout_s)
            if content["status"] != "ok":
                raise RuntimeError(f"%%remote failed: {content.get('ename')}: {content.get('evalue')}")
            remote.append(elapsed)
            local.append(_execute(kc, LOCAL_CELL, timeout_s)[0])
        result: dict[str, Any] = {"name": "remote_cell_roundtrip", "backend": backend, "address": address,
                                  "cell": REMOTE_CELL,
                                  "samples": samples, "target_ms": TARGET_MS}
        result.update(_stats(remote))
        result["local_cell_p50_ms"] = _stats(local)["p50_ms"]
        result["meets_target"] = result["p50_ms"] <= TARGET_MS
        return result
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
