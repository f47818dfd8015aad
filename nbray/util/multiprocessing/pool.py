"""Pool: multiprocessing.Pool's interface, with worker actors on the cluster
(Ray's ray.util.multiprocessing.Pool).

The Pool object lives in the caller's process; each of its ``processes``
workers is a ``PoolActor`` holding one CPU (by default) somewhere in the
cluster. Work is cut into chunks; each chunk is one actor call, given to
the worker with the fewest chunks outstanding (``plan.WorkerSlots``).
Results come back through ``results.ResultHandler``.
"""

from __future__ import annotations

import functools
import os
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nbray
from nbray.common.config import get_config
from nbray.util.multiprocessing import plan
from nbray.util.multiprocessing.results import AsyncResult, ChunkReply, ChunkSink, IMapIterator, ResultHandler

# How a worker calls the function on each item of a chunk.
_CALL_ONE = 0  # func(item)            map, imap
_CALL_STAR = 1  # func(*item)          starmap
_CALL_APPLY = 2  # func(*args, **kwds) apply

# imap keeps this many chunks per worker in flight: one running and one
# queued behind it hides the round trip, without reading far ahead into
# an input that may be long or endless.
_IMAP_CHUNKS_IN_FLIGHT_PER_WORKER = 2

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


class PoolActor:
    """One pool worker (runs in a worker process of the cluster)."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def pid(self) -> int:
        return os.getpid()

    def run_chunk(self, func: Callable[..., Any], items: list[Any], how: int) -> ChunkReply:
        """The values of `func` on `items`, stopping at the first exception,
        which comes back as a value (with its traceback text) so the caller
        can re-raise it as the user's own exception type."""
        values: list[Any] = []
        for item in items:
            try:
                if how == _CALL_ONE:
                    values.append(func(item))
                elif how == _CALL_STAR:
                    values.append(func(*item))
                else:
                    args, kwds = item
                    values.append(func(*args, **kwds))
            except Exception as exc:
                return values, (exc, traceback.format_exc())
        return values, None


_POOL_ACTOR = nbray.remote(PoolActor)


class _Ledger:
    """Chunks outstanding per worker, shared by the Pool and its result
    thread (which must not hold the Pool alive)."""

    def __init__(self, slots: plan.WorkerSlots) -> None:
        self.slots = slots
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)

    def returned(self, slot: int) -> None:
        with self.lock:
            self.slots.finished(slot)
            if self.slots.total_outstanding == 0:
                self.idle.notify_all()

    def outstanding(self) -> int:
        with self.lock:
            return self.slots.total_outstanding


class Pool:
    """A pool of worker actors with ``multiprocessing.Pool``'s methods.

    ``processes``: number of workers (default: as many as the cluster's CPUs
    hold). ``initializer(*initargs)`` runs in each worker as it starts;
    with ``maxtasksperchild`` a worker is replaced after that many chunks.
    ``ray_address``: the cluster to join if nbray is not started yet
    (default: ``NBRAY_ADDRESS``, a cluster running on this machine, else a
    new local one). ``ray_remote_args``: options for the worker actors
    (default ``{"num_cpus": 1, "max_restarts": -1}``: a worker whose process
    dies is replaced, and only the chunk it was running fails, with
    ``ActorDiedError``). ``context`` is accepted and ignored.

    Errors raised by the function are re-raised by ``get``, ``map`` etc. as
    the same exception type, with the worker's traceback as ``__cause__``.
    Methods raise ValueError("Pool not running") after close or terminate.
    """

    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: Iterable[Any] | None = None, maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict[str, Any] | None = None) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable, got {initializer!r}")
        if maxtasksperchild is not None and (isinstance(maxtasksperchild, bool) or
                                             not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be a positive int or None, got {maxtasksperchild!r}")
        if context is not None:
            warnings.warn("Pool ignores 'context': its workers are nbray actors, not local processes",
                          stacklevel=2)
        plan.check_processes(processes)  # before starting a cluster for it
        ensure_connected(ray_address, processes)
        # max_restarts: a worker whose process dies is started again (with the
        # initializer), as multiprocessing replaces a dead worker; only the
        # chunk it was running fails.
        remote_args = {"num_cpus": 1, "max_restarts": -1, **(ray_remote_args or {})}
        cpus_per_process = float(remote_args.get("num_cpus") or 0)
        self._processes = plan.pool_size(processes, nbray.cluster_resources().get("CPU", 0.0), cpus_per_process)
        self._actor_class = _POOL_ACTOR.options(**remote_args)
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._ledger = _Ledger(plan.WorkerSlots(self._processes, maxtasksperchild))
        self._state = _RUN
        self._retired: list[tuple[Any, Any]] = []  # (actor, its exit call) of workers replaced
        self._actors = [self._start_worker() for _ in range(self._processes)]
        try:
            # Surface a failing initializer (or unplaceable workers) here, not at the first map.
            nbray.get([actor.pid.remote() for actor in self._actors])
        except BaseException:
            self._kill_workers()
            raise
        self._handler = ResultHandler(self._ledger.returned, self._ledger.outstanding)
        weakref.finalize(self, self._handler.stop_when_idle)

    # ---- one call ------------------------------------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (),
              kwds: Mapping[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)`` on a worker; waits for its value."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Mapping[str, Any] | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        """``func(*args, **kwds)`` on a worker, as an AsyncResult. `callback`
        (value) or `error_callback` (exception) runs in the pool's result
        thread when it is done."""
        self._check_running()
        result = AsyncResult(1, single=True, callback=callback, error_callback=error_callback)
        self._submit_chunk(result, 0, func, [(tuple(args), dict(kwds or {}))], _CALL_APPLY)
        return result

    # ---- map -----------------------------------------------------------------------------------------

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        """``[func(x) for x in iterable]``, computed by the workers in chunks."""
        return self._map_async(func, iterable, chunksize, _CALL_ONE, None, None).get()  # type: ignore[no-any-return]

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, _CALL_ONE, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None) -> list[Any]:
        """``[func(*args) for args in iterable]``."""
        return self._map_async(func, iterable, chunksize, _CALL_STAR, None, None).get()  # type: ignore[no-any-return]

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: int | None = None, callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, _CALL_STAR, callback, error_callback)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        """An iterator over ``func(x)`` in input order, reading the input lazily."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> IMapIterator:
        """Like imap, but yields each chunk's values as soon as it is done."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def _map_async(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None, how: int,
                   callback: Callable[[Any], Any] | None,
                   error_callback: Callable[[BaseException], Any] | None) -> AsyncResult:
        self._check_running()
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        if chunksize is None:
            chunksize = plan.default_chunksize(len(items), self._processes)  # type: ignore[arg-type]
        chunk_list = list(plan.chunks(items, plan.check_chunksize(chunksize)))
        result = AsyncResult(len(chunk_list), single=False, callback=callback, error_callback=error_callback)
        shared_func = nbray.put(func) if len(chunk_list) > 1 else func
        for index, chunk in enumerate(chunk_list):
            self._submit_chunk(result, index, shared_func, chunk, how)
        return result

    def _imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int,
              ordered: bool) -> IMapIterator:
        self._check_running()
        plan.check_chunksize(chunksize)
        shared_func = nbray.put(func)  # pickled once for all its chunks

        def submit(sink: IMapIterator, index: int, chunk: list[Any]) -> None:
            self._submit_chunk(sink, index, shared_func, chunk, _CALL_ONE)

        return IMapIterator(plan.chunks(iterable, chunksize), submit, ordered,
                            window=self._processes * _IMAP_CHUNKS_IN_FLIGHT_PER_WORKER)

    # ---- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Take no more work; what was submitted still runs. Then ``join``."""
        with self._ledger.lock:
            if self._state == _RUN:
                self._state = _CLOSE

    def terminate(self) -> None:
        """Kill the workers now; results still pending fail with ActorDiedError.

        Returns once those results are set and their callbacks have run (as
        multiprocessing's terminate does: joblib relies on it, so that a
        callback of an aborted call never lands in the next one), or after
        the config's ``kill_worker_timeout_ms`` at most.
        """
        with self._ledger.lock:
            if self._state == _TERMINATE:
                return
            self._state = _TERMINATE
        self._kill_workers()
        self._handler.stop_when_idle()
        self._handler.join(get_config().kill_worker_timeout_ms / 1000)

    def join(self) -> None:
        """Wait for the submitted work, then for the workers to exit.

        Only after close() or terminate(); ValueError otherwise.
        """
        with self._ledger.lock:
            if self._state == _RUN:
                raise ValueError("Pool is still running; call close() or terminate() before join()")
            graceful = self._state == _CLOSE
            if graceful:
                while self._ledger.slots.total_outstanding:
                    self._ledger.idle.wait()
                self._state = _TERMINATE
        if graceful:
            self._end_workers()
            self._handler.stop_when_idle()
        self._handler.join()

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()  # as multiprocessing.Pool does

    def __reduce__(self) -> Any:
        raise NotImplementedError("Pool objects cannot be passed between processes or pickled; "
                                  "create the Pool where it is used")

    def __repr__(self) -> str:
        return f"<nbray.util.multiprocessing.Pool state={self._state} processes={self._processes}>"

    # ---- internals -----------------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _start_worker(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    def _submit_chunk(self, sink: ChunkSink, index: int, func: Any, items: list[Any], how: int) -> None:
        # Under the lock: a worker being retired must get its last chunk
        # before its exit call, and no chunk after it.
        with self._ledger.lock:
            if self._state == _TERMINATE:
                raise ValueError("Pool not running")
            slot, retire = self._ledger.slots.assign()
            actor = self._actors[slot]
            ref = actor.run_chunk.remote(func, items, how)
            if retire:
                self._retired = [(a, done) for a, done in self._retired if not _finished(done)]
                self._retired.append((actor, actor.__ray_terminate__.remote()))
                self._actors[slot] = self._start_worker()
            sink.refs[index] = ref
            ref.future().add_done_callback(functools.partial(self._handler.chunk_done, sink, index, slot))

    def _kill_workers(self) -> None:
        for actor in [*self._actors, *(a for a, _ in self._retired)]:
            try:
                nbray.kill(actor, no_restart=True)
            except nbray.exceptions.ActorHandleNotFoundError:
                pass  # already gone (a retired worker that exited)

    def _end_workers(self) -> None:
        """Let each worker exit once idle; kill those that take too long."""
        exits = [actor.__ray_terminate__.remote() for actor in self._actors]
        exits += [done for _, done in self._retired]
        grace_s = get_config().kill_worker_timeout_ms / 1000
        _, late = nbray.wait(exits, num_returns=len(exits), timeout=grace_s)
        if late:
            self._kill_workers()


def _finished(ref: Any) -> bool:
    ready, _ = nbray.wait([ref], timeout=0)
    return bool(ready)


def ensure_connected(ray_address: str | None, processes: int | None) -> None:
    """Start or join nbray unless this process already is part of a cluster
    (see ``plan.init_arguments``)."""
    from nbray.api import is_initialized
    from nbray.node import session
    from nbray.object_ref import _core

    if is_initialized() or _core[0] is not None:  # a driver, or a task's worker
        return
    nbray.init(**plan.init_arguments(ray_address, processes,
                                     address_in_environment=bool(os.environ.get(session.ADDRESS_ENV)),
                                     cluster_on_this_machine=session.find_current_cluster() is not None))


__all__ = ["Pool", "PoolActor"]
