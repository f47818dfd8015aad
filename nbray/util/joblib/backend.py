"""The joblib backend: each batch of calls is one ``apply_async`` on an
nbray ``Pool`` of worker actors (runs in the process that calls Parallel).

joblib's multiprocessing backend already drives a ``multiprocessing.Pool``
this way (batching, callbacks, errors, abort); this one swaps in a Pool
whose workers live on the cluster, sized by the cluster's CPUs rather
than this machine's.
"""

from __future__ import annotations

import queue
from typing import Any

# joblib keeps these classes in a private module; they are its documented
# way to build a pool-based backend.
from joblib._parallel_backends import FallbackToBackend, MultiprocessingBackend, SequentialBackend

import nbray
from nbray.util.multiprocessing import Pool, plan
from nbray.util.multiprocessing.pool import ensure_connected


class NbrayBackend(MultiprocessingBackend):  # type: ignore[misc]
    """Runs joblib's batches on worker actors, one per job.

    ``ray_remote_args`` (e.g. ``{"num_cpus": 2}``) are the workers' actor
    options. ``n_jobs=-1`` means every CPU of the cluster; more jobs than
    the cluster's CPUs hold are capped to that; ``n_jobs=1`` runs in this
    process, as joblib does for every backend.
    """

    def __init__(self, nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                 ray_remote_args: dict[str, Any] | None = None, **backend_kwargs: Any) -> None:
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads,
                         **backend_kwargs)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs is not None and n_jobs != 0:  # joblib's own check rejects 0 below
            ensure_connected(None, None)
            cpus_per_worker = float({"num_cpus": 1, **(self.ray_remote_args or {})}.get("num_cpus") or 0)
            n_jobs = plan.workers_for_n_jobs(n_jobs, nbray.cluster_resources().get("CPU", 0.0), cpus_per_worker)
        return int(super().effective_n_jobs(n_jobs))

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: str | None = None,
                  require: str | None = None, **pool_kwargs: Any) -> int:
        # pool_kwargs are joblib's memmapping options (max_nbytes, mmap_mode,
        # temp_folder, ...): large arguments travel through nbray's object store instead.
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = Pool(n_jobs, ray_remote_args=self.ray_remote_args)
        self.parallel = parallel
        return n_jobs

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Kill the pool after a failed job (and start a new one if the
        ``Parallel`` object lives on, as in ``with Parallel() as p``)."""
        super().abort_everything(ensure_ready=ensure_ready)
        # Parallel slices its input a few batches ahead into a queue it keeps
        # across calls (joblib 1.6, every backend): batches of the aborted
        # call left there would run, and be returned, in the next call. The
        # old pool's callbacks have all run (Pool.terminate waits for them),
        # so nothing refills the queue once it is drained.
        ready_batches = getattr(self.parallel, "_ready_batches", None)
        if ready_batches is not None:
            with self.parallel._lock:
                while True:
                    try:
                        ready_batches.get_nowait()
                    except queue.Empty:
                        break


__all__ = ["NbrayBackend"]
