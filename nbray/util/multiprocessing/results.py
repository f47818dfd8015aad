"""What a Pool hands back: AsyncResult, the imap iterators, and the thread
that fills them (runs in the process that made the Pool).

Each chunk of work is one call to a worker actor. When its reply arrives,
the core's I/O thread only queues it (``ResultHandler.chunk_done``); the
handler thread decodes it and fills the result, and runs the user's
callbacks there, as multiprocessing does. Callbacks may submit more work
(joblib's do): nothing on that thread waits on the cluster.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import TimeoutError
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class RemoteTraceback(Exception):
    """The ``__cause__`` of an error raised by the pool's function: its
    traceback in the worker, which the exception itself cannot carry."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback_text}"""'


# A worker's answer for one chunk: the values it computed, in order, and the
# (exception, traceback text) that stopped it, if one did.
ChunkReply = tuple[list[Any], "tuple[BaseException, str] | None"]


def decode_reply(future: concurrent.futures.Future[Any]) -> tuple[list[Any], BaseException | None]:
    """(values, error) of a finished chunk call; error is the function's own
    exception (its remote traceback as cause) or the call's failure (e.g.
    the worker died)."""
    try:
        values, failure = future.result()
    except Exception as exc:  # the call itself failed: the chunk has this error
        return [], exc
    if failure is None:
        return values, None
    error, traceback_text = failure
    error.__cause__ = RemoteTraceback(traceback_text)
    return values, error


class ChunkSink(Protocol):
    """Where a chunk's values go: an AsyncResult or an IMapIterator."""

    refs: dict[int, Any]  # chunk index -> the pending call's ref, which must live until it returns

    def deliver(self, index: int, values: list[Any], error: BaseException | None) -> None: ...


class ResultHandler:
    """The thread that turns finished chunk calls into results.

    It stops once asked to (``stop_when_idle``) and no chunk is outstanding,
    so a terminated pool's failed calls still reach their results.
    """

    def __init__(self, on_chunk_returned: Callable[[int], None], outstanding: Callable[[], int]) -> None:
        self._on_chunk_returned = on_chunk_returned  # (slot) the pool's bookkeeping
        self._outstanding = outstanding  # () -> chunks submitted and not yet returned
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="nbray-pool-results", daemon=True)
        self._thread.start()

    def chunk_done(self, sink: ChunkSink, index: int, slot: int,
                   future: concurrent.futures.Future[Any]) -> None:
        """Called on the core's thread: only queue the reply."""
        self._events.put((sink, index, slot, future))

    def stop_when_idle(self) -> None:
        self._stopping = True
        self._events.put(None)  # wakes the thread to look

    def join(self, timeout: float | None = None) -> None:
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            event = self._events.get()
            if event is not None:
                sink, index, slot, future = event
                values, error = decode_reply(future)
                try:
                    sink.deliver(index, values, error)
                finally:
                    self._on_chunk_returned(slot)
            if self._stopping and self._outstanding() == 0:
                return


class AsyncResult:
    """The result of ``apply_async``, ``map_async`` and ``starmap_async``.

    It is ready once every chunk is back, or as soon as one fails (as in
    multiprocessing); ``get`` then raises that chunk's error.
    """

    def __init__(self, num_chunks: int, single: bool, callback: Callable[[Any], Any] | None,
                 error_callback: Callable[[BaseException], Any] | None) -> None:
        self._chunks: list[list[Any] | None] = [None] * num_chunks
        self._missing = num_chunks
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self.refs: dict[int, Any] = {}  # chunk index -> its call's ref, held until it returns
        if num_chunks == 0:
            self._finish()

    def ready(self) -> bool:
        """Whether the result is known (values or an error)."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether it finished without error. ValueError if not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Wait until ready, or for `timeout` seconds."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The value; re-raises the function's error. multiprocessing's
        TimeoutError if not ready within `timeout` seconds."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(f"the pool's result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value

    def deliver(self, index: int, values: list[Any], error: BaseException | None) -> None:
        self.refs.pop(index, None)
        if self._event.is_set():
            return  # an earlier chunk failed: the result is decided
        if error is not None:
            self._error = error
            self._finish()
            return
        self._chunks[index] = values
        self._missing -= 1
        if self._missing == 0:
            self._finish()

    def _finish(self) -> None:
        if self._error is None:
            values = [v for chunk in self._chunks for v in (chunk or ())]
            self._value = values[0] if self._single else values
        self._chunks = []
        try:
            if self._error is not None and self._error_callback is not None:
                self._error_callback(self._error)
            elif self._error is None and self._callback is not None:
                self._callback(self._value)
        except Exception:
            # the handler thread must go on serving other results
            logger.exception("a Pool callback raised; its result is still set")
        finally:
            self._event.set()

    def __repr__(self) -> str:
        state = "pending" if not self.ready() else ("failed" if self._error is not None else "done")
        return f"<nbray.util.multiprocessing.AsyncResult {state}>"


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class IMapIterator:
    """The iterator ``imap`` (in order) and ``imap_unordered`` return.

    The input is read, and chunks submitted, only as results are consumed,
    keeping `window` chunks in flight. ``next(timeout)`` raises
    multiprocessing's TimeoutError if no result came in time. A failed chunk
    raises its error at its place; iteration can go on after it.
    """

    def __init__(self, chunk_iter: Iterator[list[Any]], submit: Callable[[IMapIterator, int, list[Any]], None],
                 ordered: bool, window: int) -> None:
        self._chunk_iter = chunk_iter
        self._submit = submit
        self._ordered = ordered
        self._window = window
        self._cond = threading.Condition()
        self._items: collections.deque[Any] = collections.deque()
        self._done: dict[int, list[Any]] = {}  # ordered: chunks back before their turn
        self._next_in_order = 0
        self._submitted = 0
        self._returned = 0  # chunks whose items moved to _items
        self._input_done = False
        self.refs: dict[int, Any] = {}
        with self._cond:
            self._fill_window()

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._items:
                    item = self._items.popleft()
                    self._fill_window()
                    if isinstance(item, _Failed):
                        raise item.error
                    return item
                self._fill_window()
                if self._input_done and self._returned == self._submitted:
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no result from the pool within {timeout} s")
                self._cond.wait(remaining)

    def deliver(self, index: int, values: list[Any], error: BaseException | None) -> None:
        items: list[Any] = list(values)
        if error is not None:
            items.append(_Failed(error))
        with self._cond:
            self.refs.pop(index, None)
            if not self._ordered:
                self._take(items)
            else:
                self._done[index] = items
                while self._next_in_order in self._done:
                    self._take(self._done.pop(self._next_in_order))
                    self._next_in_order += 1
            self._cond.notify_all()

    def _take(self, items: list[Any]) -> None:
        self._items.extend(items)
        self._returned += 1

    def _fill_window(self) -> None:
        # with self._cond held; reads the caller's iterable in the caller's thread
        while not self._input_done and self._submitted - self._returned < self._window:
            chunk = next(self._chunk_iter, None)
            if chunk is None:
                self._input_done = True
                return
            index = self._submitted
            self._submitted += 1
            self._submit(self, index, chunk)


__all__ = ["AsyncResult", "IMapIterator", "RemoteTraceback", "ResultHandler", "TimeoutError"]
