"""Packing a call's arguments into a task spec (caller side, any process).

Mixed into the core worker. Top-level ObjectRef arguments travel as
references (resolved before the task runs), refs nested in argument values
are counted as borrowed by the receiver, arguments too large to inline are
put in the object store first, and a child task takes its parent's
placement group (when that captures children) and runtime environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbray.common.serialization import serialize
from nbray.object_ref import ObjectRef
from nbray.protocol import common_pb2
from nbray.worker.context import TaskContext

if TYPE_CHECKING:
    from nbray.common.config import Config
    from nbray.worker.objects import ObjectAccess


class ArgumentPacking:
    """Argument handling of CoreWorker (which provides what is declared here)."""

    if TYPE_CHECKING:
        config: Config
        address: common_pb2.Address
        objects: ObjectAccess

        def parse_address(self, address: bytes) -> common_pb2.Address: ...

    def _inherit(self, spec: common_pb2.TaskSpec, ctx: TaskContext) -> bool:
        """Child tasks inherit the parent's placement group (when it captures
        them) and runtime environment. Returns True if the spec changed."""
        changed = False
        if ctx.runtime_env and ctx.runtime_env.get("env_vars"):
            # Only tasks with a runtime environment get here: the packaging
            # code it pulls in (zipfile, pathlib) stays out of every other process.
            from nbray.runtime_env.resolve import RUNTIME_ENV_VAR, merge_encoded

            own = spec.runtime_env.env_vars
            for k, v in ctx.runtime_env["env_vars"].items():
                if k not in own:
                    own[k] = v
                    changed = True
                elif k == RUNTIME_ENV_VAR and own[k] != v:  # fields merge one by one
                    merged = merge_encoded(v, own[k])
                    changed = changed or merged != own[k]
                    own[k] = merged
        s = spec.scheduling_strategy
        if not (ctx.capture_child_tasks and ctx.placement_group_id):
            return changed
        if (s.kind == common_pb2.SchedulingStrategy.DEFAULT
                and not spec.runtime_env.env_vars.get("__nbray_no_capture__")):
            from nbray.common.resources import placement_group_demand

            demand = placement_group_demand(ctx.placement_group_id, -1, dict(spec.resources))
            spec.resources.clear()
            spec.resources.update(demand)
            s.kind = common_pb2.SchedulingStrategy.PLACEMENT_GROUP
            s.placement_group_id = ctx.placement_group_id
            s.bundle_index = -1
            s.capture_child_tasks = True
            changed = True
        return changed

    def _pack_args(self, spec: common_pb2.TaskSpec, args: tuple[Any, ...] | list[Any],
                   kwargs: dict[str, Any]) -> tuple[list[bytes], list[ObjectRef]]:
        """Fill args_pickle, ref_args and nested_refs.

        Returns the ids of the objects the task holds while pending, and the
        refs to keep alive until those holds are registered.
        """
        return self._fill_args(spec, *self._serialize_args(spec.name, args, kwargs))

    def _serialize_args(self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
                        ) -> tuple[bytes, list[tuple[int, str, ObjectRef]], list[tuple[bytes, bytes]]]:
        """(the pickled call arguments, top-level ObjectRef arguments as
        (position, keyword, ref), refs nested inside the arguments)."""
        if not args and not kwargs:
            return _EMPTY_ARGS, [], []
        top: list[tuple[int, str, ObjectRef]] = []
        if any(type(a) is ObjectRef for a in args):
            top.extend((i, "", a) for i, a in enumerate(args) if type(a) is ObjectRef)
            args = tuple(None if type(a) is ObjectRef else a for a in args)
        if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
            top.extend((-1, k, v) for k, v in kwargs.items() if type(v) is ObjectRef)
            kwargs = {k: (None if type(v) is ObjectRef else v) for k, v in kwargs.items()}
        try:
            s = serialize((args, kwargs))
        except TypeError:
            raise TypeError(_bad_argument_message(task_name, args, kwargs)) from None
        if s.total_bytes > self.config.max_inline_object_bytes:
            args, kwargs, promoted = self._promote_large_args(list(args), dict(kwargs))
            top.extend(promoted)
            s = serialize((tuple(args), kwargs))
        return s.to_bytes(), top, s.nested_refs

    def _fill_args(self, spec: common_pb2.TaskSpec, args_pickle: bytes, top: list[tuple[int, str, ObjectRef]],
                   nested: list[tuple[bytes, bytes]]) -> tuple[list[bytes], list[ObjectRef]]:
        spec.args_pickle = args_pickle
        arg_ids: list[bytes] = []
        for position, keyword, ref in top:
            ra = spec.ref_args.add(position=position, keyword=keyword)
            ra.ref.object_id = ref._id
            ra.ref.owner.CopyFrom(self.parse_address(ref._owner) if ref._owner else self.address)
            arg_ids.append(ref._id)
        for oid, owner in nested:
            spec.nested_refs.add(object_id=oid, owner=self.parse_address(owner))
            arg_ids.append(oid)
        return arg_ids, [ref for _, _, ref in top]

    def _promote_large_args(self, args: list[Any], kwargs: dict[str, Any]
                            ) -> tuple[list[Any], dict[str, Any], list[tuple[int, str, ObjectRef]]]:
        """Arguments too big to inline become objects in the store."""
        promoted: list[tuple[int, str, ObjectRef]] = []
        limit = self.config.max_inline_object_bytes
        for i, a in enumerate(args):
            if a is None:
                continue
            part = serialize(a)
            if part.total_bytes > limit // 4:
                promoted.append((i, "", self.objects.put_serialized(part)))
                args[i] = None
        for k, v in list(kwargs.items()):
            if v is None:
                continue
            part = serialize(v)
            if part.total_bytes > limit // 4:
                promoted.append((-1, k, self.objects.put_serialized(part)))
                kwargs[k] = None
        return args, kwargs, promoted


_EMPTY_ARGS = serialize(((), {})).to_bytes()


def inherits_from(ctx: TaskContext) -> bool:
    """Whether child tasks of `ctx` may take something from it (see _inherit)."""
    env = ctx.runtime_env
    return bool(env and env.get("env_vars")) or bool(ctx.capture_child_tasks and ctx.placement_group_id)


def _bad_argument_message(task_name: str, args: Any, kwargs: dict[str, Any]) -> str:
    from nbray.common.serialization import find_unserializable

    for i, a in enumerate(args):
        try:
            serialize(a)
        except TypeError:
            return (f"Could not serialize argument {i} of {task_name}(): "
                    f"{find_unserializable(a)}. Arguments must be picklable (cloudpickle); "
                    "create such objects inside the task instead of passing them.")
    for k, v in kwargs.items():
        try:
            serialize(v)
        except TypeError:
            return (f"Could not serialize keyword argument {k!r} of {task_name}(): "
                    f"{find_unserializable(v)}. Arguments must be picklable (cloudpickle); "
                    "create such objects inside the task instead of passing them.")
    return f"Could not serialize the arguments of {task_name}()"
