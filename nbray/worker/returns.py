"""Many return values at once, on both ends of a task (worker and owner).

Runs in every core worker. A task with ``num_returns=10_000`` produces one
reply carrying ten thousand return objects; per return, only the work that
return needs is done:

- worker side (``pack_returns``): small plain values are pickled (atoms --
  ints, strings, ... -- straight through pickle, without the general
  serializer's bookkeeping) and concatenated into one bytes field of the
  reply with a list of their sizes
  (``packed_return_data``/``packed_return_sizes``): no protobuf message per
  return on either end. Values with nested refs, errors or values too large
  to travel inline take the general path (``CoreWorker.store_serialized``)
  and are listed in ``returns`` with their ids;
- owner side (``unpack_returns``): the packed values are cut back into one
  memory-store entry per return the owner still references;
- both sides pause CPython's cyclic garbage collector while a large batch
  is built or stored (``gc_paused``). Each return allocates a few
  container objects, so a batch triggers dozens of young collections, and
  those promote the batch into the old generation where every full
  collection walks the whole heap again; the batch itself creates no
  reference cycles, so nothing is lost by collecting after it instead.
"""

from __future__ import annotations

import gc
import pickle
from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbray.common.ids import return_object_id
from nbray.common.serialization import serialize
from nbray.protocol import core_worker_pb2
from nbray.worker.memory_store import Entry

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker

# Batches of at least this many returns pause the garbage collector: below
# it, a batch costs less than one young collection.
GC_PAUSE_MIN_RETURNS = 1_000


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Pause the cyclic collector for the block (it is per process: another
    thread's allocations meanwhile wait for the next collection too)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def pack_returns(core: CoreWorker, spec: Any, values: Sequence[Any]) -> core_worker_pb2.PushTaskReply:
    """A reply holding the task's return objects: small plain values packed
    together, the rest (in the store, holding refs, errors) listed."""
    if len(values) < GC_PAUSE_MIN_RETURNS:  # (no context manager on the per-task path)
        return _pack(core, spec, values)
    with gc_paused():
        return _pack(core, spec, values)


def _pack(core: CoreWorker, spec: Any, values: Sequence[Any]) -> core_worker_pb2.PushTaskReply:
    reply = core_worker_pb2.PushTaskReply()
    if not values:
        return reply
    returns = reply.returns
    tid = spec.task_id
    caller = spec.caller
    max_inline = core.config.max_inline_object_bytes
    atoms = _ATOMS
    dumps = pickle.dumps
    flags = _PLAIN_FLAGS
    pieces: list[bytes] = []
    sizes: list[int] = []
    add_piece = pieces.append
    add_size = sizes.append
    for i, value in enumerate(values):
        if type(value) in atoms:
            # The plain layout (see serialization.Serialized): a zero flag byte, then the pickle.
            data = flags + dumps(value, protocol=5)
            if len(data) <= max_inline:
                add_piece(data)
                add_size(len(data))
                continue
        s = serialize(value)
        if s.nested_refs or s.total_bytes > max_inline or s.is_error:
            returns.append(core.store_serialized(return_object_id(tid, i + 1), s, caller))
            add_size(0)
        else:
            data = s.to_bytes()
            add_piece(data)
            add_size(len(data))
    reply.packed_return_data = b"".join(pieces)
    reply.packed_return_sizes.extend(sizes)
    return reply


def packed_returns_problem(reply: Any, num_returns: int) -> str:
    """Why the packed returns of `reply` cannot belong to a task with
    `num_returns` returns ("" when they can, or when nothing is packed)."""
    sizes = reply.packed_return_sizes
    if not sizes:
        return ""
    if len(sizes) != num_returns:
        return f"the reply packs {len(sizes)} returns for a task with {num_returns}"
    total = sum(sizes)
    if total != len(reply.packed_return_data):
        return (f"the reply's packed returns hold {len(reply.packed_return_data)} bytes, "
                f"their sizes add up to {total}")
    return ""


def unpack_returns(reply: Any, return_ids: Sequence[bytes], wanted: Container[bytes]) -> list[tuple[bytes, Entry]]:
    """The packed inline returns of `reply` as memory-store entries, for the
    ids among `return_ids` (the task's, in order) that are in `wanted`.
    The reply must pass ``packed_returns_problem``."""
    data = reply.packed_return_data
    out: list[tuple[bytes, Entry]] = []
    append = out.append
    start = 0
    for oid, size in zip(return_ids, reply.packed_return_sizes):
        if size:
            end = start + size
            if oid in wanted:
                append((oid, Entry(data[start:end])))
            start = end
    return out


# Values that hold nothing but themselves (no refs, no out-of-band buffers).
_ATOMS = frozenset({int, float, str, bool, type(None), complex})
_PLAIN_FLAGS = b"\x00"
