"""One typed configuration object for every timeout, bound and retry count.

Each field can be overridden by an environment variable named
``NBRAY_<FIELD_NAME_UPPER>`` or by ``nbray.init(_system_config={...})`` /
``nbray start --system-config JSON``. The head node's overrides travel to
every process of the cluster as JSON, so one cluster runs with one config.
"""

from __future__ import annotations

import json
import os
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class Config:
    """Every setting, with its default; ``Config(name=value, ...)`` overrides some.

    A plain class rather than a dataclass: every nbray process builds this
    class at start-up, and generating a dataclass's methods for some 150
    fields (and importing ``dataclasses``, which imports ``inspect``) cost
    more than the rest of this module. ``fields()`` lists the settings.
    """

    # ---- transport ---------------------------------------------------------
    # Time a new connection has to send its token and hello.
    handshake_timeout_ms: int = 5_000
    # Largest frame body accepted after authentication.
    max_frame_bytes: int = 512 * MIB
    # Largest raw trailer (object chunk) accepted in one frame.
    max_trailer_bytes: int = 256 * MIB
    # Time to establish a connection before ConnectionError.
    connect_timeout_ms: int = 10_000
    # Default deadline of control-plane requests (GCS calls).
    rpc_timeout_ms: int = 60_000
    # How long a process retries connecting to the GCS at start-up.
    gcs_connect_retry_ms: int = 10_000
    # Testing only (nbray/rpc/fault_injection.py): requests this process
    # sends are lost or delayed. Entries are separated by ";":
    # "Service.Method=PROB[:req,resp]" loses the request ("req": the handler
    # never runs) or the reply ("resp": it ran) of that share of calls;
    # "Service.*" and "*" match a whole service or everything. The caller
    # sees InjectedRpcFailure (a ConnectionLostError) at once.
    testing_rpc_failure: str = ""
    # Testing only: "Service.Method=MIN[:MAX]" entries separated by ";"
    # delay each request by a uniform random MIN..MAX milliseconds.
    testing_rpc_delay_ms: str = ""
    # Seed of the injected faults; each process draws from this seed and
    # its pid (logged at start-up) so a run can be replayed.
    testing_rpc_seed: int = 0

    # ---- objects -----------------------------------------------------------
    # Values up to this size travel inline and live in the owner's memory.
    max_inline_object_bytes: int = 100 * KIB
    # Default object store capacity as a fraction of system memory.
    object_store_memory_fraction: float = 0.3
    # Smallest object store accepted.
    min_object_store_bytes: int = 64 * MIB
    # How long an allocation waits for readers to release space before
    # failing with ObjectStoreFullError.
    object_store_full_timeout_ms: int = 2_000
    # A reading process keeps views (and pins) of objects it has read while
    # it holds references to them, so reading again needs no round trip;
    # bounded by this fraction of the store and this many objects.
    object_mapping_cache_fraction: float = 0.1
    object_mapping_cache_max_objects: int = 10_000
    # Spill least recently used objects to disk when the store is full.
    object_spilling_enabled: bool = True
    # Directory for spilled objects ("" = <session>/spill).
    object_spilling_directory: str = ""
    # An object that does not fit in the store even after spilling (larger
    # than the store, or the rest pinned by readers past the full timeout)
    # is created in a file of its own under the spilling directory, mapped
    # by readers like the store; False fails it with ObjectStoreFullError.
    object_store_fallback_enabled: bool = True
    # Size of one chunk when objects move between nodes.
    object_chunk_bytes: int = 8 * MIB
    # Chunks of one object requested at once (memory bound of a pull).
    object_pull_window_chunks: int = 4
    # Raylets of one host pull objects over their Unix sockets (about 3x the
    # bandwidth of TCP); False makes them use TCP as between hosts, so tests
    # and benchmarks can exercise the network path (TLS included) on one machine.
    same_host_object_transfer_over_unix: bool = True
    # How long a reader waits for an object whose copies are all gone.
    object_fetch_timeout_ms: int = 600_000
    # Longest a dropped ObjectRef waits before its release is processed.
    release_drain_interval_ms: int = 50
    # Bytes of task specs kept for lineage reconstruction per owner.
    max_lineage_bytes: int = 1 * GIB
    # Object locations cached by a raylet for recently freed objects.
    recently_freed_cache_size: int = 10_000
    # Record where each ObjectRef is created, for `nbray memory` (a stack
    # walk per ref; Ray's RAY_record_ref_creation_sites=1 also turns it on).
    record_ref_creation_sites: bool = False
    # Call sites a process keeps (the oldest are forgotten first).
    max_recorded_call_sites: int = 100_000

    # ---- tasks and leases --------------------------------------------------
    # Retries of a task on worker or node death (Ray's max_retries default).
    task_max_retries: int = 3
    # Delay before a failed task is resubmitted.
    task_retry_delay_ms: int = 0
    # Tasks pushed to one leased worker before earlier ones finish, for
    # tasks that are observed to be short.
    max_tasks_in_flight_per_worker: int = 32
    # Tasks shorter than this on average are pipelined to leased workers.
    pipelining_max_task_duration_us: int = 5_000
    # A worker hands queued tasks back to their owners when the task ahead
    # of them has run this long (bounds head-of-line blocking).
    pipelining_bounce_ms: int = 10
    # Lease requests one owner keeps outstanding per scheduling class.
    max_pending_lease_requests_per_class: int = 10
    # An idle lease is returned to the raylet after this long.
    idle_lease_return_ms: int = 50
    # Time a started worker has to register with its raylet.
    worker_register_timeout_ms: int = 60_000
    # Idle workers beyond the prestarted pool exit after this long.
    idle_worker_kill_ms: int = 30_000
    # Time between a graceful stop request and SIGKILL.
    kill_worker_timeout_ms: int = 5_000
    # Time a non-forced cancel waits before it is forced (notebook cells).
    cancel_force_after_ms: int = 5_000
    # Upper bound of worker processes on one node (guards runaway nesting).
    max_workers_per_node: int = 512
    # Warn when a task waits longer than this for resources no node has.
    infeasible_warning_delay_ms: int = 0

    # ---- memory pressure ---------------------------------------------------
    # Fraction of the node's memory in use above which the raylet kills a
    # leased worker (retriable tasks first, newest first; actors last).
    memory_usage_threshold: float = 0.95
    # How often the raylet reads the node's memory use; 0 turns the monitor off.
    memory_monitor_refresh_ms: int = 250
    # After a kill, how long the victim's memory counts as freed while the
    # node's reading has not caught up (freed pages can show up late).
    memory_monitor_settle_ms: int = 5_000
    # Causes of worker kills a raylet remembers for owners that ask why
    # their worker died (the oldest are forgotten first).
    worker_failure_causes_max: int = 1_000
    # How long an owner waits for a raylet to say why a worker died before
    # reporting the death as unexpected.
    worker_failure_cause_timeout_ms: int = 2_000

    # ---- runtime environments ----------------------------------------------
    # Packages (working_dir, py_modules) are stored in the GCS internal KV in
    # chunks of at most this size (well under max_frame_bytes).
    runtime_env_package_chunk_bytes: int = 4 * MIB
    # A node keeps at most this many environments (unpacked packages, pip
    # venvs) that no live worker uses; older ones are deleted.
    runtime_env_max_unused: int = 8
    # A package in the GCS whose last user (job, detached actor) ended is
    # deleted this long after; one stored but never used, after the second.
    runtime_env_package_grace_ms: int = 5_000
    runtime_env_unreferenced_package_ms: int = 600_000

    # ---- actors ------------------------------------------------------------
    # Retry delay for actor calls while the actor restarts.
    actor_unavailable_retry_ms: int = 100
    # Warn when this many calls queue up on one actor handle.
    actor_excess_queueing_warn_threshold: int = 5_000

    # ---- task events -------------------------------------------------------
    # How often core workers send task events to the GCS (while they have any).
    task_events_report_interval_ms: int = 250
    # A task that reaches a final state is reported within this long (batched:
    # at most one extra report per this period), so state views show it promptly.
    task_events_final_report_delay_ms: int = 100
    # Events a core worker buffers before it drops the oldest.
    task_events_max_buffer: int = 100_000
    # Task attempts the GCS keeps (finished ones are evicted first).
    task_events_max_tasks_in_gcs: int = 100_000
    # Rows the state API returns at most.
    state_api_max_limit: int = 10_000

    # ---- health and membership --------------------------------------------
    health_check_initial_delay_ms: int = 5_000
    health_check_period_ms: int = 3_000
    health_check_timeout_ms: int = 10_000
    health_check_failure_threshold: int = 5
    # How often a raylet reports its resources to the GCS (at most).
    resource_report_period_ms: int = 100
    # How often the GCS broadcasts the cluster resource view.
    resource_broadcast_period_ms: int = 200
    # A raylet exits when it cannot reach the GCS for this long; drivers and
    # workers wait as long for the GCS to return before their GCS calls fail.
    gcs_reconnect_timeout_ms: int = 60_000
    # Backoff between attempts to reach a GCS that went away (doubles from
    # the first to the longest).
    gcs_reconnect_initial_backoff_ms: int = 50
    gcs_reconnect_max_backoff_ms: int = 1_000
    # One-way messages a process keeps for the GCS while it is away (resource
    # reports, worker failures, logs); the oldest are dropped beyond this.
    gcs_outage_max_queued_messages: int = 10_000
    # After a GCS restart, a node stored as alive that has not registered
    # again within this time is declared dead (its actors are handled as on
    # node death), and a job whose driver has not reconnected is finished.
    gcs_reregister_grace_ms: int = 30_000
    # The head restarts a GCS process that exits unexpectedly, after a
    # backoff, at most this many times in any minute (0: never). A GCS
    # without storage ("memory://") is never restarted.
    gcs_max_restarts_per_minute: int = 5
    gcs_restart_initial_backoff_ms: int = 100
    gcs_restart_max_backoff_ms: int = 5_000
    # Where the GCS keeps its tables (nodes, jobs, actors, placement groups,
    # internal KV, cluster id): "" = a SQLite file in the head's session
    # directory, "sqlite:///PATH" or a path = that SQLite file (a head started
    # again on it resumes its tables), "memory://" = nowhere.
    gcs_storage: str = ""

    # ---- stopping clusters -------------------------------------------------
    # Time a cluster's processes have to exit after SIGTERM (`nbray stop`,
    # `nbray.shutdown()`) before they get SIGKILL.
    stop_grace_period_ms: int = 10_000
    # Time SIGKILLed processes have to disappear before the stop reports them.
    stop_kill_wait_ms: int = 5_000
    # Entries of the per-user cluster registry read at most (one per node
    # session started on this machine).
    max_registered_sessions: int = 1_000

    # ---- scheduling --------------------------------------------------------
    # Utilization below which a node counts as empty (hybrid policy).
    scheduler_spread_threshold: float = 0.5
    # Pick randomly among this fraction of the best nodes.
    scheduler_top_k_fraction: float = 0.2
    # ... but among at least this many.
    scheduler_top_k_absolute: int = 1
    # Arguments at least this large count for locality-aware placement.
    locality_min_arg_bytes: int = 100 * KIB

    # ---- output ------------------------------------------------------------
    # Forward worker stdout/stderr to the driver.
    log_to_driver: bool = True
    # Bytes of output a raylet buffers per batch it publishes.
    log_batch_max_bytes: int = 256 * KIB
    # Longest a line of worker output waits before it is published.
    log_flush_interval_ms: int = 20
    # Least time between two reports of one tqdm_ray bar, unless the bar
    # sets flush_interval_s (Ray's default: 1 s); close() always reports.
    tqdm_flush_interval_ms: int = 1_000
    # Without a terminal, an open bar is printed as a line at most this often.
    tqdm_plain_print_interval_ms: int = 10_000
    # Bars a driver shows at once; the rest are counted on a "+N more" line.
    tqdm_max_bars: int = 100
    # Closed bars a driver remembers, so a late report cannot reopen one.
    tqdm_closed_bars_remembered: int = 1_000
    # While bars are redrawn in place, builtins.print hides them first
    # (Ray's RAY_TQDM_PATCH_PRINT).
    tqdm_patch_print: bool = True

    # ---- metrics (nbray.util.metrics, the dashboard's /metrics) -------------
    # How often a driver or worker sends what its metrics recorded to the GCS.
    metrics_report_period_ms: int = 2_000
    # Distinct (metric, tag values) series one process records.
    metrics_max_series_per_process: int = 10_000
    # Series the GCS keeps over all processes; later new ones are dropped and counted.
    metrics_max_series_in_gcs: int = 100_000

    # ---- dashboard (NBRAY_DASHBOARD_* as before) ---------------------------
    # Tasks kept in the dashboard's table (finished ones are evicted first).
    dashboard_max_tasks: int = 100_000
    # Events kept for clients that reconnect with Last-Event-ID.
    dashboard_sse_replay_events: int = 2_000
    # Events queued for one slow client before it is told to reload.
    dashboard_sse_max_queued: int = 2_000
    # Task changes are merged and sent at most this often.
    dashboard_sse_flush_interval_ms: int = 100
    # Task rows in one "tasks" event.
    dashboard_sse_max_tasks_per_event: int = 2_000
    # A comment line is sent this often so proxies keep the stream open.
    dashboard_sse_keepalive_ms: int = 15_000
    # Raylets are asked for GPU holders and workers this often while someone watches.
    dashboard_node_stats_period_ms: int = 1_000
    # Objects listings are reused for this long.
    dashboard_objects_cache_ms: int = 1_000
    # Deadline of the dashboard's calls to raylets and core workers.
    dashboard_peer_rpc_timeout_ms: int = 5_000
    # Deadline of the dashboard's calls to the GCS.
    dashboard_gcs_rpc_timeout_ms: int = 10_000
    # Largest request body accepted (and discarded: bodies are never read).
    dashboard_max_body_bytes: int = 64 * KIB
    # How long the dashboard tries to reach a lost GCS before it exits.
    dashboard_gcs_reconnect_timeout_ms: int = 60_000
    # Time between attempts to reach a lost GCS.
    dashboard_gcs_reconnect_period_ms: int = 1_000
    # Per-node CPU/GPU/memory/object-store use is sampled this often ...
    dashboard_utilization_period_ms: int = 1_000
    # ... and kept this long (a ring buffer per node) for the utilization history.
    dashboard_utilization_history_ms: int = 600_000
    # Nodes whose utilization history is kept (dead nodes are forgotten first).
    dashboard_utilization_max_nodes: int = 1_000
    # Host names (comma-separated) the dashboard answers to besides IP addresses, localhost,
    # this machine's names and its bind address; "*" turns the DNS-rebinding guard off.
    dashboard_allowed_hosts: str = ""

    # ---- client server -----------------------------------------------------
    # A disconnected notebook client may resume its session within this time.
    client_reconnect_grace_ms: int = 60_000
    # Modules of the driver's own (not installed: the notebook's directory,
    # a path put on sys.path) travel with the work by value: "auto" (for a
    # client, or a driver of a cluster it did not start), "always", "never".
    ship_local_modules: str = "auto"

    def __init__(self, **values: Any) -> None:
        fields = _fields()
        unknown = [name for name in values if name not in fields]
        if unknown:
            raise TypeError(f"Config() got unexpected setting(s): {', '.join(sorted(unknown))}")
        self.__dict__.update(_defaults())
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _fields())

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in _fields())
        return f"{self.__class__.__name__}({values})"

    @classmethod
    def fields(cls) -> dict[str, str]:
        """Every setting's name and type name (``"int"``, ``"float"``, ``"str"``, ``"bool"``)."""
        return dict(_fields())

    @classmethod
    def field_names(cls) -> list[str]:
        return list(_fields())

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied (as ``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in _fields()}
        values.update(changes)
        return self.__class__(**values)

    def apply(self, overrides: dict[str, Any]) -> None:
        """Apply overrides by field name; unknown names raise ValueError."""
        types = _fields()
        for name, value in overrides.items():
            if name not in types:
                raise ValueError(
                    f"unknown nbray config option {name!r}; known options: "
                    + ", ".join(sorted(types))
                )
            setattr(self, name, _coerce(name, types[name], value))

    def apply_env(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        for name, kind in _fields().items():
            key = "NBRAY_" + name.upper()
            if key in env:
                setattr(self, name, _coerce(name, kind, env[key]))

    def overrides(self) -> dict[str, Any]:
        """Fields that differ from the defaults."""
        default = _defaults()
        return {name: getattr(self, name) for name in _fields() if getattr(self, name) != default[name]}

    def to_json(self) -> str:
        return json.dumps(self.overrides())

    @classmethod
    def from_json(cls, text: str) -> Config:
        cfg = cls()
        cfg.apply_env()
        if text:
            cfg.apply(json.loads(text))
        return cfg


_FIELDS: dict[str, str] = {}
_DEFAULTS: dict[str, Any] = {}


def _fields() -> dict[str, str]:
    """Name -> type name of every setting, in declaration order (read once from the annotations)."""
    if not _FIELDS:
        for name, kind in Config.__annotations__.items():
            _FIELDS[name] = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return _FIELDS


def _defaults() -> dict[str, Any]:
    if not _DEFAULTS:
        _DEFAULTS.update((name, getattr(Config, name)) for name in _fields())
    return _DEFAULTS


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config option {name} expects {kind}, got {value!r}") from exc


_config: Config | None = None


def get_config() -> Config:
    """The configuration of this process (defaults + NBRAY_* environment)."""
    global _config
    if _config is None:
        _config = Config()
        _config.apply_env()
    return _config


def set_config(config: Config) -> None:
    """Replace this process's configuration (done once at start-up)."""
    global _config
    _config = config


def start_daemon(label: str, config_json: str) -> tuple[Config, bytes]:
    """A daemon's first steps: its log format, the cluster's configuration
    (made this process's) and the cluster token, taken out of the
    environment so nothing this process starts inherits it by accident."""
    import logging

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {label}: %(message)s")
    config = Config.from_json(config_json)
    set_config(config)
    return config, bytes.fromhex(os.environ.pop("NBRAY_AUTH_TOKEN"))
