"""Lineage: rebuilding lost objects by re-running the tasks that made them.

The owner keeps a finished task's spec while any of its outputs that live
in a shared-memory store are in scope (outputs kept inline in the owner
cannot be lost). Its arguments stay *lineage pinned*: their metadata stays,
their values may be freed. When every copy of an output is gone (its node
died, or its value was freed and a rebuild needs it), the task runs again,
after rebuilding any of its own lost arguments first; each rebuild counts
against the task's ``max_retries``. Objects made by ``put`` cannot be
rebuilt. The specs kept are bounded by ``max_lineage_bytes`` (oldest
evicted first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from nbray.common import ids
from nbray.common.serialization import serialize
from nbray.exceptions import (
    ObjectReconstructionFailedError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
)
from nbray.protocol import common_pb2
from nbray.worker.memory_store import Entry

if TYPE_CHECKING:
    from nbray.worker.core_worker import CoreWorker
    from nbray.worker.pending_task import PendingTask

logger = logging.getLogger(__name__)


class Lineage:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.tasks: OrderedDict[bytes, PendingTask] = OrderedDict()
        self.live_returns: dict[bytes, int] = {}
        self.sizes: dict[bytes, int] = {}
        self.bytes = 0
        self.evicted: OrderedDict[bytes, None] = OrderedDict()
        self.rebuilding: set[bytes] = set()

    def worth_keeping(self, task: PendingTask, reply: Any) -> bool:
        spec = task.spec
        if spec.type != common_pb2.NORMAL_TASK or spec.max_retries == 0:
            return False
        return any(r.value.format == common_pb2.VALUE_IN_PLASMA for r in reply.returns)

    def keep(self, task: PendingTask, live_returns: int) -> list[Any]:
        """Caller holds core.lock; returns actions for the caller to apply."""
        tid = task.task_id
        if tid in self.tasks:
            self.live_returns[tid] = live_returns
            return []
        size = task.spec.ByteSize()
        self.tasks[tid] = task
        self.live_returns[tid] = live_returns
        self.sizes[tid] = size
        self.bytes += size
        budget = self.core.config.max_lineage_bytes
        actions: list[Any] = []
        while self.bytes > budget and len(self.tasks) > 1:
            oldest = next(iter(self.tasks))
            self.evicted[oldest] = None
            if len(self.evicted) > 100_000:
                self.evicted.popitem(last=False)
            actions.extend(self._drop(oldest))
        return actions

    def on_return_freed(self, task_id: bytes) -> list[Any]:
        """Caller holds core.lock. A kept task's output is gone for good."""
        left = self.live_returns.get(task_id)
        if left is None:
            return []
        left -= 1
        self.live_returns[task_id] = left
        if left > 0 or task_id in self.rebuilding:
            return []
        return self._drop(task_id)

    def _drop(self, task_id: bytes) -> list[Any]:
        task = self.tasks.pop(task_id, None)
        self.live_returns.pop(task_id, None)
        self.bytes -= self.sizes.pop(task_id, 0)
        if task is None:
            return []
        return self.core.refs.release_lineage(task.arg_ids)

    def holds(self, task_id: bytes) -> bool:
        return task_id in self.tasks

    # ---- rebuilding ----------------------------------------------------------------------------

    def is_lost(self, object_id: bytes) -> bool:
        """No usable copy of an owned object exists."""
        core = self.core
        ref = core.refs.get(object_id)
        if ref is None or not ref.owned:
            return False
        entry = core.memory_store.get(object_id)
        if entry is None:
            return ref.value_freed
        if entry.in_plasma:
            return not any(core.node_alive(n) for n in (ref.node_ids or ()))
        return False

    def rebuild(self, object_id: bytes) -> None:
        """Loop thread: make a lost owned object available again (or fail it)."""
        core = self.core
        ref = core.refs.get(object_id)
        if ref is None or not ref.owned:
            return
        if ids.is_put_object(object_id):
            self._fail(object_id, ObjectReconstructionFailedError(
                object_id.hex(), message=(
                    f"Object {object_id.hex()} is lost and cannot be rebuilt: it was created by put() "
                    "(only task outputs can be rebuilt from lineage). Its copy was on a node that died.")))
            return
        task_id = ref.lineage or ids.task_id_of(object_id)
        task = self.tasks.get(task_id)
        if task is None:
            if task_id in self.evicted:
                self._fail(object_id, ObjectReconstructionFailedLineageEvictedError(object_id.hex(), message=(
                    f"Object {object_id.hex()} is lost and cannot be rebuilt: the lineage of the task that "
                    "made it was evicted (max_lineage_bytes).")))
            elif core.task_manager.get(task_id) is None:
                self._fail(object_id, ObjectReconstructionFailedError(object_id.hex(), message=(
                    f"Object {object_id.hex()} is lost and cannot be rebuilt: the task that made it "
                    "cannot be re-run (an actor task, or max_retries=0).")))
            return  # the task is running now; its result will arrive
        if task_id in self.rebuilding:
            return
        if task.retries_left == 0:
            self._fail(object_id, ObjectReconstructionFailedMaxAttemptsExceededError(object_id.hex(), message=(
                f"Object {object_id.hex()} is lost and cannot be rebuilt: the task {task.name} that makes it "
                f"has used all its retries (max_retries={task.spec.max_retries}).")))
            return
        if task.retries_left > 0:
            task.retries_left -= 1
        logger.info("rebuilding lost object %s by re-running %s", object_id.hex()[:12], task.name)
        self.rebuilding.add(task_id)
        for arg in task.arg_ids:
            if self.is_lost(arg):
                self.rebuild(arg)
        with core.lock:
            for oid in task.return_ids:
                r = core.refs.get(oid)
                if r is not None:
                    r.node_ids = set()
                    r.value_freed = False
            core.task_manager.pending[task_id] = task
            task.ev_done = False
        for oid in task.return_ids:
            core.memory_store.delete(oid)
        if not task.spec.disable_task_events:
            core.events.track(task)
        core.resubmit(task)

    def rebuilt(self, task_id: bytes) -> None:
        self.rebuilding.discard(task_id)

    def _fail(self, object_id: bytes, error: BaseException) -> None:
        data = serialize(error, is_error=True).to_bytes()
        self.core.memory_store.delete(object_id)
        self.core.memory_store.put(object_id, Entry(data, is_error=True))
