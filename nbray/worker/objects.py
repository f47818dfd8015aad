"""put, get and wait as seen by user code (core worker, user threads).

Reading an object: ready inline values are deserialized straight from the
memory store (no message); objects owned elsewhere are first asked of their
owner; shared-memory objects are pinned through the raylet and read in
place. A task blocked here tells its raylet, which lends its CPU to other
work meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import pickle
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nbray.common.ids import put_object_id
from nbray.common.serialization import context as ser_context
from nbray.common.serialization import deserialize, serialize
from nbray.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    OwnerDiedError,
    RayError,
    RaySystemError,
    RayTaskError,
)
from nbray.object_ref import ObjectRef, ObjectRefGenerator
from nbray.protocol import common_pb2
from nbray.worker import context
from nbray.worker.memory_store import Entry, deadline_after, remaining

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)


class ObjectAccess:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self._futures_pool: concurrent.futures.ThreadPoolExecutor | None = None
        core.memory_store.on_delete = self._forget_mapping

    # ---- put ------------------------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        return self.put_serialized(serialize_put_value(value))

    def put_serialized(self, s: Any) -> ObjectRef:
        core = self.core
        ctx = context.current()
        oid = put_object_id(ctx.task_id, ctx.next_put_index())
        if s.total_bytes <= core.config.max_inline_object_bytes:
            entry = Entry(s.to_bytes())
        else:
            core.plasma.put(oid, s, core.address)
            entry = Entry(None, in_plasma=True, node_id=core.node_id, size=s.total_bytes)
        return self._own_put(oid, entry, s.nested_refs)

    def begin_put(self, size: int) -> tuple[bytes, memoryview]:
        """Allocate a put object in shared memory, to be filled piece by piece
        (a notebook client's upload) and then given to finish_put()."""
        core = self.core
        ctx = context.current()
        oid = put_object_id(ctx.task_id, ctx.next_put_index())
        dest = core.plasma.create(oid, size, core.address)
        assert dest is not None, "a fresh put id cannot exist already"
        return oid, dest

    def finish_put(self, oid: bytes, size: int, nested_refs: list[tuple[bytes, bytes]]) -> ObjectRef:
        core = self.core
        core.plasma.seal(oid)
        return self._own_put(oid, Entry(None, in_plasma=True, node_id=core.node_id, size=size), nested_refs)

    def abort_put(self, oid: bytes) -> None:
        """Give up an unfinished begin_put (the upload broke off)."""
        core = self.core
        core.plasma.seal(oid)
        core.free_plasma([oid], core.node_id)

    def _own_put(self, oid: bytes, entry: Entry, nested_refs: list[tuple[bytes, bytes]]) -> ObjectRef:
        core = self.core
        with core.lock:
            core.refs.own(oid, contains=nested_refs)
            if entry.in_plasma:
                ref = core.refs.refs[oid]
                ref.in_plasma = True
                ref.node_ids = {core.node_id}
                ref.size = entry.size
        core.memory_store.put(oid, entry)
        return ObjectRef(oid, core.address_bytes, _counted=True)

    # ---- get -----------------------------------------------------------------------------------------

    def get(self, refs: list[ObjectRef], timeout_s: float | None) -> list[Any]:
        core = self.core
        store = core.memory_store
        ids = [r._id for r in refs]
        deadline = deadline_after(timeout_s)
        missing = store.missing(ids)
        if missing:
            owners = {r._id: r._owner for r in refs}
            for oid in missing:
                if not core.refs.is_owned(oid):
                    core.post(core.ensure_status, oid, owners[oid])
            lend = self.lends_cpu()  # (not `with self.blocked()`: a driver's get stays cheap)
            if lend:
                core.notify_blocked(True)
            try:
                ok = store.wait(missing, len(missing), remaining(deadline), wake_on_error=True)
            finally:
                if lend:
                    core.notify_blocked(False)
            if not ok:
                left = len(store.ready_ids(missing))
                raise GetTimeoutError(
                    f"Get timed out: {len(missing) - left} of {len(set(ids))} object(s) not ready "
                    f"after {timeout_s} s (first missing: {missing[0].hex()}).")
        values: dict[bytes, Any] = {}
        in_plasma: list[ObjectRef] = []
        entry_of = store.get
        # Inline values in the plain layout are a flag byte and a pickle: read
        # straight, unless a deserialization hook is active on this thread.
        plain = ser_context.on_ref_deserialized is None
        loads = pickle.loads
        for ref in refs:
            oid = ref._id
            if oid in values:
                continue
            entry = entry_of(oid)
            if entry is None:
                continue  # another object failed first; raised below
            if entry.is_error:
                raise self._error(entry, oid)
            if entry.in_plasma:
                in_plasma.append(ref)
                values[oid] = None
            else:
                data = entry.data
                if plain and data and data[0] == 0:
                    values[oid] = loads(data[1:])
                else:
                    values[oid] = self._decode(data, oid)
        if in_plasma:
            self._get_plasma(in_plasma, values, deadline)
        return [values[oid] for oid in ids]

    def _get_plasma(self, refs: list[ObjectRef], values: dict[bytes, Any], deadline: float | None) -> None:
        core = self.core
        plasma = core.plasma
        store = core.memory_store
        # Objects this process read before and still holds a reference to
        # are still pinned and mapped here: no round trip.
        fetch: list[ObjectRef] = []
        tokens: list[Entry | None] = []
        for ref in refs:
            entry = store.get(ref._id)
            view = plasma.mappings.lookup(ref._id, entry) if entry is not None else None
            if view is not None:
                values[ref._id] = self._decode(view, ref._id, from_plasma=True)
            else:
                fetch.append(ref)
                tokens.append(entry)
        if not fetch:
            return
        protos = [common_pb2.ObjectReference(object_id=r._id, owner=_owner_proto(core, r)) for r in fetch]
        left = remaining(deadline)
        timeout_ms = -1 if left is None else int(left * 1000)
        with self.blocked():
            results = plasma.get(protos, timeout_ms)
        for ref, entry, result in zip(fetch, tokens, results):
            if isinstance(result, memoryview):
                self._keep_mapping(ref._id, entry, result)
            if result is None:
                raise GetTimeoutError(f"Get timed out fetching object {ref.hex()} into the local object store.")
            if isinstance(result, common_pb2.ErrorInfo):
                if result.type == common_pb2.OWNER_DIED:
                    raise OwnerDiedError(ref.hex(), message=f"{result.message}: object {ref.hex()}")
                raise ObjectLostError(ref.hex(), message=f"Object {ref.hex()} is lost: {result.message}")
            values[ref._id] = self._decode(result, ref._id, from_plasma=True)

    def _keep_mapping(self, oid: bytes, entry: Entry | None, view: memoryview) -> None:
        if entry is None:
            return
        mappings = self.core.plasma.mappings
        evicted = mappings.add(oid, entry, view, view.nbytes)
        # The reference may have gone while the object was read; its
        # deletion then ran before the view was added, so check again.
        if self.core.memory_store.get(oid) is not entry:
            evicted.append(mappings.invalidate(oid))
        del evicted  # dropping the views releases their pins (when nothing else uses them)

    def _forget_mapping(self, oid: bytes) -> None:
        """The process no longer holds `oid`: drop its kept view."""
        plasma = getattr(self.core, "plasma", None)
        if plasma is not None:
            plasma.mappings.invalidate(oid)

    def _decode(self, data: Any, container_id: bytes, from_plasma: bool = False) -> Any:
        new_refs: list[ObjectRef] = []
        value = deserialize(data, on_ref=new_refs.append if from_plasma else None)
        if new_refs:
            self.core.self_register(container_id, new_refs)
        return value

    def _error(self, entry: Entry, oid: bytes) -> BaseException:
        try:
            err = deserialize(entry.data)
        except Exception as exc:
            return RaySystemError(f"the error stored for object {oid.hex()} could not be deserialized: {exc}")
        if isinstance(err, RayTaskError):
            return err.as_instanceof_cause()
        if isinstance(err, BaseException):
            return err
        return RayError(str(err))

    def lends_cpu(self) -> bool:
        """Whether a wait here lends the running task's CPU out (in a worker, within a task)."""
        return self.core.is_worker and context.current_or_none() is not None

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        """Tell the raylet this task waits, so its CPU can be lent out."""
        core = self.core
        if not self.lends_cpu():
            yield
            return
        core.notify_blocked(True)
        try:
            yield
        finally:
            core.notify_blocked(False)

    # ---- wait ----------------------------------------------------------------------------------------

    def wait(self, refs: list[Any], num_returns: int, timeout_s: float | None,
             fetch_local: bool, object_ids: list[bytes] | None = None) -> tuple[list[Any], list[Any]]:
        """`object_ids`: the refs' ids, given when every ref is a plain ObjectRef."""
        ids = object_ids
        core = self.core
        store = core.memory_store
        # Each ref waits on one object; a generator on its next item or its end.
        watched = None
        if ids is None:
            if any(isinstance(r, ObjectRefGenerator) for r in refs):
                watched = [[r._next_ref_id(), r.completed()._id] if isinstance(r, ObjectRefGenerator)
                           else [r._id] for r in refs]
            else:
                ids = [r._id for r in refs]
        deadline = deadline_after(timeout_s)
        asked = False
        while True:
            if ids is not None:
                ready_flags = store.contains_each(ids)
            else:
                assert watched is not None
                ready_flags = [any(map(store.contains, w)) for w in watched]
            if sum(ready_flags) >= num_returns:
                break
            if not asked:
                # Borrowed refs we know nothing of: ask their owners.
                asked = True
                for r, ok in zip(refs, ready_flags):
                    if not ok and isinstance(r, ObjectRef) and not core.refs.is_owned(r._id):
                        core.post(core.ensure_status, r._id, r._owner)
            left = remaining(deadline)
            if left is not None and left <= 0:
                break
            if ids is not None:
                pending = [oid for oid, ok in zip(ids, ready_flags) if not ok]
            else:
                assert watched is not None
                pending = [oid for w, ok in zip(watched, ready_flags) if not ok for oid in w]
            with self.blocked():
                store.wait(pending, 1, left)
        if fetch_local:
            ready_flags = self._fetch_local(refs, ready_flags, num_returns, deadline)
        ready: list[Any] = []
        not_ready: list[Any] = []
        num_ready = sum(ready_flags)
        if num_ready == len(refs) == num_returns:
            return list(refs), []
        if num_ready <= num_returns:
            for r, ok in zip(refs, ready_flags):
                (ready if ok else not_ready).append(r)
            return ready, not_ready
        for r, ok in zip(refs, ready_flags):
            if ok and len(ready) < num_returns:
                ready.append(r)
            else:
                not_ready.append(r)
        return ready, not_ready

    def _fetch_local(self, refs: list[Any], ready_flags: list[bool], num_returns: int,
                     deadline: float | None) -> list[bool]:
        """Objects on other nodes count as ready once copied to this node."""
        core = self.core
        elsewhere = core.memory_store.remote_plasma
        if not elsewhere:
            return ready_flags
        remote = [i for i, (r, ok) in enumerate(zip(refs, ready_flags))
                  if ok and isinstance(r, ObjectRef) and r._id in elsewhere]
        if not remote:
            return ready_flags
        flags = list(ready_flags)
        for i in remote:
            flags[i] = False
        need = max(0, num_returns - sum(flags))
        if need == 0:
            return ready_flags
        from nbray.protocol import method, raylet_pb2

        protos = [common_pb2.ObjectReference(object_id=refs[i]._id, owner=_owner_proto(core, refs[i]))
                  for i in remote]
        left = remaining(deadline)
        reply = core.raylet.call_sync(method("RayletService.GetObjects"), raylet_pb2.GetObjectsRequest(
            refs=protos, check_only=True, num_required=min(need, len(protos)),
            timeout_ms=-1 if left is None else int(left * 1000)))
        for i, loc in zip(remote, reply.objects):
            flags[i] = loc.ready
        return flags

    # ---- futures ---------------------------------------------------------------------------------------

    def future(self, ref: ObjectRef) -> concurrent.futures.Future[Any]:
        core = self.core
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not core.refs.is_owned(ref._id):
            core.post(core.ensure_status, ref._id, ref._owner)

        def on_ready(entry: Entry) -> None:
            if entry.in_plasma:
                self._pool().submit(self._resolve_blocking, ref, fut)
                return
            try:
                if entry.is_error:
                    fut.set_exception(self._error(entry, ref._id))
                else:
                    fut.set_result(self._decode(entry.data, ref._id))
            except BaseException as exc:  # deserialization failed
                if not fut.done():
                    fut.set_exception(exc)

        core.memory_store.on_ready(ref._id, on_ready)
        return fut

    def _resolve_blocking(self, ref: ObjectRef, fut: concurrent.futures.Future[Any]) -> None:
        try:
            fut.set_result(self.get([ref], None)[0])
        except BaseException as exc:
            fut.set_exception(exc)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._futures_pool is None:
            self._futures_pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="nbray-futures")
        return self._futures_pool

    def shutdown(self) -> None:
        if self._futures_pool is not None:
            self._futures_pool.shutdown(wait=False, cancel_futures=True)


def _owner_proto(core: CoreWorker, ref: ObjectRef) -> common_pb2.Address:
    if not ref._owner or ref._owner == core.address_bytes:
        return core.address
    addr = common_pb2.Address()
    addr.ParseFromString(ref._owner)
    return addr


def now() -> float:
    return time.monotonic()


def serialize_put_value(value: Any) -> Any:
    """The serialized form of a ``put`` value, or a TypeError saying why not."""
    if isinstance(value, ObjectRef):
        raise TypeError(
            "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
            "wrap the ObjectRef in a list and put that.")
    try:
        return serialize(value)
    except TypeError as exc:
        raise TypeError(f"Could not serialize the put value: {exc}") from None
