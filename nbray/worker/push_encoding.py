"""A compact task's ``PushTaskRequest``, written straight to bytes (owner side).

Pushing a compact task (pending_task.py) the ordinary way builds its
``PushTaskRequest``: a copy of the shared spec template with a dozen fields
set, then serialized. On this hot path the copy and the serialization cost
more than anything else the owner does per task.

Protocol buffers allow a cheaper way: a message's encoding may repeat a
field, and a parser keeps the last value of a singular field. So the
template is serialized once, and each push appends only what differs
between tasks (ids, arguments, attempt, caller) to those bytes: the worker
parses exactly the message ``PendingTask.push_req`` would have built. A
template that already sets one of the per-task fields gets no such bytes
(``encode`` returns None), as appending could not clear that field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbray.worker.pending_task import PendingTask

_LEN = 2  # wire type of bytes, strings and messages
_VARINT = 0


def varint(n: int) -> bytes:
    """`n` (not negative) as a base-128 varint."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


# TaskSpec fields a compact task sets per call (numbers from common.proto).
_TASK_ID = _tag(1, _LEN)
_JOB_ID = _tag(2, _LEN)
_PARENT_TASK_ID = _tag(3, _LEN)
_NAME = _tag(5, _LEN)
_ARGS_PICKLE = _tag(7, _LEN)
_ATTEMPT = _tag(16, _VARINT)
_CALLER = _tag(17, _LEN)
_ACTOR_ID = _tag(18, _LEN)
_SEQUENCE_NUMBER = _tag(19, _VARINT)
_CALLER_HANDLE_ID = _tag(20, _LEN)
_CONTEXT_TAG = _tag(25, _LEN)
_NAMESPACE = _tag(27, _LEN)
_RETURN_BASE_ID = _tag(32, _LEN)
# PushTaskRequest fields (core_worker.proto), and a map entry's key and value.
_SPEC = _tag(1, _LEN)
_INTENDED_WORKER = _tag(2, _LEN)
_RESOURCE_IDS = _tag(3, _LEN)
_KEY = _tag(1, _LEN)
_VALUE = _tag(2, _LEN)

# The per-task fields, which a template must leave unset for its bytes to be reused.
_PER_TASK_FIELDS = ("task_id", "job_id", "parent_task_id", "args_pickle", "attempt_number", "caller",
                    "context_tag", "namespace", "return_base_id", "actor_id", "sequence_number",
                    "caller_handle_id")
_MAX_CACHED = 256


class _BytesCache:
    """Serialized forms of messages that never change once built, by identity."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, bytes | None]] = {}

    def get(self, message: Any, make: Any) -> bytes | None:
        hit = self._by_id.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        if len(self._by_id) >= _MAX_CACHED:
            self._by_id.clear()
        data = make(message)
        self._by_id[id(message)] = (message, data)  # holding it keeps its id from being reused
        return data


def _template_bytes(template: Any) -> bytes | None:
    for name in _PER_TASK_FIELDS:
        if name == "caller":
            if template.HasField("caller"):
                return None
        elif getattr(template, name):
            return None
    return template.SerializeToString()  # type: ignore[no-any-return]


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


_templates = _BytesCache()
_callers = _BytesCache()


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


def encode(task: PendingTask, worker_id: bytes, resource_ids: Mapping[str, str]) -> bytes | None:
    """The serialized ``PushTaskRequest`` of a compact task whose spec is not
    built, addressed to `worker_id` (if not empty); None if its template does
    not allow it."""
    spec = _templates.get(task.template, _template_bytes)
    if spec is None or task.caller is None:
        return None
    caller = _callers.get(task.caller, _serialize)
    assert caller is not None
    parts = [spec, _TASK_ID, varint(len(task.task_id)), task.task_id,
             _JOB_ID, varint(len(task.job_id)), task.job_id,
             _PARENT_TASK_ID, varint(len(task.parent_task_id)), task.parent_task_id,
             _CALLER, varint(len(caller)), caller,
             _ARGS_PICKLE, varint(len(task.args_pickle)), task.args_pickle,
             _RETURN_BASE_ID, varint(len(task.return_base_id)), task.return_base_id]
    if task.context_tag:
        parts.append(_field(_CONTEXT_TAG, task.context_tag.encode()))
    if task.namespace:
        parts.append(_field(_NAMESPACE, task.namespace.encode()))
    if task.name != task.template.name:
        parts.append(_field(_NAME, task.name.encode()))
    if task.attempt:
        parts.append(_ATTEMPT + varint(task.attempt))
    call = task.actor_call
    if call is not None:
        actor_id, sequence_number, handle_id = call
        parts.append(_field(_ACTOR_ID, actor_id))
        if sequence_number:
            parts.append(_SEQUENCE_NUMBER + varint(sequence_number))
        if handle_id:
            parts.append(_field(_CALLER_HANDLE_ID, handle_id))
    body = b"".join(parts)
    out = [_SPEC, varint(len(body)), body]
    if worker_id:
        out += [_INTENDED_WORKER, varint(len(worker_id)), worker_id]
    for key, value in resource_ids.items():
        entry = _field(_KEY, key.encode()) + _field(_VALUE, value.encode())
        out.append(_field(_RESOURCE_IDS, entry))
    return b"".join(out)
