"""Queue: a first-in first-out queue shared by tasks and actors (Ray's ray.util.queue).

The items live in one async actor, so a get blocked on an empty queue never
holds up the puts that would satisfy it. A ``Queue`` object is only a handle
to that actor: pass it to tasks and actors like any argument::

    from nbray.util.queue import Queue

    q = Queue(maxsize=100)

    @nbray.remote
    def produce(q, n):
        for i in range(n):
            q.put(i)

    produce.remote(q, 10)
    print([q.get(timeout=10) for _ in range(10)])

The actor reports "full" and "empty" as values, not exceptions, so the
caller raises ``Full`` and ``Empty`` itself, with a traceback of its own.
"""

from __future__ import annotations

import asyncio
import queue as stdlib_queue
from collections.abc import Iterable
from typing import Any

import nbray
from nbray.exceptions import ActorDiedError


class Empty(stdlib_queue.Empty):
    """``get`` found the queue empty: non-blocking, or its timeout ran out."""


class Full(stdlib_queue.Full):
    """``put`` found the queue full: non-blocking, or its timeout ran out."""


class _QueueActor:
    """Holds the items; runs in the actor's process, on its event loop.

    Every method returns ``(ok, value)``: ``ok`` is False when the queue was
    full (puts) or empty (gets), and ``value`` is then its current size."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> tuple[bool, Any]:
        if not self.queue.full():
            # Room now: no wait. (Python 3.11's wait_for with timeout 0 would
            # give up before even trying.)
            return self.put_nowait(item)
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False, self.queue.qsize()
        return True, None

    async def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        if not self.queue.empty():
            return self.get_nowait()  # an item now: no wait, even with timeout 0
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, self.queue.qsize()

    def put_nowait(self, item: Any) -> tuple[bool, Any]:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False, self.queue.qsize()
        return True, None

    def put_nowait_batch(self, items: list[Any]) -> tuple[bool, Any]:
        # All or nothing: a batch that does not fit leaves the queue as it was.
        if self.maxsize > 0 and self.queue.qsize() + len(items) > self.maxsize:
            return False, self.queue.qsize()
        for item in items:
            self.queue.put_nowait(item)
        return True, None

    def get_nowait(self) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, 0

    def get_nowait_batch(self, num_items: int) -> tuple[bool, Any]:
        if num_items > self.queue.qsize():
            return False, self.queue.qsize()
        return True, [self.queue.get_nowait() for _ in range(num_items)]


_QUEUE_ACTOR = nbray.remote(_QueueActor)


class Queue:
    """A FIFO queue held by an actor; picklable, so tasks and actors can share it.

    ``maxsize`` <= 0 means unbounded. ``actor_options`` are passed to the
    actor's ``.options()`` (e.g. ``{"num_cpus": 0, "name": "jobs"}``).

    Raises ``ActorDiedError`` (a ``RayActorError``) once the queue was shut
    down, from any copy of it.
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"Queue maxsize must be an int (0 or less for no limit), got {maxsize!r}")
        self.maxsize = maxsize
        self.actor: Any = _QUEUE_ACTOR.options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def __repr__(self) -> str:
        state = "shut down" if self.actor is None else repr(self.actor)
        return f"Queue(maxsize={self.maxsize}, {state})"

    # ---- size --------------------------------------------------------------------------------------

    def size(self) -> int:
        """The number of items in the queue."""
        return self.qsize()

    def qsize(self) -> int:
        """The number of items in the queue."""
        return int(self._result(self._actor().qsize.remote()))

    def empty(self) -> bool:
        """Whether the queue holds no items."""
        return bool(self._result(self._actor().empty.remote()))

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items (never, if unbounded)."""
        return bool(self._result(self._actor().full.remote()))

    # ---- put ---------------------------------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add `item`, waiting up to `timeout` seconds (None: forever) for room.

        Raises Full when there is no room: at once with ``block=False``, or
        after the timeout. ValueError for a negative timeout.
        """
        if not block:
            ok, size = self._result(self._actor().put_nowait.remote(item))
        else:
            _check_timeout(timeout)
            ok, size = self._result(self._actor().put.remote(item, timeout))
        if not ok:
            raise Full(self._full_message(size))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for asyncio code: awaits instead of blocking the event loop."""
        if not block:
            ok, size = await self._result_async(self._actor().put_nowait.remote(item))
        else:
            _check_timeout(timeout)
            ok, size = await self._result_async(self._actor().put.remote(item, timeout))
        if not ok:
            raise Full(self._full_message(size))

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: raises Full when there is no room."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all of `items` at once, or none of them.

        Raises Full (adding nothing) when they do not all fit; TypeError when
        `items` is not iterable.
        """
        if not isinstance(items, Iterable):
            raise TypeError(f"put_nowait_batch takes an iterable of items, got {type(items).__name__}")
        batch = list(items)
        ok, size = self._result(self._actor().put_nowait_batch.remote(batch))
        if not ok:
            raise Full(f"Cannot add {len(batch)} items to a queue holding {size} of at most {self.maxsize}.")

    # ---- get ---------------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting up to `timeout` seconds
        (None: forever) for one.

        Raises Empty when there is none: at once with ``block=False``, or
        after the timeout. ValueError for a negative timeout.
        """
        if not block:
            ok, value = self._result(self._actor().get_nowait.remote())
        else:
            _check_timeout(timeout)
            ok, value = self._result(self._actor().get.remote(timeout))
        if not ok:
            raise Empty(_empty_message(block, timeout))
        return value

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for asyncio code: awaits instead of blocking the event loop."""
        if not block:
            ok, value = await self._result_async(self._actor().get_nowait.remote())
        else:
            _check_timeout(timeout)
            ok, value = await self._result_async(self._actor().get.remote(timeout))
        if not ok:
            raise Empty(_empty_message(block, timeout))
        return value

    def get_nowait(self) -> Any:
        """``get(block=False)``: raises Empty when the queue is empty."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return the `num_items` oldest items, or none of them.

        Raises Empty (removing nothing) when fewer are queued; TypeError when
        `num_items` is not an int, ValueError when it is negative.
        """
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError(f"get_nowait_batch takes an int number of items, got {num_items!r}")
        if num_items < 0:
            raise ValueError(f"get_nowait_batch needs a number of items >= 0, got {num_items}")
        ok, value = self._result(self._actor().get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(f"Cannot get {num_items} items from a queue holding {value}.")
        return list(value)

    # ---- shutdown ----------------------------------------------------------------------------------

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """Stop the queue's actor; its items are lost.

        Without `force`, the actor is asked to exit and is killed if it has
        not within `grace_period_s` seconds. Calls waiting on the queue, and
        every later call from any copy of it, raise ``RayActorError``.
        Shutting down twice does nothing.
        """
        actor = self.actor
        if actor is None:
            return
        self.actor = None
        if force:
            nbray.kill(actor, no_restart=True)
            return
        done = actor.__ray_terminate__.remote()
        exited, _ = nbray.wait([done], timeout=grace_period_s)
        if not exited:
            nbray.kill(actor, no_restart=True)

    # ---- helpers -----------------------------------------------------------------------------------

    def _actor(self) -> Any:
        if self.actor is None:
            raise ActorDiedError(error_msg="This Queue was shut down (Queue.shutdown() was called), so its "
                                           "items are gone; create a new Queue to go on.")
        return self.actor

    def _result(self, ref: Any) -> Any:
        try:
            return nbray.get(ref)
        except ActorDiedError as exc:
            raise _queue_gone(exc) from exc

    async def _result_async(self, ref: Any) -> Any:
        try:
            return await ref
        except ActorDiedError as exc:
            raise _queue_gone(exc) from exc

    def _full_message(self, size: int) -> str:
        return f"The queue is full ({size} of at most {self.maxsize} items)."


def _queue_gone(exc: ActorDiedError) -> ActorDiedError:
    """The error of a call that found the queue's actor dead: most often a
    copy of the Queue whose original (or another copy) was shut down."""
    return ActorDiedError(
        actor_id=exc.actor_id,
        error_msg=f"This Queue's actor is gone, and its items with it: the queue was shut down "
                  f"(Queue.shutdown() on some copy of it) or its actor died ({exc.error_msg}).",
        actor_init_failed=exc.actor_init_failed, preempted=exc.preempted)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number of seconds or None, got {timeout}")


def _empty_message(block: bool, timeout: float | None) -> str:
    if not block:
        return "The queue is empty."
    return f"The queue stayed empty for the whole timeout ({timeout} s)."


__all__ = ["Empty", "Full", "Queue"]
