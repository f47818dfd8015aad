"""Timeouts and bounds of the notebook integration, in one typed object.

Runs in the notebook kernel. Each field can be overridden with
``NBRAY_NOTEBOOK_<FIELD>`` (read when the extension loads). They live here,
not in ``nbray.common.config.Config``, because only the kernel reads them.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass
class NotebookSettings:
    # After Ctrl-C, how long a remote cell may take to stop before it is
    # force-cancelled (its worker killed; a session's actor is killed).
    cancel_grace_s: float = 3.0
    # After a forced cancel, how long to wait for the task to end.
    cancel_force_wait_s: float = 5.0
    # How long a finished remote cell waits for the rest of its output
    # (the end markers) to reach the notebook.
    output_wait_s: float = 5.0
    # Deadline of the log flush barrier run after each cell.
    flush_logs_timeout_s: float = 1.0
    # Cells whose output destinations are remembered (oldest forgotten).
    max_tracked_cells: int = 2_000
    # Refresh period of ClusterView and TaskGraph widgets.
    widget_refresh_s: float = 1.0
    # How often progress() checks its refs.
    progress_poll_s: float = 0.1
    # TaskGraph shows one node per function above this many tasks.
    task_graph_collapse_above: int = 300
    # Task rows one TaskGraph refresh reads at most.
    task_graph_max_rows: int = 100_000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> NotebookSettings:
        env = os.environ if environ is None else environ
        settings = cls()
        for f in dataclasses.fields(settings):
            key = "NBRAY_NOTEBOOK_" + f.name.upper()
            if key in env:
                kind = type(getattr(settings, f.name))
                try:
                    setattr(settings, f.name, kind(env[key]))
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r} is not a valid {kind.__name__}") from None
        return settings


_settings: list[NotebookSettings | None] = [None]


def get_settings() -> NotebookSettings:
    settings = _settings[0]
    if settings is None:
        settings = _settings[0] = NotebookSettings.from_env()
    return settings
