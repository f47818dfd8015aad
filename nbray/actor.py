"""Actors: ``@nbray.remote`` on a class, handles and method calls.

``Cls.remote(*args)`` registers the actor with the GCS and returns an
``ActorHandle`` at once; ``handle.method.remote(*args)`` returns an
ObjectRef. Handles can be passed to tasks and other actors. A non-detached
actor stops when every handle to it is gone or its owner exits.
"""

from __future__ import annotations

import inspect
import itertools
import pickle
from typing import Any

from nbray import _options
from nbray._lazy import core as _core
from nbray.object_ref import ObjectRef, ObjectRefGenerator
from nbray.protocol import common_pb2
from nbray.worker import call_sites
from nbray.worker.function_manager import ExportedFunction

_SPECIAL_METHODS = ("__ray_ready__", "__ray_terminate__", "__ray_call__")


def method(*args: Any, **kwargs: Any) -> Any:
    """Options of one actor method: ``@nbray.method(num_returns=2)``.

    Also usable bare: ``@nbray.method``.
    """
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    if args:
        raise TypeError("nbray.method takes keyword arguments only, e.g. @nbray.method(num_returns=2)")
    _options.validate(kwargs, _options.METHOD_OPTIONS, "an actor method")

    def decorate(fn: Any) -> Any:
        fn.__nbray_method_options__ = dict(kwargs)
        return fn

    return decorate


class _MethodMeta:
    """What the caller needs to know about one method."""

    __slots__ = ("name", "num_returns", "is_generator", "max_task_retries", "retry_exceptions",
                 "enable_task_events")

    def __init__(self, name: str, fn: Any) -> None:
        opts = getattr(fn, "__nbray_method_options__", {})
        self.name = name
        self.is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.num_returns = opts.get("num_returns")
        self.max_task_retries = opts.get("max_task_retries")
        self.retry_exceptions = opts.get("retry_exceptions")
        self.enable_task_events = opts.get("enable_task_events")

    def __reduce__(self) -> Any:
        return _rebuild_meta, (self.name, self.num_returns, self.is_generator, self.max_task_retries,
                               self.retry_exceptions, self.enable_task_events)


def _rebuild_meta(name: str, num_returns: Any, is_generator: bool, max_task_retries: Any,
                  retry_exceptions: Any, enable_task_events: Any) -> _MethodMeta:
    meta = _MethodMeta.__new__(_MethodMeta)
    meta.name = name
    meta.num_returns = num_returns
    meta.is_generator = is_generator
    meta.max_task_retries = max_task_retries
    meta.retry_exceptions = retry_exceptions
    meta.enable_task_events = enable_task_events
    return meta


class ActorClass:
    """The result of ``@nbray.remote`` on a class."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = _options.validate(dict(options), _options.ACTOR_OPTIONS, f"actor {cls.__name__}")
        self._methods = {
            name: _MethodMeta(name, fn)
            for name, fn in inspect.getmembers(cls, lambda m: inspect.isfunction(m) or inspect.ismethod(m))
            if not name.startswith("__") or name in ("__call__",)
        }
        self._is_async = any(
            inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            for _, fn in inspect.getmembers(cls, inspect.isfunction))
        self._exported: ExportedFunction | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self._cls.__name__}()', "
            f"use '{self._cls.__name__}.remote()'.")

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._remote(args, kwargs, self._options)

    def options(self, **options: Any) -> _ActorClassWithOptions:
        merged = dict(self._options)
        merged.update(_options.validate(options, _options.ACTOR_OPTIONS, f"actor {self._cls.__name__}"))
        return _ActorClassWithOptions(self, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("nbray does not implement Ray DAGs (.bind)")

    def _remote(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> ActorHandle:
        core = _core()
        if self._exported is None or self._exported.outdated():
            self._exported = ExportedFunction(self._cls)
        core.register_function(self._exported)
        cls = self._cls
        name = options.get("name") or ""
        detached = options.get("lifetime") == "detached"
        max_concurrency = options.get("max_concurrency") or (1000 if self._is_async else 1)
        spec = common_pb2.TaskSpec(
            type=common_pb2.ACTOR_CREATION_TASK,
            name=f"{cls.__name__}.__init__",
            func_or_class_name=cls.__qualname__,
            num_returns=0,
            max_concurrency=max_concurrency,
            is_async_actor=self._is_async,
            max_task_retries=options.get("max_task_retries") or 0,
            disable_task_events=options.get("enable_task_events") is False,
        )
        spec.function.CopyFrom(self._exported.descriptor(include_body=True))
        resources = _options.resources_of(options, default_cpus=0.0)
        spec.resources.update(resources)
        placement = dict(resources)
        if options.get("num_cpus") is None:
            placement["CPU"] = 1.0  # default actors need a CPU to be placed, hold none
        spec.placement_resources.update(placement)
        _options.apply_runtime_env(spec, options)
        _options.apply_scheduling(spec, options, placement)
        max_task_retries = options.get("max_task_retries") or 0
        actor_id, info, handle_ref = core.create_actor(
            spec, args, kwargs, name=name, namespace=options.get("namespace"), detached=detached,
            max_restarts=options.get("max_restarts") or 0, get_if_exists=bool(options.get("get_if_exists")),
            class_name=cls.__name__,
            handle_metadata=pickle.dumps((cls.__name__, self._methods, max_task_retries)))
        return ActorHandle(actor_id, cls.__name__, self._methods, handle_ref, max_task_retries=max_task_retries)

    def __repr__(self) -> str:
        return f"<nbray actor class {self._cls.__qualname__}>"


class _ActorClassWithOptions:
    def __init__(self, actor_class: ActorClass, options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._actor_class._remote(args, kwargs, self._options)

    def options(self, **options: Any) -> _ActorClassWithOptions:
        merged = dict(self._options)
        merged.update(_options.validate(options, _options.ACTOR_OPTIONS, "actor"))
        return _ActorClassWithOptions(self._actor_class, merged)


class ActorHandle:
    """A reference to an actor; pickling it hands the actor to another process."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict[str, _MethodMeta],
                 handle_ref: ObjectRef | None, max_task_retries: int = 0) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._handle_ref = handle_ref
        self._max_task_retries = max_task_retries
        self._seq = itertools.count()
        self._templates: dict[Any, common_pb2.TaskSpec] = {}

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") and name not in _SPECIAL_METHODS and name not in self.__dict__.get("_methods", {}):
            raise AttributeError(name)
        methods = self.__dict__.get("_methods", {})
        if name not in methods and name not in _SPECIAL_METHODS:
            raise AttributeError(f"'{self._class_name}' actor has no method '{name}'")
        return ActorMethod(self, name, methods.get(name))

    def __reduce__(self) -> Any:
        return _rebuild_handle, (self._actor_id, self._class_name, self._methods, self._handle_ref,
                                 self._max_task_retries)

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def _repr_html_(self) -> str:
        from nbray.jupyter.reprs import actor_html

        return actor_html(self)

    @property
    def _ray_actor_id(self) -> Any:
        from nbray.common.ids import ActorID

        return ActorID(self._actor_id)

    def _template(self, method_name: str, meta: _MethodMeta | None, options: dict[str, Any]) -> common_pb2.TaskSpec:
        from nbray.remote_function import freeze

        frozen = freeze(options) if options else ()
        key = (method_name, frozen) if frozen is not None else None
        spec = self._templates.get(key) if key is not None else None
        if spec is not None:
            return spec
        num_returns = options.get("num_returns", meta.num_returns if meta is not None else None)
        is_generator = meta is not None and meta.is_generator
        streaming = num_returns in ("streaming", "dynamic") or (num_returns is None and is_generator)
        retries = options.get("max_task_retries")
        if retries is None:
            retries = meta.max_task_retries if meta is not None and meta.max_task_retries is not None \
                else self._max_task_retries
        spec = common_pb2.TaskSpec(
            type=common_pb2.ACTOR_TASK,
            name=f"{self._class_name}.{method_name}",
            func_or_class_name=f"{self._class_name}.{method_name}",
            method_name=method_name,
            num_returns=1 if streaming else (1 if num_returns is None else int(num_returns)),
            streaming_generator=streaming,
            dynamic_returns=num_returns == "dynamic",
            max_task_retries=retries,
            retry_exceptions=bool(options.get("retry_exceptions", meta.retry_exceptions if meta else False)),
            disable_task_events=options.get("enable_task_events") is False,
        )
        if key is not None:
            self._templates[key] = spec
        return spec


def _rebuild_handle(actor_id: bytes, class_name: str, methods: dict[str, _MethodMeta],
                    handle_ref: ObjectRef | None, max_task_retries: int) -> ActorHandle:
    handle = ActorHandle(actor_id, class_name, methods, handle_ref, max_task_retries)
    from nbray.object_ref import _core as core_holder

    core = core_holder[0]
    if core is not None:
        core.post(core.actor_submitter.track, actor_id)
    return handle


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, meta: _MethodMeta | None,
                 options: dict[str, Any] | None = None) -> None:
        self._handle = handle
        self._name = name
        self._meta = meta
        self._options = options or {}

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        core = _core()
        template = handle._template(self._name, self._meta, self._options)
        handle_ref = handle._handle_ref
        refs = core.submit_actor_task(handle._actor_id, template, args, kwargs, next(handle._seq),
                                      handle_id=handle_ref._id if handle_ref is not None else b"")
        call_sites.record(core, refs, "actor call")
        if template.dynamic_returns:
            return refs[0]  # its value: a DynamicObjectRefGenerator
        if template.streaming_generator:
            return ObjectRefGenerator(refs[0], core)
        if template.num_returns == 1:
            return refs[0]
        if template.num_returns == 0:
            return None
        return refs

    def options(self, **options: Any) -> ActorMethod:
        merged = dict(self._options)
        merged.update(_options.validate(options, _options.METHOD_OPTIONS, f"actor method {self._name}"))
        return ActorMethod(self._handle, self._name, self._meta, merged)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
            f"try 'object.{self._name}.remote()'.")

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("nbray does not implement Ray DAGs (.bind)")


def exit_actor() -> None:
    """Stop the current actor after this call: queued calls fail with
    ActorDiedError and atexit handlers run."""
    from nbray.object_ref import _core as core_holder
    from nbray.worker.executor import ActorExitRequested

    core = core_holder[0]
    if core is None or not core.actor_id:
        raise TypeError("exit_actor() may only be called inside an actor method")
    raise ActorExitRequested()


def handle_from_info(info: Any) -> ActorHandle:
    """A handle to an existing actor that does not keep it alive (get_actor)."""
    class_name, methods, max_task_retries = info.class_name, {}, 0
    if info.handle_metadata:
        class_name, methods, max_task_retries = pickle.loads(info.handle_metadata)
    return ActorHandle(info.actor_id, class_name, methods, None, max_task_retries)


__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]
