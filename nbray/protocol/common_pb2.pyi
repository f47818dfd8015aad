from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValueFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_PICKLE: _ClassVar[ValueFormat]
    VALUE_ERROR: _ClassVar[ValueFormat]
    VALUE_IN_PLASMA: _ClassVar[ValueFormat]

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMAL_TASK: _ClassVar[TaskType]
    ACTOR_CREATION_TASK: _ClassVar[TaskType]
    ACTOR_TASK: _ClassVar[TaskType]
    DRIVER_TASK: _ClassVar[TaskType]

class ErrorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_NONE: _ClassVar[ErrorType]
    WORKER_DIED: _ClassVar[ErrorType]
    ACTOR_DIED: _ClassVar[ErrorType]
    TASK_EXECUTION_EXCEPTION: _ClassVar[ErrorType]
    OBJECT_LOST: _ClassVar[ErrorType]
    OWNER_DIED: _ClassVar[ErrorType]
    TASK_CANCELLED: _ClassVar[ErrorType]
    OBJECT_STORE_FULL: _ClassVar[ErrorType]
    NODE_DIED: _ClassVar[ErrorType]
    ACTOR_UNAVAILABLE: _ClassVar[ErrorType]
    TASK_UNSCHEDULABLE: _ClassVar[ErrorType]
    ACTOR_UNSCHEDULABLE: _ClassVar[ErrorType]
    RUNTIME_ENV_SETUP_FAILED: _ClassVar[ErrorType]
    OBJECT_RECONSTRUCTION_FAILED: _ClassVar[ErrorType]
    PLACEMENT_GROUP_REMOVED: _ClassVar[ErrorType]
    SYSTEM_ERROR: _ClassVar[ErrorType]
    OUT_OF_MEMORY: _ClassVar[ErrorType]
VALUE_PICKLE: ValueFormat
VALUE_ERROR: ValueFormat
VALUE_IN_PLASMA: ValueFormat
NORMAL_TASK: TaskType
ACTOR_CREATION_TASK: TaskType
ACTOR_TASK: TaskType
DRIVER_TASK: TaskType
ERROR_NONE: ErrorType
WORKER_DIED: ErrorType
ACTOR_DIED: ErrorType
TASK_EXECUTION_EXCEPTION: ErrorType
OBJECT_LOST: ErrorType
OWNER_DIED: ErrorType
TASK_CANCELLED: ErrorType
OBJECT_STORE_FULL: ErrorType
NODE_DIED: ErrorType
ACTOR_UNAVAILABLE: ErrorType
TASK_UNSCHEDULABLE: ErrorType
ACTOR_UNSCHEDULABLE: ErrorType
RUNTIME_ENV_SETUP_FAILED: ErrorType
OBJECT_RECONSTRUCTION_FAILED: ErrorType
PLACEMENT_GROUP_REMOVED: ErrorType
SYSTEM_ERROR: ErrorType
OUT_OF_MEMORY: ErrorType

class Address(_message.Message):
    __slots__ = ("worker_id", "node_id", "host", "port", "unix_path")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    UNIX_PATH_FIELD_NUMBER: _ClassVar[int]
    worker_id: bytes
    node_id: bytes
    host: str
    port: int
    unix_path: str
    def __init__(self, worker_id: _Optional[bytes] = ..., node_id: _Optional[bytes] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., unix_path: _Optional[str] = ...) -> None: ...

class ObjectReference(_message.Message):
    __slots__ = ("object_id", "owner")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    owner: Address
    def __init__(self, object_id: _Optional[bytes] = ..., owner: _Optional[_Union[Address, _Mapping]] = ...) -> None: ...

class SerializedValue(_message.Message):
    __slots__ = ("format", "data", "nested_refs", "plasma_node_id", "plasma_size")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NESTED_REFS_FIELD_NUMBER: _ClassVar[int]
    PLASMA_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PLASMA_SIZE_FIELD_NUMBER: _ClassVar[int]
    format: ValueFormat
    data: bytes
    nested_refs: _containers.RepeatedCompositeFieldContainer[ObjectReference]
    plasma_node_id: bytes
    plasma_size: int
    def __init__(self, format: _Optional[_Union[ValueFormat, str]] = ..., data: _Optional[bytes] = ..., nested_refs: _Optional[_Iterable[_Union[ObjectReference, _Mapping]]] = ..., plasma_node_id: _Optional[bytes] = ..., plasma_size: _Optional[int] = ...) -> None: ...

class FunctionDescriptor(_message.Message):
    __slots__ = ("function_id", "module_name", "qualname", "pickled")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALNAME_FIELD_NUMBER: _ClassVar[int]
    PICKLED_FIELD_NUMBER: _ClassVar[int]
    function_id: bytes
    module_name: str
    qualname: str
    pickled: bytes
    def __init__(self, function_id: _Optional[bytes] = ..., module_name: _Optional[str] = ..., qualname: _Optional[str] = ..., pickled: _Optional[bytes] = ...) -> None: ...

class RefArg(_message.Message):
    __slots__ = ("position", "keyword", "ref", "inline_value", "has_inline_value")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    INLINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    HAS_INLINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    position: int
    keyword: str
    ref: ObjectReference
    inline_value: SerializedValue
    has_inline_value: bool
    def __init__(self, position: _Optional[int] = ..., keyword: _Optional[str] = ..., ref: _Optional[_Union[ObjectReference, _Mapping]] = ..., inline_value: _Optional[_Union[SerializedValue, _Mapping]] = ..., has_inline_value: _Optional[bool] = ...) -> None: ...

class SchedulingStrategy(_message.Message):
    __slots__ = ("kind", "node_id", "soft", "placement_group_id", "bundle_index", "capture_child_tasks")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEFAULT: _ClassVar[SchedulingStrategy.Kind]
        SPREAD: _ClassVar[SchedulingStrategy.Kind]
        NODE_AFFINITY: _ClassVar[SchedulingStrategy.Kind]
        PLACEMENT_GROUP: _ClassVar[SchedulingStrategy.Kind]
    DEFAULT: SchedulingStrategy.Kind
    SPREAD: SchedulingStrategy.Kind
    NODE_AFFINITY: SchedulingStrategy.Kind
    PLACEMENT_GROUP: SchedulingStrategy.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_CHILD_TASKS_FIELD_NUMBER: _ClassVar[int]
    kind: SchedulingStrategy.Kind
    node_id: bytes
    soft: bool
    placement_group_id: bytes
    bundle_index: int
    capture_child_tasks: bool
    def __init__(self, kind: _Optional[_Union[SchedulingStrategy.Kind, str]] = ..., node_id: _Optional[bytes] = ..., soft: _Optional[bool] = ..., placement_group_id: _Optional[bytes] = ..., bundle_index: _Optional[int] = ..., capture_child_tasks: _Optional[bool] = ...) -> None: ...

class RuntimeEnv(_message.Message):
    __slots__ = ("env_vars",)
    class EnvVarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_VARS_FIELD_NUMBER: _ClassVar[int]
    env_vars: _containers.ScalarMap[str, str]
    def __init__(self, env_vars: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("task_id", "job_id", "parent_task_id", "type", "name", "function", "args_pickle", "ref_args", "nested_refs", "num_returns", "streaming_generator", "resources", "max_retries", "retry_exceptions", "retry_exception_types", "attempt_number", "caller", "actor_id", "sequence_number", "caller_handle_id", "max_concurrency", "is_async_actor", "runtime_env", "scheduling_strategy", "context_tag", "actor_name", "namespace", "method_name", "max_task_retries", "func_or_class_name", "disable_task_events", "return_base_id", "placement_resources", "dynamic_returns")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class PlacementResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ARGS_PICKLE_FIELD_NUMBER: _ClassVar[int]
    REF_ARGS_FIELD_NUMBER: _ClassVar[int]
    NESTED_REFS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    STREAMING_GENERATOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTION_TYPES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CALLER_HANDLE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_ACTOR_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    ACTOR_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_TASK_RETRIES_FIELD_NUMBER: _ClassVar[int]
    FUNC_OR_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLE_TASK_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_RETURNS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    job_id: bytes
    parent_task_id: bytes
    type: TaskType
    name: str
    function: FunctionDescriptor
    args_pickle: bytes
    ref_args: _containers.RepeatedCompositeFieldContainer[RefArg]
    nested_refs: _containers.RepeatedCompositeFieldContainer[ObjectReference]
    num_returns: int
    streaming_generator: bool
    resources: _containers.ScalarMap[str, float]
    max_retries: int
    retry_exceptions: bool
    retry_exception_types: bytes
    attempt_number: int
    caller: Address
    actor_id: bytes
    sequence_number: int
    caller_handle_id: bytes
    max_concurrency: int
    is_async_actor: bool
    runtime_env: RuntimeEnv
    scheduling_strategy: SchedulingStrategy
    context_tag: str
    actor_name: str
    namespace: str
    method_name: str
    max_task_retries: int
    func_or_class_name: str
    disable_task_events: bool
    return_base_id: bytes
    placement_resources: _containers.ScalarMap[str, float]
    dynamic_returns: bool
    def __init__(self, task_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., type: _Optional[_Union[TaskType, str]] = ..., name: _Optional[str] = ..., function: _Optional[_Union[FunctionDescriptor, _Mapping]] = ..., args_pickle: _Optional[bytes] = ..., ref_args: _Optional[_Iterable[_Union[RefArg, _Mapping]]] = ..., nested_refs: _Optional[_Iterable[_Union[ObjectReference, _Mapping]]] = ..., num_returns: _Optional[int] = ..., streaming_generator: _Optional[bool] = ..., resources: _Optional[_Mapping[str, float]] = ..., max_retries: _Optional[int] = ..., retry_exceptions: _Optional[bool] = ..., retry_exception_types: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., caller: _Optional[_Union[Address, _Mapping]] = ..., actor_id: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., caller_handle_id: _Optional[bytes] = ..., max_concurrency: _Optional[int] = ..., is_async_actor: _Optional[bool] = ..., runtime_env: _Optional[_Union[RuntimeEnv, _Mapping]] = ..., scheduling_strategy: _Optional[_Union[SchedulingStrategy, _Mapping]] = ..., context_tag: _Optional[str] = ..., actor_name: _Optional[str] = ..., namespace: _Optional[str] = ..., method_name: _Optional[str] = ..., max_task_retries: _Optional[int] = ..., func_or_class_name: _Optional[str] = ..., disable_task_events: _Optional[bool] = ..., return_base_id: _Optional[bytes] = ..., placement_resources: _Optional[_Mapping[str, float]] = ..., dynamic_returns: _Optional[bool] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("type", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: ErrorType
    message: str
    def __init__(self, type: _Optional[_Union[ErrorType, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ResourceSet(_message.Message):
    __slots__ = ("amounts",)
    class AmountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.ScalarMap[str, float]
    def __init__(self, amounts: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RpcError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("nbray_version", "python_version", "role")
    NBRAY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    nbray_version: str
    python_version: str
    role: str
    def __init__(self, nbray_version: _Optional[str] = ..., python_version: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("error", "nbray_version", "python_version")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NBRAY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    error: str
    nbray_version: str
    python_version: str
    def __init__(self, error: _Optional[str] = ..., nbray_version: _Optional[str] = ..., python_version: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
