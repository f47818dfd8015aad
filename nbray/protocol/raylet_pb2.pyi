from nbray.protocol import common_pb2 as _common_pb2
from nbray.protocol import gcs_pb2 as _gcs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("address", "worker_type", "pid", "job_id", "startup_token")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STARTUP_TOKEN_FIELD_NUMBER: _ClassVar[int]
    address: _common_pb2.Address
    worker_type: str
    pid: int
    job_id: bytes
    startup_token: int
    def __init__(self, address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., worker_type: _Optional[str] = ..., pid: _Optional[int] = ..., job_id: _Optional[bytes] = ..., startup_token: _Optional[int] = ...) -> None: ...

class RegisterWorkerReply(_message.Message):
    __slots__ = ("node_id", "node_ip", "gcs_address", "session_dir", "raylet_pid", "store_fd", "store_capacity_bytes", "raylet_port", "config_json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    GCS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PID_FIELD_NUMBER: _ClassVar[int]
    STORE_FD_FIELD_NUMBER: _ClassVar[int]
    STORE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    node_ip: str
    gcs_address: str
    session_dir: str
    raylet_pid: int
    store_fd: int
    store_capacity_bytes: int
    raylet_port: int
    config_json: str
    def __init__(self, node_id: _Optional[bytes] = ..., node_ip: _Optional[str] = ..., gcs_address: _Optional[str] = ..., session_dir: _Optional[str] = ..., raylet_pid: _Optional[int] = ..., store_fd: _Optional[int] = ..., store_capacity_bytes: _Optional[int] = ..., raylet_port: _Optional[int] = ..., config_json: _Optional[str] = ...) -> None: ...

class RequestWorkerLeaseRequest(_message.Message):
    __slots__ = ("lease_request_id", "resources", "placement_resources", "scheduling_strategy", "runtime_env", "owner", "is_actor_creation", "actor_id", "backlog_size", "grant_or_reject", "job_id", "locality_node_ids", "locality_bytes", "task_name", "prefer_local", "is_retriable")
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
    LEASE_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    IS_ACTOR_CREATION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRANT_OR_REJECT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    PREFER_LOCAL_FIELD_NUMBER: _ClassVar[int]
    IS_RETRIABLE_FIELD_NUMBER: _ClassVar[int]
    lease_request_id: int
    resources: _containers.ScalarMap[str, float]
    placement_resources: _containers.ScalarMap[str, float]
    scheduling_strategy: _common_pb2.SchedulingStrategy
    runtime_env: _common_pb2.RuntimeEnv
    owner: _common_pb2.Address
    is_actor_creation: bool
    actor_id: bytes
    backlog_size: int
    grant_or_reject: bool
    job_id: bytes
    locality_node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    locality_bytes: _containers.RepeatedScalarFieldContainer[int]
    task_name: str
    prefer_local: bool
    is_retriable: bool
    def __init__(self, lease_request_id: _Optional[int] = ..., resources: _Optional[_Mapping[str, float]] = ..., placement_resources: _Optional[_Mapping[str, float]] = ..., scheduling_strategy: _Optional[_Union[_common_pb2.SchedulingStrategy, _Mapping]] = ..., runtime_env: _Optional[_Union[_common_pb2.RuntimeEnv, _Mapping]] = ..., owner: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., is_actor_creation: _Optional[bool] = ..., actor_id: _Optional[bytes] = ..., backlog_size: _Optional[int] = ..., grant_or_reject: _Optional[bool] = ..., job_id: _Optional[bytes] = ..., locality_node_ids: _Optional[_Iterable[bytes]] = ..., locality_bytes: _Optional[_Iterable[int]] = ..., task_name: _Optional[str] = ..., prefer_local: _Optional[bool] = ..., is_retriable: _Optional[bool] = ...) -> None: ...

class GetWorkerFailureCauseRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: bytes
    def __init__(self, worker_id: _Optional[bytes] = ...) -> None: ...

class GetWorkerFailureCauseReply(_message.Message):
    __slots__ = ("failure",)
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    failure: _common_pb2.ErrorInfo
    def __init__(self, failure: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ...) -> None: ...

class RequestWorkerLeaseReply(_message.Message):
    __slots__ = ("status", "worker_address", "lease_id", "resource_ids", "retry_at_node_id", "retry_at_host", "retry_at_port", "message", "node_id", "worker_pid")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        GRANTED: _ClassVar[RequestWorkerLeaseReply.Status]
        SPILLBACK: _ClassVar[RequestWorkerLeaseReply.Status]
        REJECTED: _ClassVar[RequestWorkerLeaseReply.Status]
        CANCELED: _ClassVar[RequestWorkerLeaseReply.Status]
        UNSCHEDULABLE: _ClassVar[RequestWorkerLeaseReply.Status]
        RUNTIME_ENV_SETUP_FAILED: _ClassVar[RequestWorkerLeaseReply.Status]
    GRANTED: RequestWorkerLeaseReply.Status
    SPILLBACK: RequestWorkerLeaseReply.Status
    REJECTED: RequestWorkerLeaseReply.Status
    CANCELED: RequestWorkerLeaseReply.Status
    UNSCHEDULABLE: RequestWorkerLeaseReply.Status
    RUNTIME_ENV_SETUP_FAILED: RequestWorkerLeaseReply.Status
    class ResourceIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_HOST_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_PORT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    status: RequestWorkerLeaseReply.Status
    worker_address: _common_pb2.Address
    lease_id: int
    resource_ids: _containers.ScalarMap[str, str]
    retry_at_node_id: bytes
    retry_at_host: str
    retry_at_port: int
    message: str
    node_id: bytes
    worker_pid: int
    def __init__(self, status: _Optional[_Union[RequestWorkerLeaseReply.Status, str]] = ..., worker_address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., lease_id: _Optional[int] = ..., resource_ids: _Optional[_Mapping[str, str]] = ..., retry_at_node_id: _Optional[bytes] = ..., retry_at_host: _Optional[str] = ..., retry_at_port: _Optional[int] = ..., message: _Optional[str] = ..., node_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ...) -> None: ...

class CancelWorkerLeaseRequest(_message.Message):
    __slots__ = ("lease_request_id", "owner_worker_id")
    LEASE_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    lease_request_id: int
    owner_worker_id: bytes
    def __init__(self, lease_request_id: _Optional[int] = ..., owner_worker_id: _Optional[bytes] = ...) -> None: ...

class CancelWorkerLeaseReply(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class ReturnWorkerRequest(_message.Message):
    __slots__ = ("lease_id", "disconnect_worker", "reason")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_WORKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    disconnect_worker: bool
    reason: str
    def __init__(self, lease_id: _Optional[int] = ..., disconnect_worker: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerExitingRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class NotifyBlockedRequest(_message.Message):
    __slots__ = ("blocked",)
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    blocked: bool
    def __init__(self, blocked: _Optional[bool] = ...) -> None: ...

class CreateObjectRequest(_message.Message):
    __slots__ = ("object_id", "data_size", "owner")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    data_size: int
    owner: _common_pb2.Address
    def __init__(self, object_id: _Optional[bytes] = ..., data_size: _Optional[int] = ..., owner: _Optional[_Union[_common_pb2.Address, _Mapping]] = ...) -> None: ...

class CreateObjectReply(_message.Message):
    __slots__ = ("offset", "error", "already_exists", "fallback_path")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ALREADY_EXISTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_PATH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    error: str
    already_exists: bool
    fallback_path: str
    def __init__(self, offset: _Optional[int] = ..., error: _Optional[str] = ..., already_exists: _Optional[bool] = ..., fallback_path: _Optional[str] = ...) -> None: ...

class SealObjectRequest(_message.Message):
    __slots__ = ("object_id", "keep_pinned")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_PINNED_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    keep_pinned: bool
    def __init__(self, object_id: _Optional[bytes] = ..., keep_pinned: _Optional[bool] = ...) -> None: ...

class GetObjectsRequest(_message.Message):
    __slots__ = ("refs", "timeout_ms", "num_required", "check_only")
    REFS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CHECK_ONLY_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[_common_pb2.ObjectReference]
    timeout_ms: int
    num_required: int
    check_only: bool
    def __init__(self, refs: _Optional[_Iterable[_Union[_common_pb2.ObjectReference, _Mapping]]] = ..., timeout_ms: _Optional[int] = ..., num_required: _Optional[int] = ..., check_only: _Optional[bool] = ...) -> None: ...

class ObjectLocation(_message.Message):
    __slots__ = ("object_id", "ready", "offset", "data_size", "error", "fallback_path")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_PATH_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    ready: bool
    offset: int
    data_size: int
    error: _common_pb2.ErrorInfo
    fallback_path: str
    def __init__(self, object_id: _Optional[bytes] = ..., ready: _Optional[bool] = ..., offset: _Optional[int] = ..., data_size: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., fallback_path: _Optional[str] = ...) -> None: ...

class GetObjectsReply(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectLocation]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectLocation, _Mapping]]] = ...) -> None: ...

class ObjectIdsRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PullChunkRequest(_message.Message):
    __slots__ = ("object_id", "offset", "length")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    offset: int
    length: int
    def __init__(self, object_id: _Optional[bytes] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class PullChunkReply(_message.Message):
    __slots__ = ("total_size", "missing")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    missing: bool
    def __init__(self, total_size: _Optional[int] = ..., missing: _Optional[bool] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("worker_id", "pid", "worker_type", "is_idle", "job_id", "actor_id", "lease_id", "resources", "resource_ids", "blocked", "address")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ResourceIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WORKER_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_IDLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    worker_id: bytes
    pid: int
    worker_type: str
    is_idle: bool
    job_id: bytes
    actor_id: bytes
    lease_id: int
    resources: _containers.ScalarMap[str, float]
    resource_ids: _containers.ScalarMap[str, str]
    blocked: bool
    address: _common_pb2.Address
    def __init__(self, worker_id: _Optional[bytes] = ..., pid: _Optional[int] = ..., worker_type: _Optional[str] = ..., is_idle: _Optional[bool] = ..., job_id: _Optional[bytes] = ..., actor_id: _Optional[bytes] = ..., lease_id: _Optional[int] = ..., resources: _Optional[_Mapping[str, float]] = ..., resource_ids: _Optional[_Mapping[str, str]] = ..., blocked: _Optional[bool] = ..., address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ...) -> None: ...

class StoreObjectStats(_message.Message):
    __slots__ = ("object_id", "data_size", "owner", "where", "pin_count", "is_primary")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    PIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    IS_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    data_size: int
    owner: _common_pb2.Address
    where: str
    pin_count: int
    is_primary: bool
    def __init__(self, object_id: _Optional[bytes] = ..., data_size: _Optional[int] = ..., owner: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., where: _Optional[str] = ..., pin_count: _Optional[int] = ..., is_primary: _Optional[bool] = ...) -> None: ...

class GetNodeStatsRequest(_message.Message):
    __slots__ = ("include_objects", "include_workers")
    INCLUDE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    include_objects: bool
    include_workers: bool
    def __init__(self, include_objects: _Optional[bool] = ..., include_workers: _Optional[bool] = ...) -> None: ...

class GetNodeStatsReply(_message.Message):
    __slots__ = ("node_id", "total", "available", "store_capacity_bytes", "store_used_bytes", "store_spilled_bytes", "num_objects", "objects", "workers", "demands", "gpu_holders", "spilled_objects_total", "restored_objects_total", "bytes_pulled", "store_fallback_bytes", "fallback_objects", "fallback_objects_total")
    class TotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class GpuHoldersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STORE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORE_SPILLED_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DEMANDS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOLDERS_FIELD_NUMBER: _ClassVar[int]
    SPILLED_OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESTORED_OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_PULLED_FIELD_NUMBER: _ClassVar[int]
    STORE_FALLBACK_BYTES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    total: _containers.ScalarMap[str, float]
    available: _containers.ScalarMap[str, float]
    store_capacity_bytes: int
    store_used_bytes: int
    store_spilled_bytes: int
    num_objects: int
    objects: _containers.RepeatedCompositeFieldContainer[StoreObjectStats]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    demands: _containers.RepeatedCompositeFieldContainer[_gcs_pb2.ResourceDemand]
    gpu_holders: _containers.ScalarMap[str, bytes]
    spilled_objects_total: int
    restored_objects_total: int
    bytes_pulled: int
    store_fallback_bytes: int
    fallback_objects: int
    fallback_objects_total: int
    def __init__(self, node_id: _Optional[bytes] = ..., total: _Optional[_Mapping[str, float]] = ..., available: _Optional[_Mapping[str, float]] = ..., store_capacity_bytes: _Optional[int] = ..., store_used_bytes: _Optional[int] = ..., store_spilled_bytes: _Optional[int] = ..., num_objects: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[StoreObjectStats, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ..., demands: _Optional[_Iterable[_Union[_gcs_pb2.ResourceDemand, _Mapping]]] = ..., gpu_holders: _Optional[_Mapping[str, bytes]] = ..., spilled_objects_total: _Optional[int] = ..., restored_objects_total: _Optional[int] = ..., bytes_pulled: _Optional[int] = ..., store_fallback_bytes: _Optional[int] = ..., fallback_objects: _Optional[int] = ..., fallback_objects_total: _Optional[int] = ...) -> None: ...

class KillWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "force", "reason")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker_id: bytes
    force: bool
    reason: str
    def __init__(self, worker_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ShutdownRayletRequest(_message.Message):
    __slots__ = ("graceful",)
    GRACEFUL_FIELD_NUMBER: _ClassVar[int]
    graceful: bool
    def __init__(self, graceful: _Optional[bool] = ...) -> None: ...

class BundleSpec(_message.Message):
    __slots__ = ("placement_group_id", "bundle_index", "resources")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    bundle_index: int
    resources: _containers.ScalarMap[str, float]
    def __init__(self, placement_group_id: _Optional[bytes] = ..., bundle_index: _Optional[int] = ..., resources: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PrepareBundlesRequest(_message.Message):
    __slots__ = ("bundles", "commit")
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[BundleSpec]
    commit: bool
    def __init__(self, bundles: _Optional[_Iterable[_Union[BundleSpec, _Mapping]]] = ..., commit: _Optional[bool] = ...) -> None: ...

class PrepareBundlesReply(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class BundlesRequest(_message.Message):
    __slots__ = ("bundles",)
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[BundleSpec]
    def __init__(self, bundles: _Optional[_Iterable[_Union[BundleSpec, _Mapping]]] = ...) -> None: ...

class CancelBundlesRequest(_message.Message):
    __slots__ = ("placement_group_id",)
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    def __init__(self, placement_group_id: _Optional[bytes] = ...) -> None: ...

class SpawnWorkerRequest(_message.Message):
    __slots__ = ("startup_token", "env", "log_path")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STARTUP_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    startup_token: int
    env: _containers.ScalarMap[str, str]
    log_path: str
    def __init__(self, startup_token: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., log_path: _Optional[str] = ...) -> None: ...

class SpawnWorkerReply(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class WorkerExitedRequest(_message.Message):
    __slots__ = ("pid", "status")
    PID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    status: int
    def __init__(self, pid: _Optional[int] = ..., status: _Optional[int] = ...) -> None: ...
