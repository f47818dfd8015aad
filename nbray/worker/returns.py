"""Many return values at once, on both ends of a task (worker and owner).

Runs in every core worker. A task with ``num_returns=10_000`` produces one
reply carrying ten thousand return objects; per return, only the work that
return needs is done:

- worker side (``pack_returns``): small plain values are pickled and added
  to the reply in place, without building a ``ReturnObject`` apart and
  copying it in (atoms -- ints, strings, ... -- straight through pickle,
  without the general serializer's bookkeeping); values with nested refs
  or too large to travel inline take the general path
  (``CoreWorker.store_serialized``);
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nbray.common.ids import return_object_id
from nbray.common.serialization import serialize
from nbray.protocol import core_worker_pb2

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
    """A reply holding the task's return objects (inline or in the store)."""
    reply = core_worker_pb2.PushTaskReply()
    returns = reply.returns
    add = returns.add
    tid = spec.task_id
    caller = spec.caller
    max_inline = core.config.max_inline_object_bytes
    atoms = _ATOMS
    dumps = pickle.dumps
    with gc_paused(len(values) >= GC_PAUSE_MIN_RETURNS):
        for i, value in enumerate(values):
            oid = return_object_id(tid, i + 1)
            if type(value) in atoms:
                # The plain layout (see serialization.Serialized): a zero flag byte, then the pickle.
                data = _PLAIN_FLAGS + dumps(value, protocol=5)
                if len(data) <= max_inline:
                    add(object_id=oid).value.data = data
                    continue
            s = serialize(value)
            if s.nested_refs or s.total_bytes > max_inline or s.is_error:
                returns.append(core.store_serialized(oid, s, caller))
            else:
                # VALUE_PICKLE is the default format: only the bytes to set
                add(object_id=oid).value.data = s.to_bytes()
    return reply


# Values that hold nothing but themselves (no refs, no out-of-band buffers).
_ATOMS = frozenset({int, float, str, bool, type(None), complex})
_PLAIN_FLAGS = b"\x00"
