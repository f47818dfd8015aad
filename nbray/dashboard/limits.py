"""Bounds and periods of the dashboard (dashboard process and Jupyter relay).

Each field can be overridden with ``NBRAY_DASHBOARD_<FIELD_NAME_UPPER>``.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass
class DashboardLimits:
    # Tasks kept in the dashboard's table (finished ones are evicted first).
    max_tasks: int = 100_000
    # Events kept for clients that reconnect with Last-Event-ID.
    sse_replay_events: int = 2_000
    # Events queued for one slow client before it is told to reload.
    sse_max_queued: int = 2_000
    # Task changes are merged and sent at most this often.
    sse_flush_interval_ms: int = 100
    # Task rows in one "tasks" event.
    sse_max_tasks_per_event: int = 2_000
    # A comment line is sent this often so proxies keep the stream open.
    sse_keepalive_ms: int = 15_000
    # Raylets are asked for GPU holders and workers this often while someone watches.
    node_stats_period_ms: int = 1_000
    # Objects listings are reused for this long.
    objects_cache_ms: int = 1_000
    # Deadline of calls to raylets and core workers.
    peer_rpc_timeout_ms: int = 5_000
    # Deadline of calls to the GCS.
    gcs_rpc_timeout_ms: int = 10_000
    # Rows still missing a report are fetched again after this long, doubling each time ...
    task_followup_delay_ms: int = 250
    # ... at most this many times per task (250 ms to 4 s: past a report interval of 1 s).
    task_followup_tries: int = 5
    # Largest request body accepted (and discarded: bodies are never read).
    max_body_bytes: int = 64 * 1024
    # How long the dashboard tries to reach a lost GCS before it exits.
    gcs_reconnect_timeout_ms: int = 60_000
    # Time between attempts to reach a lost GCS.
    gcs_reconnect_period_ms: int = 1_000

    @classmethod
    def from_env(cls) -> DashboardLimits:
        limits = cls()
        for f in dataclasses.fields(cls):
            key = "NBRAY_DASHBOARD_" + f.name.upper()
            if key in os.environ:
                try:
                    setattr(limits, f.name, int(os.environ[key]))
                except ValueError:
                    raise ValueError(f"{key} must be a whole number, got {os.environ[key]!r}") from None
        return limits
