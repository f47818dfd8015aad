"""Client-mode cases of ``nbray microbenchmark``: a driver outside the
cluster, over the client server on this machine's loopback."""

from __future__ import annotations

import time
from typing import Any

MB = 1024 * 1024


def client_cases(quick: bool) -> dict[str, float]:
    import numpy as np

    import nbray
    from nbray.scripts.microbenchmark import _timed
    from nbray.testing import Cluster

    out: dict[str, float] = {}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 600 * MB, "ray_client_server_port": 0})
    address = cluster.client_address
    try:
        start = time.perf_counter()
        nbray.init(address)

        @nbray.remote
        def noop() -> int:
            return 0

        nbray.get(noop.remote())
        out["client: connect to first result (s)"] = time.perf_counter() - start
        duration = 0.5 if quick else 2.0

        def async_batch() -> int:
            nbray.get([noop.remote() for _ in range(500)])
            return 500

        def sync_one() -> int:
            nbray.get(noop.remote())
            return 1

        @nbray.remote
        class Echo:
            def ping(self) -> int:
                return 0

        echo = Echo.remote()  # type: ignore[attr-defined]
        nbray.get(echo.ping.remote())

        def actor_sync_one() -> int:
            nbray.get(echo.ping.remote())
            return 1

        out["client: tasks async (/s)"] = _timed(async_batch, duration, 2)
        out["client: tasks sync (/s)"] = _timed(sync_one, duration, 2)
        out["client: actor calls sync (/s)"] = _timed(actor_sync_one, duration, 2)
        array = np.ones(100 * MB, dtype=np.uint8)
        best_put = best_get = float("inf")
        for _ in range(2 if quick else 4):
            t0 = time.perf_counter()
            ref = nbray.put(array)
            t1 = time.perf_counter()
            value: Any = nbray.get(ref)
            t2 = time.perf_counter()
            best_put, best_get = min(best_put, t1 - t0), min(best_get, t2 - t1)
            del value, ref
        out["client: put 100 MB (GB/s)"] = 100 * MB / best_put / 1e9
        out["client: get 100 MB (GB/s)"] = 100 * MB / best_get / 1e9
    finally:
        nbray.shutdown()
        cluster.shutdown()
    return out
