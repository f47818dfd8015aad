from nbray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReturnObject(_message.Message):
    __slots__ = ("object_id", "value")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    value: _common_pb2.SerializedValue
    def __init__(self, object_id: _Optional[bytes] = ..., value: _Optional[_Union[_common_pb2.SerializedValue, _Mapping]] = ...) -> None: ...

class PushTaskRequest(_message.Message):
    __slots__ = ("spec", "intended_worker_id", "resource_ids", "nested_refs_registered")
    class ResourceIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INTENDED_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    NESTED_REFS_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.TaskSpec
    intended_worker_id: bytes
    resource_ids: _containers.ScalarMap[str, str]
    nested_refs_registered: bool
    def __init__(self, spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., intended_worker_id: _Optional[bytes] = ..., resource_ids: _Optional[_Mapping[str, str]] = ..., nested_refs_registered: _Optional[bool] = ...) -> None: ...

class PushTaskReply(_message.Message):
    __slots__ = ("returns", "is_application_error", "exec_duration_us", "worker_exiting", "requeued", "was_cancelled", "num_generator_items", "exception_pickle", "actor_repr_name", "system_error", "packed_return_data", "packed_return_sizes")
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    IS_APPLICATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXEC_DURATION_US_FIELD_NUMBER: _ClassVar[int]
    WORKER_EXITING_FIELD_NUMBER: _ClassVar[int]
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    WAS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATOR_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_PICKLE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_REPR_NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    PACKED_RETURN_DATA_FIELD_NUMBER: _ClassVar[int]
    PACKED_RETURN_SIZES_FIELD_NUMBER: _ClassVar[int]
    returns: _containers.RepeatedCompositeFieldContainer[ReturnObject]
    is_application_error: bool
    exec_duration_us: int
    worker_exiting: bool
    requeued: bool
    was_cancelled: bool
    num_generator_items: int
    exception_pickle: bytes
    actor_repr_name: str
    system_error: _common_pb2.ErrorInfo
    packed_return_data: bytes
    packed_return_sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, returns: _Optional[_Iterable[_Union[ReturnObject, _Mapping]]] = ..., is_application_error: _Optional[bool] = ..., exec_duration_us: _Optional[int] = ..., worker_exiting: _Optional[bool] = ..., requeued: _Optional[bool] = ..., was_cancelled: _Optional[bool] = ..., num_generator_items: _Optional[int] = ..., exception_pickle: _Optional[bytes] = ..., actor_repr_name: _Optional[str] = ..., system_error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., packed_return_data: _Optional[bytes] = ..., packed_return_sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class GeneratorItemRequest(_message.Message):
    __slots__ = ("task_id", "index", "item", "attempt_number")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    index: int
    item: ReturnObject
    attempt_number: int
    def __init__(self, task_id: _Optional[bytes] = ..., index: _Optional[int] = ..., item: _Optional[_Union[ReturnObject, _Mapping]] = ..., attempt_number: _Optional[int] = ...) -> None: ...

class GeneratorItemReply(_message.Message):
    __slots__ = ("stop",)
    STOP_FIELD_NUMBER: _ClassVar[int]
    stop: bool
    def __init__(self, stop: _Optional[bool] = ...) -> None: ...

class GetObjectStatusRequest(_message.Message):
    __slots__ = ("object_id", "no_wait", "requester")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    no_wait: bool
    requester: _common_pb2.Address
    def __init__(self, object_id: _Optional[bytes] = ..., no_wait: _Optional[bool] = ..., requester: _Optional[_Union[_common_pb2.Address, _Mapping]] = ...) -> None: ...

class GetObjectStatusReply(_message.Message):
    __slots__ = ("status", "value", "node_ids", "size")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        READY: _ClassVar[GetObjectStatusReply.Status]
        PENDING: _ClassVar[GetObjectStatusReply.Status]
        OUT_OF_SCOPE: _ClassVar[GetObjectStatusReply.Status]
    READY: GetObjectStatusReply.Status
    PENDING: GetObjectStatusReply.Status
    OUT_OF_SCOPE: GetObjectStatusReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    status: GetObjectStatusReply.Status
    value: _common_pb2.SerializedValue
    node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    size: int
    def __init__(self, status: _Optional[_Union[GetObjectStatusReply.Status, str]] = ..., value: _Optional[_Union[_common_pb2.SerializedValue, _Mapping]] = ..., node_ids: _Optional[_Iterable[bytes]] = ..., size: _Optional[int] = ...) -> None: ...

class BorrowerDelta(_message.Message):
    __slots__ = ("object_id", "borrower", "delta")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    BORROWER_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    borrower: _common_pb2.Address
    delta: int
    def __init__(self, object_id: _Optional[bytes] = ..., borrower: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., delta: _Optional[int] = ...) -> None: ...

class UpdateBorrowersRequest(_message.Message):
    __slots__ = ("deltas",)
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    deltas: _containers.RepeatedCompositeFieldContainer[BorrowerDelta]
    def __init__(self, deltas: _Optional[_Iterable[_Union[BorrowerDelta, _Mapping]]] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "force", "recursive")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    force: bool
    recursive: bool
    def __init__(self, task_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., recursive: _Optional[bool] = ...) -> None: ...

class CancelTaskReply(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class ObjectLocationUpdate(_message.Message):
    __slots__ = ("object_id", "node_id", "added", "size")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    node_id: bytes
    added: bool
    size: int
    def __init__(self, object_id: _Optional[bytes] = ..., node_id: _Optional[bytes] = ..., added: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class UpdateObjectLocationsRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ObjectLocationUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ObjectLocationUpdate, _Mapping]]] = ...) -> None: ...

class GetObjectLocationsRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetObjectLocationsReply(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectNodes]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectNodes, _Mapping]]] = ...) -> None: ...

class ObjectNodes(_message.Message):
    __slots__ = ("object_id", "node_ids", "size", "out_of_scope", "error_value")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SCOPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_VALUE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    size: int
    out_of_scope: bool
    error_value: _common_pb2.SerializedValue
    def __init__(self, object_id: _Optional[bytes] = ..., node_ids: _Optional[_Iterable[bytes]] = ..., size: _Optional[int] = ..., out_of_scope: _Optional[bool] = ..., error_value: _Optional[_Union[_common_pb2.SerializedValue, _Mapping]] = ...) -> None: ...

class KillActorLocalRequest(_message.Message):
    __slots__ = ("force", "no_restart", "reason")
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    force: bool
    no_restart: bool
    reason: str
    def __init__(self, force: _Optional[bool] = ..., no_restart: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ReferenceStats(_message.Message):
    __slots__ = ("object_id", "owned", "local_refs", "submitted_task_refs", "contained_refs", "borrowers", "size", "task_status", "reference_type", "call_site", "owner", "node_id", "in_plasma")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    LOCAL_REFS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_TASK_REFS_FIELD_NUMBER: _ClassVar[int]
    CONTAINED_REFS_FIELD_NUMBER: _ClassVar[int]
    BORROWERS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CALL_SITE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    IN_PLASMA_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    owned: bool
    local_refs: int
    submitted_task_refs: int
    contained_refs: int
    borrowers: int
    size: int
    task_status: str
    reference_type: str
    call_site: str
    owner: _common_pb2.Address
    node_id: bytes
    in_plasma: bool
    def __init__(self, object_id: _Optional[bytes] = ..., owned: _Optional[bool] = ..., local_refs: _Optional[int] = ..., submitted_task_refs: _Optional[int] = ..., contained_refs: _Optional[int] = ..., borrowers: _Optional[int] = ..., size: _Optional[int] = ..., task_status: _Optional[str] = ..., reference_type: _Optional[str] = ..., call_site: _Optional[str] = ..., owner: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., node_id: _Optional[bytes] = ..., in_plasma: _Optional[bool] = ...) -> None: ...

class GetCoreWorkerStatsReply(_message.Message):
    __slots__ = ("address", "pid", "refs", "num_pending_tasks", "num_running_tasks", "job_id", "worker_type")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    NUM_PENDING_TASKS_FIELD_NUMBER: _ClassVar[int]
    NUM_RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    address: _common_pb2.Address
    pid: int
    refs: _containers.RepeatedCompositeFieldContainer[ReferenceStats]
    num_pending_tasks: int
    num_running_tasks: int
    job_id: bytes
    worker_type: str
    def __init__(self, address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., pid: _Optional[int] = ..., refs: _Optional[_Iterable[_Union[ReferenceStats, _Mapping]]] = ..., num_pending_tasks: _Optional[int] = ..., num_running_tasks: _Optional[int] = ..., job_id: _Optional[bytes] = ..., worker_type: _Optional[str] = ...) -> None: ...

class ExitRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...

class ExitReply(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...
