"""Remote functions: ``@nbray.remote`` on a function.

``f.remote(*args)`` submits a task and returns an ObjectRef at once (a
list for ``num_returns > 1``, an ObjectRefGenerator for generators; one
ref to a DynamicObjectRefGenerator for ``num_returns="dynamic"``).
``f.options(...)`` overrides options for one call site.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from nbray import _options
from nbray._lazy import core as _core
from nbray.object_ref import ObjectRef, ObjectRefGenerator
from nbray.protocol import common_pb2
from nbray.worker import call_sites
from nbray.worker.function_manager import ExportedFunction


class RemoteFunction:
    def __init__(self, function: Any, options: dict[str, Any]) -> None:
        if inspect.iscoroutinefunction(function):
            raise ValueError(
                f"'{function.__qualname__}' is an async function; async functions are only supported as "
                "actor methods (use an async actor) or run them with asyncio inside a sync task.")
        self._function = function
        self._options = _options.validate(dict(options), _options.TASK_OPTIONS,
                                           f"remote function {function.__qualname__}")
        self._is_generator = inspect.isgeneratorfunction(function)
        self._exported: ExportedFunction | None = None
        self._templates: dict[tuple[int, Any], common_pb2.TaskSpec] = {}
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._function.__name__
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{name}()', "
            f"try '{name}.remote()'.")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._remote(args, kwargs, self._options, _DEFAULT_KEY)

    def options(self, **options: Any) -> _FunctionWithOptions:
        merged = dict(self._options)
        merged.update(_options.validate(options, _options.TASK_OPTIONS,
                                        f"remote function {self._function.__qualname__}"))
        return _FunctionWithOptions(self, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("nbray does not implement Ray DAGs (.bind)")

    def _export(self, core: Any) -> ExportedFunction:
        if self._exported is None or self._exported.outdated():
            self._exported = ExportedFunction(self._function)
        core.register_function(self._exported)
        return self._exported

    def _template(self, core: Any, options: dict[str, Any], key: Any) -> common_pb2.TaskSpec:
        """The spec shared by calls with these options (cached by their value)."""
        cache_key = (id(core), key)
        exported = self._exported
        if exported is not None and exported.local_modules and exported.outdated():
            self._templates.clear()  # a module it carries was reloaded: export the new code
        spec = self._templates.get(cache_key) if key is not None else None
        if spec is not None:
            return spec
        exported = self._export(core)
        fn = self._function
        num_returns = options.get("num_returns")
        streaming = num_returns in ("streaming", "dynamic") or (num_returns is None and self._is_generator)
        spec = common_pb2.TaskSpec(
            type=common_pb2.NORMAL_TASK,
            name=options.get("name") or fn.__name__,
            func_or_class_name=f"{fn.__module__}.{fn.__qualname__}" if fn.__module__ != "__main__" else fn.__qualname__,
            num_returns=1 if streaming else (1 if num_returns is None else int(num_returns)),
            streaming_generator=streaming,
            dynamic_returns=num_returns == "dynamic",
            max_retries=core.config.task_max_retries if options.get("max_retries") is None
            else options["max_retries"],
            retry_exceptions=bool(options.get("retry_exceptions")),
            retry_exception_types=_options.retry_exception_types(options.get("retry_exceptions")),
            disable_task_events=options.get("enable_task_events") is False,
        )
        spec.function.CopyFrom(exported.descriptor(include_body=False))
        spec.resources.update(_options.resources_of(options, default_cpus=1.0))
        _options.apply_runtime_env(spec, options)
        _options.apply_scheduling(spec, options)
        if key is not None:
            if len(self._templates) > 64:
                self._templates.clear()
            self._templates[cache_key] = spec
        return spec

    def _remote(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
                key: Any) -> Any:
        core = _core()
        template = self._template(core, options, key)
        refs = core.submit_task(template, args, kwargs)
        call_sites.record(core, refs, "task call")
        if template.dynamic_returns:
            return refs[0]  # its value: a DynamicObjectRefGenerator
        if template.streaming_generator:
            return ObjectRefGenerator(refs[0], core)
        if template.num_returns == 1:
            return refs[0]
        if template.num_returns == 0:
            return None
        return refs

    def __repr__(self) -> str:
        return f"<nbray remote function {self._function.__qualname__}>"


class _FunctionWithOptions:
    """``f.options(...)``: a call site with its own options."""

    def __init__(self, fn: RemoteFunction, options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef | list[ObjectRef] | ObjectRefGenerator | None:
        # Options objects are short-lived: key the template by their value.
        return self._fn._remote(args, kwargs, self._options, freeze(self._options))  # type: ignore[no-any-return]

    def options(self, **options: Any) -> _FunctionWithOptions:
        merged = dict(self._options)
        merged.update(_options.validate(options, _options.TASK_OPTIONS, "remote function"))
        return _FunctionWithOptions(self._fn, merged)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


_DEFAULT_KEY = ("__default__",)


class _Uncacheable(Exception):
    pass


def freeze(value: Any) -> Any:
    """A hashable, value-compared form of options, or None if there is none
    (then the call builds its spec afresh rather than risk a wrong reuse)."""
    try:
        return _freeze(value)
    except _Uncacheable:
        return None


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_freeze(v) for v in value)
    if type(value).__hash__ is object.__hash__ and not isinstance(value, type):
        raise _Uncacheable  # identity-hashed: ids are reused after garbage collection
    try:
        hash(value)
    except TypeError:
        raise _Uncacheable from None
    return value
