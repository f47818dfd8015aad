from nbray.protocol import common_pb2 as _common_pb2
from nbray.protocol import gcs_pb2 as _gcs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientConnectRequest(_message.Message):
    __slots__ = ("session_id", "namespace", "runtime_env_json", "hostname", "pid")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_JSON_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    namespace: str
    runtime_env_json: str
    hostname: str
    pid: int
    def __init__(self, session_id: _Optional[bytes] = ..., namespace: _Optional[str] = ..., runtime_env_json: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class ClientConnectReply(_message.Message):
    __slots__ = ("session_id", "resumed", "error", "job_id", "driver", "node_ip", "node_id", "gcs_address", "namespace", "session_dir", "dashboard_url", "reconnect_grace_ms", "driver_task_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GCS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    DASHBOARD_URL_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    resumed: bool
    error: str
    job_id: bytes
    driver: _common_pb2.Address
    node_ip: str
    node_id: bytes
    gcs_address: str
    namespace: str
    session_dir: str
    dashboard_url: str
    reconnect_grace_ms: int
    driver_task_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., resumed: _Optional[bool] = ..., error: _Optional[str] = ..., job_id: _Optional[bytes] = ..., driver: _Optional[_Union[_common_pb2.Address, _Mapping]] = ..., node_ip: _Optional[str] = ..., node_id: _Optional[bytes] = ..., gcs_address: _Optional[str] = ..., namespace: _Optional[str] = ..., session_dir: _Optional[str] = ..., dashboard_url: _Optional[str] = ..., reconnect_grace_ms: _Optional[int] = ..., driver_task_id: _Optional[bytes] = ...) -> None: ...

class ClientRef(_message.Message):
    __slots__ = ("object_id", "owner")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    owner: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., owner: _Optional[bytes] = ...) -> None: ...

class ClientAck(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    def __init__(self, error: _Optional[bytes] = ...) -> None: ...

class ClientFunctionRequest(_message.Message):
    __slots__ = ("seq", "acked", "function_id", "body")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    function_id: bytes
    body: bytes
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., function_id: _Optional[bytes] = ..., body: _Optional[bytes] = ...) -> None: ...

class ClientTemplateRequest(_message.Message):
    __slots__ = ("seq", "acked", "template_id", "spec")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    template_id: int
    spec: _common_pb2.TaskSpec
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., template_id: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class ClientSubmitRequest(_message.Message):
    __slots__ = ("seq", "acked", "template_id", "task_id", "actor_id", "sequence_number", "context_tag", "handle_ref_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    HANDLE_REF_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    template_id: int
    task_id: bytes
    actor_id: bytes
    sequence_number: int
    context_tag: str
    handle_ref_id: bytes
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., template_id: _Optional[int] = ..., task_id: _Optional[bytes] = ..., actor_id: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., context_tag: _Optional[str] = ..., handle_ref_id: _Optional[bytes] = ...) -> None: ...

class ClientCreateActorRequest(_message.Message):
    __slots__ = ("seq", "acked", "spec", "name", "has_namespace", "namespace", "detached", "max_restarts", "get_if_exists", "class_name", "handle_metadata", "context_tag")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HAS_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    GET_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    HANDLE_METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    spec: _common_pb2.TaskSpec
    name: str
    has_namespace: bool
    namespace: str
    detached: bool
    max_restarts: int
    get_if_exists: bool
    class_name: str
    handle_metadata: bytes
    context_tag: str
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., name: _Optional[str] = ..., has_namespace: _Optional[bool] = ..., namespace: _Optional[str] = ..., detached: _Optional[bool] = ..., max_restarts: _Optional[int] = ..., get_if_exists: _Optional[bool] = ..., class_name: _Optional[str] = ..., handle_metadata: _Optional[bytes] = ..., context_tag: _Optional[str] = ...) -> None: ...

class ClientCreateActorReply(_message.Message):
    __slots__ = ("error", "actor_id", "actor", "handle_ref")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    HANDLE_REF_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    actor_id: bytes
    actor: _gcs_pb2.ActorInfo
    handle_ref: ClientRef
    def __init__(self, error: _Optional[bytes] = ..., actor_id: _Optional[bytes] = ..., actor: _Optional[_Union[_gcs_pb2.ActorInfo, _Mapping]] = ..., handle_ref: _Optional[_Union[ClientRef, _Mapping]] = ...) -> None: ...

class ClientPutRequest(_message.Message):
    __slots__ = ("seq", "acked", "upload_id", "size", "nested")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    upload_id: int
    size: int
    nested: _containers.RepeatedCompositeFieldContainer[ClientRef]
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., upload_id: _Optional[int] = ..., size: _Optional[int] = ..., nested: _Optional[_Iterable[_Union[ClientRef, _Mapping]]] = ...) -> None: ...

class ClientPutReply(_message.Message):
    __slots__ = ("error", "ref")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    ref: ClientRef
    def __init__(self, error: _Optional[bytes] = ..., ref: _Optional[_Union[ClientRef, _Mapping]] = ...) -> None: ...

class ClientPutStartRequest(_message.Message):
    __slots__ = ("seq", "acked", "size")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    size: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ClientPutStartReply(_message.Message):
    __slots__ = ("error", "upload_id")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    upload_id: int
    def __init__(self, error: _Optional[bytes] = ..., upload_id: _Optional[int] = ...) -> None: ...

class ClientChunkRequest(_message.Message):
    __slots__ = ("seq", "acked", "transfer_id", "offset", "length")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    transfer_id: int
    offset: int
    length: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., transfer_id: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ClientGetRequest(_message.Message):
    __slots__ = ("seq", "acked", "refs", "timeout_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    refs: _containers.RepeatedCompositeFieldContainer[ClientRef]
    timeout_ms: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., refs: _Optional[_Iterable[_Union[ClientRef, _Mapping]]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ClientValue(_message.Message):
    __slots__ = ("object_id", "size", "download_id", "nested")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    size: int
    download_id: int
    nested: _containers.RepeatedCompositeFieldContainer[ClientRef]
    def __init__(self, object_id: _Optional[bytes] = ..., size: _Optional[int] = ..., download_id: _Optional[int] = ..., nested: _Optional[_Iterable[_Union[ClientRef, _Mapping]]] = ...) -> None: ...

class ClientGetReply(_message.Message):
    __slots__ = ("error", "values")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    values: _containers.RepeatedCompositeFieldContainer[ClientValue]
    def __init__(self, error: _Optional[bytes] = ..., values: _Optional[_Iterable[_Union[ClientValue, _Mapping]]] = ...) -> None: ...

class ClientDownloadDoneRequest(_message.Message):
    __slots__ = ("seq", "acked", "download_ids")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_IDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    download_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., download_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ClientWaitRequest(_message.Message):
    __slots__ = ("seq", "acked", "refs", "num_returns", "timeout_ms", "fetch_local", "generators")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    FETCH_LOCAL_FIELD_NUMBER: _ClassVar[int]
    GENERATORS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    refs: _containers.RepeatedCompositeFieldContainer[ClientRef]
    num_returns: int
    timeout_ms: int
    fetch_local: bool
    generators: _containers.RepeatedCompositeFieldContainer[ClientGeneratorPosition]
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., refs: _Optional[_Iterable[_Union[ClientRef, _Mapping]]] = ..., num_returns: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., fetch_local: _Optional[bool] = ..., generators: _Optional[_Iterable[_Union[ClientGeneratorPosition, _Mapping]]] = ...) -> None: ...

class ClientGeneratorPosition(_message.Message):
    __slots__ = ("position", "generator_id", "next_index")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_INDEX_FIELD_NUMBER: _ClassVar[int]
    position: int
    generator_id: bytes
    next_index: int
    def __init__(self, position: _Optional[int] = ..., generator_id: _Optional[bytes] = ..., next_index: _Optional[int] = ...) -> None: ...

class ClientWaitReply(_message.Message):
    __slots__ = ("error", "ready")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    ready: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, error: _Optional[bytes] = ..., ready: _Optional[_Iterable[int]] = ...) -> None: ...

class ClientReleaseRequest(_message.Message):
    __slots__ = ("seq", "acked", "object_ids", "counts")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., object_ids: _Optional[_Iterable[bytes]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class ClientCancelRequest(_message.Message):
    __slots__ = ("seq", "acked", "object_id", "force", "recursive")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    object_id: bytes
    force: bool
    recursive: bool
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., object_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ClientCancelCellRequest(_message.Message):
    __slots__ = ("seq", "acked", "context_tag", "object_ids", "force_after_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TAG_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    context_tag: str
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    force_after_ms: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., context_tag: _Optional[str] = ..., object_ids: _Optional[_Iterable[bytes]] = ..., force_after_ms: _Optional[int] = ...) -> None: ...

class ClientKillActorRequest(_message.Message):
    __slots__ = ("seq", "acked", "actor_id", "no_restart")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    actor_id: bytes
    no_restart: bool
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., actor_id: _Optional[bytes] = ..., no_restart: _Optional[bool] = ...) -> None: ...

class ClientGcsCallRequest(_message.Message):
    __slots__ = ("seq", "acked", "method", "request", "timeout_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    method: str
    request: bytes
    timeout_ms: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., method: _Optional[str] = ..., request: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ClientGcsCallReply(_message.Message):
    __slots__ = ("error", "reply")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    reply: bytes
    def __init__(self, error: _Optional[bytes] = ..., reply: _Optional[bytes] = ...) -> None: ...

class ClientGeneratorRequest(_message.Message):
    __slots__ = ("seq", "acked", "op", "generator_id", "index", "timeout_ms")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NEXT: _ClassVar[ClientGeneratorRequest.Op]
        QUERY: _ClassVar[ClientGeneratorRequest.Op]
        DROPPED: _ClassVar[ClientGeneratorRequest.Op]
    NEXT: ClientGeneratorRequest.Op
    QUERY: ClientGeneratorRequest.Op
    DROPPED: ClientGeneratorRequest.Op
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    op: ClientGeneratorRequest.Op
    generator_id: bytes
    index: int
    timeout_ms: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., op: _Optional[_Union[ClientGeneratorRequest.Op, str]] = ..., generator_id: _Optional[bytes] = ..., index: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ClientGeneratorReply(_message.Message):
    __slots__ = ("error", "item", "done", "item_ready", "finished")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ITEM_READY_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    item: ClientRef
    done: bool
    item_ready: bool
    finished: bool
    def __init__(self, error: _Optional[bytes] = ..., item: _Optional[_Union[ClientRef, _Mapping]] = ..., done: _Optional[bool] = ..., item_ready: _Optional[bool] = ..., finished: _Optional[bool] = ...) -> None: ...

class ClientFlushRequest(_message.Message):
    __slots__ = ("seq", "acked", "timeout_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    timeout_ms: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ClientObjectInfoRequest(_message.Message):
    __slots__ = ("seq", "acked", "object_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    object_id: bytes
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., object_id: _Optional[bytes] = ...) -> None: ...

class ClientObjectInfoReply(_message.Message):
    __slots__ = ("error", "size", "state", "in_shared_memory", "node_id")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IN_SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    size: int
    state: str
    in_shared_memory: bool
    node_id: bytes
    def __init__(self, error: _Optional[bytes] = ..., size: _Optional[int] = ..., state: _Optional[str] = ..., in_shared_memory: _Optional[bool] = ..., node_id: _Optional[bytes] = ...) -> None: ...

class ClientFutureRequest(_message.Message):
    __slots__ = ("seq", "acked", "object_id", "is_error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    object_id: bytes
    is_error: bool
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ..., object_id: _Optional[bytes] = ..., is_error: _Optional[bool] = ...) -> None: ...

class ClientFutureReply(_message.Message):
    __slots__ = ("error", "ref")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    error: bytes
    ref: ClientRef
    def __init__(self, error: _Optional[bytes] = ..., ref: _Optional[_Union[ClientRef, _Mapping]] = ...) -> None: ...

class ClientDisconnectRequest(_message.Message):
    __slots__ = ("seq", "acked")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    acked: int
    def __init__(self, seq: _Optional[int] = ..., acked: _Optional[int] = ...) -> None: ...

class ClientLogs(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _gcs_pb2.LogBatch
    def __init__(self, batch: _Optional[_Union[_gcs_pb2.LogBatch, _Mapping]] = ...) -> None: ...
