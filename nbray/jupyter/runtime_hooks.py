"""The nbray runtime's driver hooks, as the notebook layer names them.

Runs in the notebook kernel. Kept for the widgets and older callers; the
hooks themselves live in the runtime core (``nbray.driver_hooks``), so no
notebook module reaches into ``nbray.worker``.
"""

from __future__ import annotations

from nbray.driver_hooks import cluster_status, default_log_handler, flush_logs, root_context, runtime

__all__ = ["cluster_status", "default_log_handler", "flush_logs", "root_context", "runtime"]
