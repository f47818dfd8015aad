"""The core API: init, shutdown, get, put, wait, cancel, kill, ...

Names, signatures and behaviour follow Ray's, so ``import nbray as ray``
runs programs written for Ray's core API.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nbray.cluster_context import RayContext
from nbray.common import module_shipping
from nbray.common.config import Config, set_config
from nbray.exceptions import AuthenticationError, RpcError
from nbray.node import session
from nbray.object_ref import ObjectRef, ObjectRefGenerator
from nbray.rpc import auth
from nbray.worker import call_sites

if TYPE_CHECKING:
    from nbray.node import launcher

# Not imported here: the protocol and RPC modules (BlockingClient, gcs_pb2).
# init() starts the cluster's processes first and imports them while those
# start (_import_driver_modules), so the two costs overlap. Nor the launcher:
# workers import this module too, and only a driver starts a cluster.

logger = logging.getLogger("nbray")

_lock = threading.RLock()


class _State:
    def __init__(self) -> None:
        self.core: Any = None
        self.node: launcher.NodeProcesses | None = None
        self.context: RayContext | None = None
        self.client: Any = None  # client mode (nbray://)


_state = _State()


def is_initialized() -> bool:
    return _state.core is not None or _state.client is not None


def core_or_init() -> Any:
    core = _state.core
    if core is not None:
        return core
    if _state.client is not None:
        return _state.client
    from nbray.object_ref import _core

    if _core[0] is not None:  # inside a worker process
        return _core[0]
    init()
    return _state.core


def _worker_core() -> Any:
    from nbray.object_ref import _core

    core = _core[0] or _state.core or _state.client
    if core is None:
        raise RuntimeError("nbray is not initialized; call nbray.init() first")
    return core


# The job's runtime_env, set for a driver run as a submitted job (job_submission.common).
JOB_RUNTIME_ENV_VAR = "NBRAY_JOB_RUNTIME_ENV"

_INIT_KWARGS = {"_system_config", "_temp_dir", "_node_ip_address", "_auth_token", "_memory",
                "_plasma_directory", "allow_multiple", "_redis_password", "storage", "_tracing_startup_hook",
                "_metrics_export_port", "_enable_object_reconstruction"}


def _then_attach_notebook(init_fn: Callable[..., RayContext]) -> Callable[..., RayContext]:
    """In an IPython kernel, route task output to the cells that submitted
    the work (as ``%load_ext nbray`` does) as soon as a connection exists."""

    @functools.wraps(init_fn)
    def wrapper(*args: Any, **kwargs: Any) -> RayContext:
        context = init_fn(*args, **kwargs)
        ipython = sys.modules.get("IPython")  # a kernel has imported it; a script need not pay for it
        if ipython is None:
            return context
        try:
            shell = ipython.get_ipython()
            if shell is not None and getattr(shell, "kernel", None) is not None:
                from nbray.jupyter.magics import load_ipython_extension

                load_ipython_extension(shell)
        except Exception as exc:  # never fail init for the notebook extras
            logger.debug("could not attach the notebook output routing: %s", exc)
        return context

    return wrapper


@_then_attach_notebook
def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    labels: dict[str, str] | None = None,
    object_store_memory: int | None = None,
    local_mode: bool = False,
    ignore_reinit_error: bool = False,
    include_dashboard: bool | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    job_config: Any = None,
    configure_logging: bool = True,
    logging_level: int | str = logging.INFO,
    logging_format: str | None = None,
    logging_config: Any = None,
    log_to_driver: bool | None = None,
    namespace: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    tls: bool | None = None,
    **kwargs: Any,
) -> RayContext:
    """Connect to a cluster, starting a local one if none is found.

    ``address``: None (``NBRAY_ADDRESS``, then a cluster started on this
    machine with ``nbray start``, else a new local cluster), ``"auto"`` (an
    existing cluster or ConnectionError), ``"local"`` (always a new one),
    ``"HOST:PORT"`` (that cluster's GCS) or ``"nbray://HOST:PORT"`` (client
    mode, for a notebook outside the cluster).

    ``tls`` (client mode): connect over TLS, verifying the server against
    NBRAY_TLS_CA_CERT or the system trust store; None follows
    NBRAY_USE_TLS. Cluster processes and drivers take TLS from the
    environment (NBRAY_USE_TLS and NBRAY_TLS_*), as every process of a
    cluster must agree.
    """
    unknown = set(kwargs) - _INIT_KWARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    with _lock:
        if is_initialized():
            if ignore_reinit_error:
                assert _state.context is not None
                return _state.context
            raise RuntimeError(
                "Maybe you called nbray.init twice by accident? This error can be suppressed by passing "
                "ignore_reinit_error=True or by calling nbray.shutdown() prior to nbray.init().")
        if local_mode:
            raise RuntimeError("local_mode=True is no longer supported (as in Ray); remove it.")
        if configure_logging:
            _configure_logging(logging_level, logging_format)
        config = Config()
        config.apply_env()
        if kwargs.get("_system_config"):
            config.apply(kwargs["_system_config"])
        if log_to_driver is not None:
            config.log_to_driver = log_to_driver
        set_config(config)
        module_shipping.configure(mode=config.ship_local_modules, cluster_is_remote=False)
        if job_config is not None:
            namespace = namespace or getattr(job_config, "ray_namespace", None) or getattr(job_config, "namespace", None)
            runtime_env = runtime_env or getattr(job_config, "runtime_env", None)
        job_runtime_env = os.environ.get(JOB_RUNTIME_ENV_VAR)
        if job_runtime_env:  # the Jobs package is imported only by drivers that run as jobs
            from nbray.job_submission.common import with_job_runtime_env

            # A driver run as a submitted job takes the job's runtime_env as its default.
            runtime_env = with_job_runtime_env(runtime_env, job_runtime_env)
        if runtime_env is not None:
            from nbray import _options

            _options.validate({"runtime_env": runtime_env}, {"runtime_env"}, "init()")
            from nbray.runtime_env import resolve

            resolve.pack(runtime_env, "init()")  # a bad working_dir fails here, before any cluster starts
        if address is None:
            address = os.environ.get(session.ADDRESS_ENV) or None
        if address is not None and (address.startswith("nbray://") or address.startswith("ray://")):
            from nbray.client import connect_client

            return connect_client(address, namespace=namespace, runtime_env=runtime_env,
                                  token=kwargs.get("_auth_token"), init_kwargs=dict(
                                      num_cpus=num_cpus, num_gpus=num_gpus, resources=resources),
                                  use_tls=tls)
        if tls is not None:
            raise ValueError("init(tls=...) applies to client mode (nbray://HOST:PORT); a driver takes TLS "
                             "from NBRAY_USE_TLS and NBRAY_TLS_*, as every process of its cluster does.")
        found: tuple[str, str | None] | None = None
        if address in (None, "auto"):
            current = session.find_current_cluster(kwargs.get("_temp_dir"))
            if current is not None and _cluster_alive(current[0], current[1]):
                found = (current[0], current[1])
            elif address == "auto":
                raise ConnectionError(
                    "Could not find any running nbray instance. Start one with 'nbray start --head' "
                    "or call nbray.init() without address to start a local one.")
        elif address != "local":
            found = (address, session.session_for_address(address, kwargs.get("_temp_dir")))
        if found is not None:
            if num_cpus is not None or num_gpus is not None or resources or object_store_memory:
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus, num_gpus, resources and "
                    "object_store_memory must not be provided; set them with 'nbray start'.")
            # Its workers run elsewhere (another directory, maybe another machine).
            module_shipping.configure(cluster_is_remote=True)
            return _connect_driver(found[0], found[1], config, namespace, runtime_env,
                                   kwargs.get("_auth_token"))
        from nbray.node import launcher

        token = auth.token_from_environment()
        node = launcher.start_head(
            config=config, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
            object_store_memory=object_store_memory, memory=kwargs.get("_memory"),
            temp_dir=kwargs.get("_temp_dir"), parent_pid=os.getpid(), token=token,
            node_ip=kwargs.get("_node_ip_address"), labels=labels,
            include_dashboard=bool(include_dashboard), dashboard_host=dashboard_host,
            dashboard_port=dashboard_port if dashboard_port is not None else 0,
            while_starting=_import_driver_modules)
        _state.node = node
        try:
            return _start_core(node.gcs_address, node.token, node.raylet_socket, node.node_id, node.node_ip,
                               node.session_dir, config, namespace, runtime_env)
        except BaseException:
            node.stop(force=True)
            _state.node = None
            raise


def _import_driver_modules() -> None:
    """Import what the driver's core worker needs, while the cluster's processes start."""
    import nbray.rpc.blocking  # noqa: F401
    import nbray.runtime_env.resolve  # noqa: F401
    import nbray.worker.core_worker  # noqa: F401


def _cluster_alive(gcs_address: str, session_dir: str | None) -> bool:
    from nbray.rpc.blocking import BlockingClient

    token = session.find_token(session_dir)
    if token is None:
        return False
    try:
        with BlockingClient(gcs_address, token, timeout_s=2.0) as client:
            client.call("GcsService.GetAllNodeInfo", timeout_s=2.0)
        return True
    except (ConnectionError, OSError, TimeoutError, RpcError, AuthenticationError):
        return False


def _connect_driver(gcs_address: str, session_dir: str | None, config: Config, namespace: str | None,
                    runtime_env: dict[str, Any] | None, token_arg: str | None) -> RayContext:
    from nbray.rpc.blocking import BlockingClient

    _probe(gcs_address, config.connect_timeout_ms / 1000)
    token = auth.decode_token(token_arg, "the _auth_token argument") if token_arg else session.find_token(session_dir)
    if token is None:
        raise AuthenticationError(
            f"No cluster token for {gcs_address}: set NBRAY_AUTH_TOKEN (or NBRAY_AUTH_TOKEN_PATH) to the "
            "token printed by 'nbray get-auth-token' on the head node.")
    with BlockingClient(gcs_address, token, role="driver", timeout_s=config.connect_timeout_ms / 1000) as client:
        nodes = client.call("GcsService.GetAllNodeInfo").nodes
    from nbray.node import launcher

    node = launcher.local_raylet_for(list(nodes))
    if node is None:
        raise ConnectionError(
            f"The cluster at {gcs_address} has no node on this machine. Start one with "
            f"'nbray start --address {gcs_address}', or connect as a client with "
            f"nbray.init('nbray://<head>:10001').")
    return _start_core(gcs_address, token, node.raylet_socket, node.node_id, node.node_ip, node.session_dir,
                       config, namespace, runtime_env)


def _probe(address: str, timeout_s: float) -> None:
    """ConnectionError naming the address when nothing listens there."""
    import socket

    from nbray.rpc.addresses import parse_address

    try:
        family, sockaddr = parse_address(address)
    except ValueError as exc:
        raise ValueError(f"invalid cluster address {address!r}: {exc}") from None
    try:
        with socket.create_connection(sockaddr, timeout=timeout_s):  # type: ignore[arg-type]
            pass
    except OSError as exc:
        raise ConnectionError(f"Could not connect to an nbray cluster at {address}: {exc}. Check the "
                              "address (HOST:PORT of the head's GCS) and that the cluster is running.") from None


def _start_core(gcs_address: str, token: bytes, raylet_socket: str, node_id: bytes, node_ip: str,
                session_dir: str, config: Config, namespace: str | None,
                runtime_env: dict[str, Any] | None) -> RayContext:
    from nbray.runtime_env import resolve
    from nbray.worker.core_worker import CoreWorker

    uploads: dict[str, bytes] = {}
    if runtime_env:
        resolved, uploads = resolve.pack(runtime_env, "init()")
        runtime_env = resolve.job_env(resolved)
    core = CoreWorker(
        is_worker=False, config=config, token=token, gcs_address=gcs_address, raylet_socket=raylet_socket,
        node_id=node_id, node_ip=node_ip, session_dir=session_dir, namespace=namespace or "",
        job_runtime_env=runtime_env)
    try:
        resolve.upload(core.gcs, uploads, config.runtime_env_package_chunk_bytes)
    except BaseException:
        core.shutdown()
        raise
    _state.core = core
    _state.context = RayContext(core, _state.node)
    atexit.register(_shutdown_at_exit)
    return _state.context


def _configure_logging(level: int | str, fmt: str | None) -> None:
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt or "%(asctime)s\t%(levelname)s %(name)s -- %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _shutdown_at_exit() -> None:
    try:
        shutdown()
    except Exception:
        pass


def shutdown(_exiting_interpreter: bool = False, *, wait_for_processes: bool = False) -> None:
    """Disconnect; stop the cluster if this process started it."""
    with _lock:
        client = _state.client
        if client is not None:
            _state.client = None
            _state.context = None
            client.close()
        core = _state.core
        if core is None:
            return
        _state.core = None
        _state.context = None
        try:
            core.shutdown()
        finally:
            node = _state.node
            _state.node = None
            if node is not None:
                node.stop()


# ---- objects ---------------------------------------------------------------------------------------


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store `value` in the object store; returns its ObjectRef."""
    core = core_or_init()
    ref: ObjectRef = core.objects.put(value)
    call_sites.record(core, (ref,), "put object")
    return ref


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Values of ObjectRef(s), in order. Raises the task's error if one failed,
    GetTimeoutError when `timeout` (seconds) passes."""
    core = core_or_init()
    if isinstance(object_refs, ObjectRef):
        return core.objects.get([object_refs], timeout)[0]
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError("get() does not accept an ObjectRefGenerator; iterate over it to get ObjectRefs.")
    if isinstance(object_refs, (list, tuple)):
        refs = list(object_refs)
        for i, r in enumerate(refs):
            if not isinstance(r, ObjectRef):
                raise TypeError(f"get() expects ObjectRefs; item {i} is a {type(r).__name__}: {r!r}")
        if not refs:
            return []
        return core.objects.get(refs, timeout)
    raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}: "
                    f"{object_refs!r}")


def wait(object_refs: Sequence[Any], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[Any], list[Any]]:
    """Split refs into (ready, not_ready) once `num_returns` are ready or
    `timeout` seconds pass; input order is kept in both lists."""
    if isinstance(object_refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError("wait() expects a list of ObjectRefs, not a single ObjectRef")
    refs = list(object_refs)
    ids: list[bytes] | None = None
    if set(map(type, refs)) == {ObjectRef}:  # the common case, checked at C speed
        ids = [r._id for r in refs]
        keys: set[Any] = set(ids)
    else:
        for i, r in enumerate(refs):
            if not isinstance(r, (ObjectRef, ObjectRefGenerator)):
                raise TypeError(f"wait() expects ObjectRefs; item {i} is a {type(r).__name__}")
        keys = {id(r) if isinstance(r, ObjectRefGenerator) else r.binary() for r in refs}
    if len(keys) != len(refs):
        raise ValueError("wait() requires a list of unique ObjectRefs")
    if num_returns <= 0:
        raise ValueError(f"num_returns must be > 0, got {num_returns}")
    if num_returns > len(refs):
        raise ValueError(f"num_returns ({num_returns}) cannot exceed the number of refs ({len(refs)})")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    return core_or_init().objects.wait(refs, num_returns, timeout, fetch_local, ids)  # type: ignore[no-any-return]


def cancel(object_ref: Any, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes `object_ref` (see RAY_SEMANTICS: a queued
    task is dropped; a running one gets KeyboardInterrupt, or its worker is
    killed with force=True). get() then raises TaskCancelledError."""
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    core_or_init().cancel(object_ref.binary(), force, recursive)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor now. Calls in flight fail with ActorDiedError."""
    from nbray.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() expects an actor handle, got {type(actor).__name__}; "
                         "use cancel() for tasks")
    try:
        core_or_init().kill_actor(actor._actor_id, no_restart)
    except RpcError as exc:
        if exc.code == "not_found":
            from nbray.exceptions import ActorHandleNotFoundError

            raise ActorHandleNotFoundError(str(exc)) from None
        raise


def get_actor(name: str, namespace: str | None = None) -> Any:
    """Handle to the named actor; ValueError if there is none."""
    from nbray.actor import handle_from_info
    from nbray.protocol import gcs_pb2
    from nbray.worker import context

    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs a non-empty actor name")
    core = core_or_init()
    ns = namespace if namespace is not None else (context.current().namespace or core.namespace)
    try:
        reply = core.gcs.call("GetNamedActor", gcs_pb2.GetNamedActorRequest(name=name, namespace=ns))
    except RpcError as exc:
        if exc.code == "not_found":
            raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{ns}'. This could "
                             "be because the actor is dead or never existed.") from None
        raise
    handle = handle_from_info(reply.actor)
    core.post(core.actor_submitter.track, reply.actor.actor_id, reply.actor)
    return handle


# ---- cluster ---------------------------------------------------------------------------------------


def nodes() -> list[dict[str, Any]]:
    """Every node, alive or dead, as Ray's ``ray.nodes()`` describes them."""
    from nbray.protocol import gcs_pb2

    core = core_or_init()
    reply = core.gcs.call("GetAllNodeInfo")
    out = []
    for n in reply.nodes:
        alive = n.state == gcs_pb2.NodeInfo.ALIVE
        out.append({
            "NodeID": n.node_id.hex(), "Alive": alive, "alive": alive,
            "NodeManagerAddress": n.node_ip, "NodeManagerHostname": n.hostname,
            "NodeManagerPort": n.raylet_port, "ObjectManagerPort": n.raylet_port,
            "ObjectStoreSocketName": n.raylet_socket, "RayletSocketName": n.raylet_socket,
            "MetricsExportPort": 0, "NodeName": n.node_name, "RuntimeEnvAgentPort": 0,
            "Resources": dict(n.resources_total) if alive else {}, "Labels": dict(n.labels),
            "DeathReason": n.death_reason, "DeathReasonMessage": n.death_reason_message,
            "IsHead": n.is_head, "StartTimeMs": n.start_time_ms, "EndTimeMs": n.end_time_ms,
        })
    return out


def cluster_resources() -> dict[str, float]:
    """Total resources of the alive nodes."""
    total, _ = _resource_totals()
    return total


def available_resources() -> dict[str, float]:
    """Resources free right now (as of the latest reports, ~100 ms old)."""
    _, available = _resource_totals()
    return available


def _resource_totals() -> tuple[dict[str, float], dict[str, float]]:
    core = core_or_init()
    status = core.gcs.call("GetClusterStatus")
    total: dict[str, float] = {}
    avail: dict[str, float] = {}
    for n in status.nodes:
        for k, v in n.total.items():
            total[k] = total.get(k, 0.0) + v
        for k, v in n.available.items():
            if v > 0:
                avail[k] = avail.get(k, 0.0) + v
    return _clean(total), _clean(avail)


def _clean(resources: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 4)) for k, v in resources.items() if "_group_" not in k}


def get_gpu_ids() -> list[int] | list[str]:
    """GPU ids assigned to the current task or actor."""
    from nbray.worker import context

    _worker_core()
    ids_ = context.current().resource_ids.get("GPU", [])
    try:
        return [int(i) for i in ids_]
    except ValueError:
        return list(ids_)


def get_runtime_context() -> Any:
    from nbray.runtime_context import RuntimeContext

    return RuntimeContext(core_or_init())


def timeline(filename: str | None = None) -> Any:
    """Chrome trace events of every task attempt (see nbray.util.timeline); written to `filename` if given."""
    from nbray.util.timeline import timeline as write_timeline

    return write_timeline(filename)

