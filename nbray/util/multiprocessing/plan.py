"""How a Pool shares out work: pure decisions, no I/O (runs in the caller's process).

Pool sizing, how to start nbray when the caller has not, chunking, and
which worker actor gets each chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def init_arguments(ray_address: str | None, processes: int | None, address_in_environment: bool,
                   cluster_on_this_machine: bool) -> dict[str, Any]:
    """The ``nbray.init`` keyword arguments a Pool uses when nbray is not started.

    An explicit `ray_address` wins; then an address in the environment or a
    cluster already running on this machine (joined as it is); else a new
    local cluster sized to the pool (``num_cpus=processes``).
    """
    if ray_address is not None:
        if ray_address == "local":
            return {"address": "local", "num_cpus": processes}
        return {"address": ray_address}
    if address_in_environment or cluster_on_this_machine:
        return {}
    return {"address": "local", "num_cpus": processes}


def max_processes(cluster_cpus: float, cpus_per_process: float) -> int | None:
    """How many pool workers the cluster's CPUs hold at once (None: no limit,
    for workers that hold no CPU)."""
    if cpus_per_process <= 0:
        return None
    # the epsilon keeps 0.3 CPUs in 0.9 from counting as 2.9999 workers
    return int(cluster_cpus / cpus_per_process + 1e-9)


def check_processes(processes: int | None) -> None:
    """TypeError / ValueError unless `processes` is None or an int >= 1."""
    if processes is None:
        return
    if isinstance(processes, bool) or not isinstance(processes, int):
        raise TypeError(f"processes must be an int or None, got {processes!r}")
    if processes < 1:
        raise ValueError(f"Number of processes must be at least 1, got {processes}")


def pool_size(processes: int | None, cluster_cpus: float, cpus_per_process: float) -> int:
    """The number of worker actors for ``Pool(processes)``.

    None means as many as the cluster's CPUs hold. Raises ValueError for
    fewer than one, or for more than the cluster can place (they would wait
    forever for CPUs).
    """
    check_processes(processes)
    limit = max_processes(cluster_cpus, cpus_per_process)
    if processes is None:
        size = limit if limit is not None else int(cluster_cpus)
        if size < 1:
            raise ValueError(f"The cluster has {cluster_cpus:g} CPUs, too few for one pool worker holding "
                             f"{cpus_per_process:g}; add CPUs or pass processes=N.")
        return size
    if limit is not None and processes > limit:
        raise ValueError(
            f"Tried to start a pool with {processes} processes on a cluster with {cluster_cpus:g} CPUs "
            f"({cpus_per_process:g} per process); ask for at most {limit} processes or add CPUs.")
    return processes


def workers_for_n_jobs(n_jobs: int, cluster_cpus: float, cpus_per_process: float) -> int:
    """joblib's ``n_jobs`` as a number of pool workers the cluster can hold.

    Negative values count back from the cluster's capacity (-1: all of it,
    -2: all but one), as joblib counts from the local CPUs; larger requests
    are capped to it, since extra workers could never be placed.
    """
    limit = max_processes(cluster_cpus, cpus_per_process)
    capacity = max(limit if limit is not None else int(cluster_cpus), 1)
    if n_jobs < 0:
        return max(capacity + 1 + n_jobs, 1)
    return min(n_jobs, capacity)


def check_chunksize(chunksize: int) -> int:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int, got {chunksize!r}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize}")
    return chunksize


def default_chunksize(num_items: int, num_workers: int) -> int:
    """About four chunks per worker, as multiprocessing does: few enough to
    amortize each call's overhead, enough to even out uneven items."""
    chunksize, extra = divmod(num_items, num_workers * 4)
    if extra:
        chunksize += 1
    return max(chunksize, 1)


def chunks(items: Iterable[T], chunksize: int) -> Iterator[list[T]]:
    """Consecutive lists of `chunksize` items (the last may be shorter),
    drawn from `items` only as each chunk is asked for."""
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, chunksize))
        if not chunk:
            return
        yield chunk


class WorkerSlots:
    """Which worker gets the next chunk, and when a worker must be replaced.

    Each chunk goes to the worker with the fewest chunks outstanding (ties:
    the one after the last chosen), so a slow chunk does not hold up others
    queued behind it while another worker idles. With
    `max_chunks_per_worker`, a worker is retired once it has been given that
    many: ``assign`` says so, and the slot's count starts again for the new
    worker that takes its place.
    """

    def __init__(self, num_workers: int, max_chunks_per_worker: int | None = None) -> None:
        assert num_workers >= 1, num_workers
        assert max_chunks_per_worker is None or max_chunks_per_worker >= 1, max_chunks_per_worker
        self.outstanding = [0] * num_workers
        self.given = [0] * num_workers
        self.max_chunks_per_worker = max_chunks_per_worker
        self._last = num_workers - 1

    def assign(self) -> tuple[int, bool]:
        """(slot for the next chunk, whether its worker retires after it)."""
        n = len(self.outstanding)
        order = [(self._last + 1 + i) % n for i in range(n)]
        slot = min(order, key=lambda s: self.outstanding[s])
        self._last = slot
        self.outstanding[slot] += 1
        self.given[slot] += 1
        retire = self.max_chunks_per_worker is not None and self.given[slot] >= self.max_chunks_per_worker
        if retire:
            self.given[slot] = 0
        return slot, retire

    def finished(self, slot: int) -> None:
        """A chunk given to `slot` came back (done, failed or lost)."""
        assert self.outstanding[slot] > 0, slot
        self.outstanding[slot] -= 1

    @property
    def total_outstanding(self) -> int:
        return sum(self.outstanding)


__all__ = ["WorkerSlots", "check_chunksize", "check_processes", "chunks", "default_chunksize",
           "init_arguments", "max_processes", "pool_size", "workers_for_n_jobs"]
