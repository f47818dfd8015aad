"""``ObjectRef``, ``ObjectRefGenerator`` and ``DynamicObjectRefGenerator``:
futures of immutable objects and of what generator tasks yield.

A ref counts as a reference of its process while it exists; when it is
garbage collected the count drops (deferred, so ``__del__`` never takes a
lock). Pickling a ref (as an argument, inside a ``put`` value or a return)
makes the receiver a borrower, tracked by the owner.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nbray.common import ids as _ids
from nbray.common.pickle_context import record_nested_ref

if TYPE_CHECKING:
    import asyncio  # imported where used: a driver that never awaits a ref does not pay for it

    from nbray.worker.core_worker import CoreWorker

# The process's core worker (set by nbray.init / the worker main).
_core: list[CoreWorker | None] = [None]

html_renderers: dict[str, Callable[[Any], str]] = {}
"""Class name -> HTML rendering for notebooks; the notebook layer fills it in
(``nbray.jupyter.reprs``) so this module never imports notebook code."""


class ObjectRef:
    __slots__ = ("_id", "_owner", "_counted", "__weakref__")

    def __init__(self, binary_id: bytes, owner: bytes = b"", _counted: bool = False) -> None:
        if len(binary_id) != _ids.OBJECT_ID_SIZE:
            raise ValueError(f"an object id has {_ids.OBJECT_ID_SIZE} bytes, got {len(binary_id)}")
        self._id = binary_id
        self._owner = owner
        self._counted = _counted

    def __del__(self) -> None:
        if self._counted:
            core = _core[0]
            if core is not None:
                core.release_ref(self._id)

    def __reduce__(self) -> Any:
        record_nested_ref(self._id, self._owner)
        return _rebuild_ref, (self._id, self._owner)

    def __copy__(self) -> ObjectRef:
        return _rebuild_ref(self._id, self._owner)

    def __deepcopy__(self, memo: Any) -> ObjectRef:
        return _rebuild_ref(self._id, self._owner)

    # ---- ids ------------------------------------------------------------------------------

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    @classmethod
    def from_binary(cls, binary_id: bytes) -> ObjectRef:
        return cls(binary_id)

    @classmethod
    def from_hex(cls, hex_id: str) -> ObjectRef:
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def nil(cls) -> ObjectRef:
        return cls(b"\xff" * _ids.OBJECT_ID_SIZE)

    def is_nil(self) -> bool:
        return self._id == b"\xff" * _ids.OBJECT_ID_SIZE

    def task_id(self) -> _ids.TaskID:
        return _ids.TaskID(self._id[: _ids.TASK_ID_SIZE])

    def job_id(self) -> _ids.JobID:
        return _ids.JobID(_ids.job_id_of(self._id))

    def owner_address(self) -> bytes:
        return self._owner

    def call_site(self) -> str:
        return ""

    def size(self) -> int:
        core = _core[0]
        return core.object_size(self._id) if core is not None else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def _repr_html_(self) -> str | None:
        render = html_renderers.get("ObjectRef")
        return render(self) if render is not None else None

    # ---- futures ------------------------------------------------------------------------------

    def future(self) -> concurrent.futures.Future[Any]:
        """A concurrent.futures.Future resolved with the object's value."""
        return _require_core().ref_future(self)

    def as_future(self) -> asyncio.Future[Any]:
        """An asyncio future of the running loop resolved with the value."""
        import asyncio

        loop = asyncio.get_event_loop()
        return asyncio.wrap_future(self.future(), loop=loop)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.as_future().__await__()


def _rebuild_ref(binary_id: bytes, owner: bytes) -> ObjectRef:
    core = _core[0]
    if core is None:
        return ObjectRef(binary_id, owner)
    return core.deserialize_ref(binary_id, owner)


def _require_core() -> CoreWorker:
    core = _core[0]
    if core is None:
        raise RuntimeError("nbray is not initialized; call nbray.init() first")
    return core


class ObjectRefGenerator:
    """Iterator over the refs a generator task yields, as they arrive.

    Iterating blocks until the next item is ready; ``async for`` works too.
    The generator itself can be passed to ``nbray.wait`` and ``cancel``.
    """

    def __init__(self, generator_ref: ObjectRef, core: CoreWorker) -> None:
        self._generator_ref = generator_ref
        self._core = core
        self._task_id = generator_ref.binary()[: _ids.TASK_ID_SIZE]
        self._next_index = 0

    def __iter__(self) -> Iterator[ObjectRef]:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._core.generator_next(self._task_id, self._next_index, timeout_s=None)
        if ref is None:
            raise StopIteration
        self._next_index += 1
        return ref

    def __aiter__(self) -> AsyncIterator[ObjectRef]:
        return self

    async def __anext__(self) -> ObjectRef:
        import asyncio

        loop = asyncio.get_running_loop()
        ref = await loop.run_in_executor(None, self._core.generator_next, self._task_id,
                                         self._next_index, None)
        if ref is None:
            raise StopAsyncIteration
        self._next_index += 1
        return ref

    def next_ready(self) -> bool:
        """True when the next item (or the end) is available without blocking."""
        return self._core.generator_item_ready(self._task_id, self._next_index)

    def is_finished(self) -> bool:
        return self._core.generator_finished(self._task_id, self._next_index)

    def completed(self) -> ObjectRef:
        """A ref that is ready when the generator task finished."""
        return self._generator_ref

    def _next_ref_id(self) -> bytes:
        return _ids.return_object_id(self._task_id, self._next_index + 2)

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def _repr_html_(self) -> str | None:
        render = html_renderers.get("ObjectRefGenerator")
        return render(self) if render is not None else None

    def __del__(self) -> None:
        core = self._core
        if core is not None:
            try:
                core.generator_dropped(self._task_id, self._next_index)
            except Exception:
                pass


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: refs to what it yielded.

    ``get`` of the task's one ref returns this once the task has finished;
    iterate it (as often as you like) for the refs, ``len()`` counts them.
    If the generator raised, the last ref holds the error. The caller owns
    every item, so they outlive the worker that made them.
    """

    def __init__(self, refs: Iterable[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
