from nbray.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NIL: _ClassVar[TaskState]
    PENDING_ARGS_AVAIL: _ClassVar[TaskState]
    PENDING_NODE_ASSIGNMENT: _ClassVar[TaskState]
    SUBMITTED_TO_WORKER: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    RUNNING_IN_RAY_GET: _ClassVar[TaskState]
    RUNNING_IN_RAY_WAIT: _ClassVar[TaskState]
    FINISHED: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    PENDING_ARGS_FETCH: _ClassVar[TaskState]
    PENDING_ACTOR_TASK_ARGS_FETCH: _ClassVar[TaskState]
    PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY: _ClassVar[TaskState]
    GETTING_AND_PINNING_ARGS: _ClassVar[TaskState]
    PENDING_OBJ_STORE_MEM_AVAIL: _ClassVar[TaskState]

class MetricKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_COUNTER: _ClassVar[MetricKind]
    METRIC_GAUGE: _ClassVar[MetricKind]
    METRIC_HISTOGRAM: _ClassVar[MetricKind]

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_NONE: _ClassVar[Channel]
    ACTOR: _ClassVar[Channel]
    NODE: _ClassVar[Channel]
    WORKER_FAILURE: _ClassVar[Channel]
    LOGS: _ClassVar[Channel]
    RESOURCE_VIEW: _ClassVar[Channel]
    PLACEMENT_GROUP: _ClassVar[Channel]
    JOB: _ClassVar[Channel]
    TASK: _ClassVar[Channel]
NIL: TaskState
PENDING_ARGS_AVAIL: TaskState
PENDING_NODE_ASSIGNMENT: TaskState
SUBMITTED_TO_WORKER: TaskState
RUNNING: TaskState
RUNNING_IN_RAY_GET: TaskState
RUNNING_IN_RAY_WAIT: TaskState
FINISHED: TaskState
FAILED: TaskState
PENDING_ARGS_FETCH: TaskState
PENDING_ACTOR_TASK_ARGS_FETCH: TaskState
PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY: TaskState
GETTING_AND_PINNING_ARGS: TaskState
PENDING_OBJ_STORE_MEM_AVAIL: TaskState
METRIC_COUNTER: MetricKind
METRIC_GAUGE: MetricKind
METRIC_HISTOGRAM: MetricKind
CHANNEL_NONE: Channel
ACTOR: Channel
NODE: Channel
WORKER_FAILURE: Channel
LOGS: Channel
RESOURCE_VIEW: Channel
PLACEMENT_GROUP: Channel
JOB: Channel
TASK: Channel

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "node_ip", "hostname", "raylet_port", "raylet_socket", "state", "resources_total", "labels", "is_head", "start_time_ms", "end_time_ms", "death_reason", "death_reason_message", "object_store_bytes", "nbray_version", "session_dir", "node_name", "raylet_pid", "host_key")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ALIVE: _ClassVar[NodeInfo.State]
        DEAD: _ClassVar[NodeInfo.State]
    ALIVE: NodeInfo.State
    DEAD: NodeInfo.State
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    RAYLET_SOCKET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IS_HEAD_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NBRAY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PID_FIELD_NUMBER: _ClassVar[int]
    HOST_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    node_ip: str
    hostname: str
    raylet_port: int
    raylet_socket: str
    state: NodeInfo.State
    resources_total: _containers.ScalarMap[str, float]
    labels: _containers.ScalarMap[str, str]
    is_head: bool
    start_time_ms: int
    end_time_ms: int
    death_reason: str
    death_reason_message: str
    object_store_bytes: int
    nbray_version: str
    session_dir: str
    node_name: str
    raylet_pid: int
    host_key: str
    def __init__(self, node_id: _Optional[bytes] = ..., node_ip: _Optional[str] = ..., hostname: _Optional[str] = ..., raylet_port: _Optional[int] = ..., raylet_socket: _Optional[str] = ..., state: _Optional[_Union[NodeInfo.State, str]] = ..., resources_total: _Optional[_Mapping[str, float]] = ..., labels: _Optional[_Mapping[str, str]] = ..., is_head: _Optional[bool] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., death_reason: _Optional[str] = ..., death_reason_message: _Optional[str] = ..., object_store_bytes: _Optional[int] = ..., nbray_version: _Optional[str] = ..., session_dir: _Optional[str] = ..., node_name: _Optional[str] = ..., raylet_pid: _Optional[int] = ..., host_key: _Optional[str] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeReply(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: bytes
    def __init__(self, cluster_id: _Optional[bytes] = ...) -> None: ...

class UnregisterNodeRequest(_message.Message):
    __slots__ = ("node_id", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    reason: str
    def __init__(self, node_id: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class GetAllNodeInfoReply(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class ResourceDemand(_message.Message):
    __slots__ = ("shape", "count", "infeasible")
    class ShapeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.ScalarMap[str, float]
    count: int
    infeasible: bool
    def __init__(self, shape: _Optional[_Mapping[str, float]] = ..., count: _Optional[int] = ..., infeasible: _Optional[bool] = ...) -> None: ...

class ReportResourcesRequest(_message.Message):
    __slots__ = ("node_id", "available", "total", "demands", "object_store_used_bytes", "object_store_spilled_bytes", "version")
    class AvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DEMANDS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_SPILLED_BYTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    available: _containers.ScalarMap[str, float]
    total: _containers.ScalarMap[str, float]
    demands: _containers.RepeatedCompositeFieldContainer[ResourceDemand]
    object_store_used_bytes: int
    object_store_spilled_bytes: int
    version: int
    def __init__(self, node_id: _Optional[bytes] = ..., available: _Optional[_Mapping[str, float]] = ..., total: _Optional[_Mapping[str, float]] = ..., demands: _Optional[_Iterable[_Union[ResourceDemand, _Mapping]]] = ..., object_store_used_bytes: _Optional[int] = ..., object_store_spilled_bytes: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class NodeResources(_message.Message):
    __slots__ = ("node_id", "available", "total", "pending", "node_ip", "raylet_port", "object_store_used_bytes", "object_store_spilled_bytes", "object_store_bytes")
    class AvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_SPILLED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    available: _containers.ScalarMap[str, float]
    total: _containers.ScalarMap[str, float]
    pending: int
    node_ip: str
    raylet_port: int
    object_store_used_bytes: int
    object_store_spilled_bytes: int
    object_store_bytes: int
    def __init__(self, node_id: _Optional[bytes] = ..., available: _Optional[_Mapping[str, float]] = ..., total: _Optional[_Mapping[str, float]] = ..., pending: _Optional[int] = ..., node_ip: _Optional[str] = ..., raylet_port: _Optional[int] = ..., object_store_used_bytes: _Optional[int] = ..., object_store_spilled_bytes: _Optional[int] = ..., object_store_bytes: _Optional[int] = ...) -> None: ...

class ResourceView(_message.Message):
    __slots__ = ("nodes", "full", "removed_node_ids")
    NODES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeResources]
    full: bool
    removed_node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeResources, _Mapping]]] = ..., full: _Optional[bool] = ..., removed_node_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetClusterStatusReply(_message.Message):
    __slots__ = ("nodes", "demands", "pending_placement_groups", "dead_nodes", "pending_actors")
    NODES_FIELD_NUMBER: _ClassVar[int]
    DEMANDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_PLACEMENT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEAD_NODES_FIELD_NUMBER: _ClassVar[int]
    PENDING_ACTORS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeResources]
    demands: _containers.RepeatedCompositeFieldContainer[ResourceDemand]
    pending_placement_groups: _containers.RepeatedCompositeFieldContainer[PlacementGroupInfo]
    dead_nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    pending_actors: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeResources, _Mapping]]] = ..., demands: _Optional[_Iterable[_Union[ResourceDemand, _Mapping]]] = ..., pending_placement_groups: _Optional[_Iterable[_Union[PlacementGroupInfo, _Mapping]]] = ..., dead_nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., pending_actors: _Optional[int] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "driver", "driver_pid", "namespace", "start_time_ms", "end_time_ms", "is_dead", "entrypoint", "runtime_env")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    IS_DEAD_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    driver: _common_pb2.Address
    driver_pid: int
    namespace: str
    start_time_ms: int
    end_time_ms: int
    is_dead: bool
    entrypoint: str
    runtime_env: _common_pb2.RuntimeEnv
    def __init__(self, job_id: _Optional[bytes] = ..., driver: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., driver_pid: _Optional[int] = ..., namespace: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., is_dead: _Optional[bool] = ..., entrypoint: _Optional[str] = ..., runtime_env: _Optional[_Union[_common_pb2.RuntimeEnv, _Mapping]] = ...) -> None: ...

class AddJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ...) -> None: ...

class AddJobReply(_message.Message):
    __slots__ = ("job_id", "namespace")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    namespace: str
    def __init__(self, job_id: _Optional[bytes] = ..., namespace: _Optional[str] = ...) -> None: ...

class MarkJobFinishedRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    def __init__(self, job_id: _Optional[bytes] = ...) -> None: ...

class GetAllJobInfoReply(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class ActorInfo(_message.Message):
    __slots__ = ("actor_id", "job_id", "state", "address", "node_id", "pid", "name", "namespace", "class_name", "num_restarts", "max_restarts", "death_cause", "init_error", "is_detached", "owner", "required_resources", "placement_group_id", "repr_name", "is_async", "max_concurrency", "timestamp_ms", "preempted", "handle_metadata")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEPENDENCIES_UNREADY: _ClassVar[ActorInfo.State]
        PENDING_CREATION: _ClassVar[ActorInfo.State]
        ALIVE: _ClassVar[ActorInfo.State]
        RESTARTING: _ClassVar[ActorInfo.State]
        DEAD: _ClassVar[ActorInfo.State]
    DEPENDENCIES_UNREADY: ActorInfo.State
    PENDING_CREATION: ActorInfo.State
    ALIVE: ActorInfo.State
    RESTARTING: ActorInfo.State
    DEAD: ActorInfo.State
    class RequiredResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    INIT_ERROR_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPR_NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTED_FIELD_NUMBER: _ClassVar[int]
    HANDLE_METADATA_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    job_id: bytes
    state: ActorInfo.State
    address: _common_pb2.Address
    node_id: bytes
    pid: int
    name: str
    namespace: str
    class_name: str
    num_restarts: int
    max_restarts: int
    death_cause: _common_pb2.ErrorInfo
    init_error: bytes
    is_detached: bool
    owner: _common_pb2.Address
    required_resources: _containers.ScalarMap[str, float]
    placement_group_id: bytes
    repr_name: str
    is_async: bool
    max_concurrency: int
    timestamp_ms: int
    preempted: bool
    handle_metadata: bytes
    def __init__(self, actor_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., state: _Optional[_Union[ActorInfo.State, str]] = ..., address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., node_id: _Optional[bytes] = ..., pid: _Optional[int] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., class_name: _Optional[str] = ..., num_restarts: _Optional[int] = ..., max_restarts: _Optional[int] = ..., death_cause: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., init_error: _Optional[bytes] = ..., is_detached: _Optional[bool] = ..., owner: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., required_resources: _Optional[_Mapping[str, float]] = ..., placement_group_id: _Optional[bytes] = ..., repr_name: _Optional[str] = ..., is_async: _Optional[bool] = ..., max_concurrency: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., preempted: _Optional[bool] = ..., handle_metadata: _Optional[bytes] = ...) -> None: ...

class RegisterActorRequest(_message.Message):
    __slots__ = ("creation_spec", "detached", "name", "namespace", "max_restarts", "get_if_exists", "class_name", "handle_metadata")
    CREATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    GET_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    HANDLE_METADATA_FIELD_NUMBER: _ClassVar[int]
    creation_spec: _common_pb2.TaskSpec
    detached: bool
    name: str
    namespace: str
    max_restarts: int
    get_if_exists: bool
    class_name: str
    handle_metadata: bytes
    def __init__(self, creation_spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., detached: _Optional[bool] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., max_restarts: _Optional[int] = ..., get_if_exists: _Optional[bool] = ..., class_name: _Optional[str] = ..., handle_metadata: _Optional[bytes] = ...) -> None: ...

class RegisterActorReply(_message.Message):
    __slots__ = ("actor", "existed")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    actor: ActorInfo
    existed: bool
    def __init__(self, actor: _Optional[_Union[ActorInfo, _Mapping]] = ..., existed: _Optional[bool] = ...) -> None: ...

class GetActorInfoRequest(_message.Message):
    __slots__ = ("actor_id",)
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    def __init__(self, actor_id: _Optional[bytes] = ...) -> None: ...

class GetActorInfoReply(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: ActorInfo
    def __init__(self, actor: _Optional[_Union[ActorInfo, _Mapping]] = ...) -> None: ...

class GetNamedActorRequest(_message.Message):
    __slots__ = ("name", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListNamedActorsRequest(_message.Message):
    __slots__ = ("all_namespaces", "namespace")
    ALL_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    all_namespaces: bool
    namespace: str
    def __init__(self, all_namespaces: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...

class ListNamedActorsReply(_message.Message):
    __slots__ = ("namespaces", "names")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespaces: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class KillActorRequest(_message.Message):
    __slots__ = ("actor_id", "force_kill", "no_restart", "reason")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_KILL_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    force_kill: bool
    no_restart: bool
    reason: str
    def __init__(self, actor_id: _Optional[bytes] = ..., force_kill: _Optional[bool] = ..., no_restart: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetAllActorInfoRequest(_message.Message):
    __slots__ = ("job_id", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    limit: int
    def __init__(self, job_id: _Optional[bytes] = ..., limit: _Optional[int] = ...) -> None: ...

class GetAllActorInfoReply(_message.Message):
    __slots__ = ("actors", "num_truncated")
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    NUM_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    actors: _containers.RepeatedCompositeFieldContainer[ActorInfo]
    num_truncated: int
    def __init__(self, actors: _Optional[_Iterable[_Union[ActorInfo, _Mapping]]] = ..., num_truncated: _Optional[int] = ...) -> None: ...

class WorkerFailure(_message.Message):
    __slots__ = ("address", "pid", "intended", "message", "is_driver", "node_died")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    INTENDED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    IS_DRIVER_FIELD_NUMBER: _ClassVar[int]
    NODE_DIED_FIELD_NUMBER: _ClassVar[int]
    address: _common_pb2.Address
    pid: int
    intended: bool
    message: str
    is_driver: bool
    node_died: bool
    def __init__(self, address: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., pid: _Optional[int] = ..., intended: _Optional[bool] = ..., message: _Optional[str] = ..., is_driver: _Optional[bool] = ..., node_died: _Optional[bool] = ...) -> None: ...

class KVGetRequest(_message.Message):
    __slots__ = ("ns", "key")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...

class KVGetReply(_message.Message):
    __slots__ = ("found", "value")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class KVPutRequest(_message.Message):
    __slots__ = ("ns", "key", "value", "overwrite", "request_id")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    value: bytes
    overwrite: bool
    request_id: bytes
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., overwrite: _Optional[bool] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class KVPutReply(_message.Message):
    __slots__ = ("added",)
    ADDED_FIELD_NUMBER: _ClassVar[int]
    added: bool
    def __init__(self, added: _Optional[bool] = ...) -> None: ...

class KVDelRequest(_message.Message):
    __slots__ = ("ns", "key", "by_prefix", "request_id")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: bytes
    by_prefix: bool
    request_id: bytes
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[bytes] = ..., by_prefix: _Optional[bool] = ..., request_id: _Optional[bytes] = ...) -> None: ...

class KVDelReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class KVKeysRequest(_message.Message):
    __slots__ = ("ns", "prefix")
    NS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ns: str
    prefix: bytes
    def __init__(self, ns: _Optional[str] = ..., prefix: _Optional[bytes] = ...) -> None: ...

class KVKeysReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("type", "name", "func_or_class_name", "job_id", "parent_task_id", "required_resources", "actor_id", "placement_group_id", "arg_object_ids", "return_object_ids", "context_tag", "caller_node_id", "caller")
    class RequiredResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNC_OR_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ARG_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    CALLER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    type: _common_pb2.TaskType
    name: str
    func_or_class_name: str
    job_id: bytes
    parent_task_id: bytes
    required_resources: _containers.ScalarMap[str, float]
    actor_id: bytes
    placement_group_id: bytes
    arg_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    return_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    context_tag: str
    caller_node_id: bytes
    caller: _common_pb2.Address
    def __init__(self, type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., name: _Optional[str] = ..., func_or_class_name: _Optional[str] = ..., job_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., required_resources: _Optional[_Mapping[str, float]] = ..., actor_id: _Optional[bytes] = ..., placement_group_id: _Optional[bytes] = ..., arg_object_ids: _Optional[_Iterable[bytes]] = ..., return_object_ids: _Optional[_Iterable[bytes]] = ..., context_tag: _Optional[str] = ..., caller_node_id: _Optional[bytes] = ..., caller: _Optional[_Union[_common_pb2.Address, _Mapping]] = ...) -> None: ...

class TaskEventRecord(_message.Message):
    __slots__ = ("task_id", "attempt_number", "info", "has_info", "states", "state_ts_ns", "node_id", "worker_id", "worker_pid", "error", "error_traceback", "actor_repr_name")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    HAS_INFO_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    STATE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ACTOR_REPR_NAME_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    info: TaskInfo
    has_info: bool
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    state_ts_ns: _containers.RepeatedScalarFieldContainer[int]
    node_id: bytes
    worker_id: bytes
    worker_pid: int
    error: _common_pb2.ErrorInfo
    error_traceback: str
    actor_repr_name: str
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., info: _Optional[_Union[TaskInfo, _Mapping]] = ..., has_info: _Optional[bool] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., state_ts_ns: _Optional[_Iterable[int]] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., error_traceback: _Optional[str] = ..., actor_repr_name: _Optional[str] = ...) -> None: ...

class TaskEventColumns(_message.Message):
    __slots__ = ("task_ids", "attempts", "num_states", "states", "state_ts_ns", "info_index", "infos", "num_args", "arg_ids", "num_returns", "return_ids", "running_task_ids", "running_attempts", "running_ts_ns", "node_id", "worker_id", "worker_pid")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NUM_STATES_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    STATE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    INFO_INDEX_FIELD_NUMBER: _ClassVar[int]
    INFOS_FIELD_NUMBER: _ClassVar[int]
    NUM_ARGS_FIELD_NUMBER: _ClassVar[int]
    ARG_IDS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    RETURN_IDS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    task_ids: bytes
    attempts: _containers.RepeatedScalarFieldContainer[int]
    num_states: _containers.RepeatedScalarFieldContainer[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    state_ts_ns: _containers.RepeatedScalarFieldContainer[int]
    info_index: _containers.RepeatedScalarFieldContainer[int]
    infos: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    num_args: _containers.RepeatedScalarFieldContainer[int]
    arg_ids: bytes
    num_returns: _containers.RepeatedScalarFieldContainer[int]
    return_ids: bytes
    running_task_ids: bytes
    running_attempts: _containers.RepeatedScalarFieldContainer[int]
    running_ts_ns: _containers.RepeatedScalarFieldContainer[int]
    node_id: bytes
    worker_id: bytes
    worker_pid: int
    def __init__(self, task_ids: _Optional[bytes] = ..., attempts: _Optional[_Iterable[int]] = ..., num_states: _Optional[_Iterable[int]] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., state_ts_ns: _Optional[_Iterable[int]] = ..., info_index: _Optional[_Iterable[int]] = ..., infos: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., num_args: _Optional[_Iterable[int]] = ..., arg_ids: _Optional[bytes] = ..., num_returns: _Optional[_Iterable[int]] = ..., return_ids: _Optional[bytes] = ..., running_task_ids: _Optional[bytes] = ..., running_attempts: _Optional[_Iterable[int]] = ..., running_ts_ns: _Optional[_Iterable[int]] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ...) -> None: ...

class AddTaskEventsRequest(_message.Message):
    __slots__ = ("events", "num_dropped", "columns")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DROPPED_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TaskEventRecord]
    num_dropped: int
    columns: TaskEventColumns
    def __init__(self, events: _Optional[_Iterable[_Union[TaskEventRecord, _Mapping]]] = ..., num_dropped: _Optional[int] = ..., columns: _Optional[_Union[TaskEventColumns, _Mapping]] = ...) -> None: ...

class StateFilter(_message.Message):
    __slots__ = ("key", "op", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    op: str
    value: str
    def __init__(self, key: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GetTaskEventsRequest(_message.Message):
    __slots__ = ("filters", "limit", "since_ns", "newest_first", "cursor", "changed_after")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AFTER_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[StateFilter]
    limit: int
    since_ns: int
    newest_first: bool
    cursor: int
    changed_after: int
    def __init__(self, filters: _Optional[_Iterable[_Union[StateFilter, _Mapping]]] = ..., limit: _Optional[int] = ..., since_ns: _Optional[int] = ..., newest_first: _Optional[bool] = ..., cursor: _Optional[int] = ..., changed_after: _Optional[int] = ...) -> None: ...

class TaskStateRow(_message.Message):
    __slots__ = ("task_id", "attempt_number", "info", "state", "states", "state_ts_ns", "node_id", "worker_id", "worker_pid", "error", "error_traceback", "actor_repr_name", "updated_ns")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    STATE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ACTOR_REPR_NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_NS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    info: TaskInfo
    state: TaskState
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    state_ts_ns: _containers.RepeatedScalarFieldContainer[int]
    node_id: bytes
    worker_id: bytes
    worker_pid: int
    error: _common_pb2.ErrorInfo
    error_traceback: str
    actor_repr_name: str
    updated_ns: int
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., info: _Optional[_Union[TaskInfo, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., state_ts_ns: _Optional[_Iterable[int]] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., worker_pid: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., error_traceback: _Optional[str] = ..., actor_repr_name: _Optional[str] = ..., updated_ns: _Optional[int] = ...) -> None: ...

class GetTaskEventsReply(_message.Message):
    __slots__ = ("tasks", "num_truncated", "num_evicted", "num_dropped", "next_cursor", "last_change")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NUM_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NUM_EVICTED_FIELD_NUMBER: _ClassVar[int]
    NUM_DROPPED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskStateRow]
    num_truncated: int
    num_evicted: int
    num_dropped: int
    next_cursor: int
    last_change: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskStateRow, _Mapping]]] = ..., num_truncated: _Optional[int] = ..., num_evicted: _Optional[int] = ..., num_dropped: _Optional[int] = ..., next_cursor: _Optional[int] = ..., last_change: _Optional[int] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("name", "kind", "description", "tag_keys", "tag_values", "value", "boundaries", "bucket_counts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    TAG_VALUES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: MetricKind
    description: str
    tag_keys: _containers.RepeatedScalarFieldContainer[str]
    tag_values: _containers.RepeatedScalarFieldContainer[str]
    value: float
    boundaries: _containers.RepeatedScalarFieldContainer[float]
    bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[MetricKind, str]] = ..., description: _Optional[str] = ..., tag_keys: _Optional[_Iterable[str]] = ..., tag_values: _Optional[_Iterable[str]] = ..., value: _Optional[float] = ..., boundaries: _Optional[_Iterable[float]] = ..., bucket_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class ReportMetricsRequest(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ...) -> None: ...

class GetMetricsReply(_message.Message):
    __slots__ = ("points", "num_dropped_points")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DROPPED_POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    num_dropped_points: int
    def __init__(self, points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ..., num_dropped_points: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "key", "unsubscribe")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    key: bytes
    unsubscribe: bool
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., key: _Optional[bytes] = ..., unsubscribe: _Optional[bool] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("job_id", "task_id", "task_name", "context_tag", "is_err", "pid", "node_ip", "text", "actor_name")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    IS_ERR_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    task_id: bytes
    task_name: str
    context_tag: str
    is_err: bool
    pid: int
    node_ip: str
    text: str
    actor_name: str
    def __init__(self, job_id: _Optional[bytes] = ..., task_id: _Optional[bytes] = ..., task_name: _Optional[str] = ..., context_tag: _Optional[str] = ..., is_err: _Optional[bool] = ..., pid: _Optional[int] = ..., node_ip: _Optional[str] = ..., text: _Optional[str] = ..., actor_name: _Optional[str] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ...) -> None: ...

class TaskStateChange(_message.Message):
    __slots__ = ("task_id", "attempt_number", "state", "ts_ns", "job_id", "facts_only", "change")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FACTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    state: TaskState
    ts_ns: int
    job_id: bytes
    facts_only: bool
    change: int
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ..., ts_ns: _Optional[int] = ..., job_id: _Optional[bytes] = ..., facts_only: _Optional[bool] = ..., change: _Optional[int] = ...) -> None: ...

class TaskStateChangeBatch(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[TaskStateChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[TaskStateChange, _Mapping]]] = ...) -> None: ...

class PubMessage(_message.Message):
    __slots__ = ("channel", "key", "actor", "node", "worker_failure", "logs", "resource_view", "placement_group", "job", "task_changes")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VIEW_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASK_CHANGES_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    key: bytes
    actor: ActorInfo
    node: NodeInfo
    worker_failure: WorkerFailure
    logs: LogBatch
    resource_view: ResourceView
    placement_group: PlacementGroupInfo
    job: JobInfo
    task_changes: TaskStateChangeBatch
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., key: _Optional[bytes] = ..., actor: _Optional[_Union[ActorInfo, _Mapping]] = ..., node: _Optional[_Union[NodeInfo, _Mapping]] = ..., worker_failure: _Optional[_Union[WorkerFailure, _Mapping]] = ..., logs: _Optional[_Union[LogBatch, _Mapping]] = ..., resource_view: _Optional[_Union[ResourceView, _Mapping]] = ..., placement_group: _Optional[_Union[PlacementGroupInfo, _Mapping]] = ..., job: _Optional[_Union[JobInfo, _Mapping]] = ..., task_changes: _Optional[_Union[TaskStateChangeBatch, _Mapping]] = ...) -> None: ...

class PlacementGroupInfo(_message.Message):
    __slots__ = ("placement_group_id", "name", "namespace", "bundles", "strategy", "state", "bundle_node_ids", "creator_job_id", "is_detached", "create_time_ms", "pending_reason", "creator")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PENDING: _ClassVar[PlacementGroupInfo.State]
        PREPARED: _ClassVar[PlacementGroupInfo.State]
        CREATED: _ClassVar[PlacementGroupInfo.State]
        REMOVED: _ClassVar[PlacementGroupInfo.State]
        RESCHEDULING: _ClassVar[PlacementGroupInfo.State]
    PENDING: PlacementGroupInfo.State
    PREPARED: PlacementGroupInfo.State
    CREATED: PlacementGroupInfo.State
    REMOVED: PlacementGroupInfo.State
    RESCHEDULING: PlacementGroupInfo.State
    class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PACK: _ClassVar[PlacementGroupInfo.Strategy]
        SPREAD: _ClassVar[PlacementGroupInfo.Strategy]
        STRICT_PACK: _ClassVar[PlacementGroupInfo.Strategy]
        STRICT_SPREAD: _ClassVar[PlacementGroupInfo.Strategy]
    PACK: PlacementGroupInfo.Strategy
    SPREAD: PlacementGroupInfo.Strategy
    STRICT_PACK: PlacementGroupInfo.Strategy
    STRICT_SPREAD: PlacementGroupInfo.Strategy
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    name: str
    namespace: str
    bundles: _containers.RepeatedCompositeFieldContainer[_common_pb2.ResourceSet]
    strategy: PlacementGroupInfo.Strategy
    state: PlacementGroupInfo.State
    bundle_node_ids: _containers.RepeatedScalarFieldContainer[bytes]
    creator_job_id: bytes
    is_detached: bool
    create_time_ms: int
    pending_reason: str
    creator: _common_pb2.Address
    def __init__(self, placement_group_id: _Optional[bytes] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., bundles: _Optional[_Iterable[_Union[_common_pb2.ResourceSet, _Mapping]]] = ..., strategy: _Optional[_Union[PlacementGroupInfo.Strategy, str]] = ..., state: _Optional[_Union[PlacementGroupInfo.State, str]] = ..., bundle_node_ids: _Optional[_Iterable[bytes]] = ..., creator_job_id: _Optional[bytes] = ..., is_detached: _Optional[bool] = ..., create_time_ms: _Optional[int] = ..., pending_reason: _Optional[str] = ..., creator: _Optional[_Union[_common_pb2.Address, _Mapping]] = ...) -> None: ...

class CreatePlacementGroupRequest(_message.Message):
    __slots__ = ("placement_group",)
    PLACEMENT_GROUP_FIELD_NUMBER: _ClassVar[int]
    placement_group: PlacementGroupInfo
    def __init__(self, placement_group: _Optional[_Union[PlacementGroupInfo, _Mapping]] = ...) -> None: ...

class CreatePlacementGroupReply(_message.Message):
    __slots__ = ("placement_group_id",)
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    def __init__(self, placement_group_id: _Optional[bytes] = ...) -> None: ...

class PlacementGroupIdRequest(_message.Message):
    __slots__ = ("placement_group_id",)
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    def __init__(self, placement_group_id: _Optional[bytes] = ...) -> None: ...

class GetPlacementGroupReply(_message.Message):
    __slots__ = ("placement_group", "found")
    PLACEMENT_GROUP_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    placement_group: PlacementGroupInfo
    found: bool
    def __init__(self, placement_group: _Optional[_Union[PlacementGroupInfo, _Mapping]] = ..., found: _Optional[bool] = ...) -> None: ...

class GetNamedPlacementGroupRequest(_message.Message):
    __slots__ = ("name", "namespace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class GetAllPlacementGroupReply(_message.Message):
    __slots__ = ("placement_groups",)
    PLACEMENT_GROUPS_FIELD_NUMBER: _ClassVar[int]
    placement_groups: _containers.RepeatedCompositeFieldContainer[PlacementGroupInfo]
    def __init__(self, placement_groups: _Optional[_Iterable[_Union[PlacementGroupInfo, _Mapping]]] = ...) -> None: ...

class WaitPlacementGroupReadyRequest(_message.Message):
    __slots__ = ("placement_group_id", "timeout_ms")
    PLACEMENT_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    placement_group_id: bytes
    timeout_ms: int
    def __init__(self, placement_group_id: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitPlacementGroupReadyReply(_message.Message):
    __slots__ = ("ready", "removed")
    READY_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    removed: bool
    def __init__(self, ready: _Optional[bool] = ..., removed: _Optional[bool] = ...) -> None: ...
