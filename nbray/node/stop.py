"""Stopping every cluster of the user on this machine (``nbray stop``).

Runs in the ``nbray stop`` process. The clusters are those of the user's
registry, whatever temp root each was started under, and any session
directory under the default root (clusters that predate the registry or
whose entry was lost); ``--temp-dir`` narrows both to one root. Their
processes are found on the machine (``cluster_processes``), not trusted
from files, and the command returns only once none of them runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nbray.common.config import get_config
from nbray.node import cluster_processes, registry, session


@dataclass
class StopReport:
    """What ``stop_clusters`` did."""

    session_dirs: list[str] = field(default_factory=list)
    stopped_pids: set[int] = field(default_factory=set)
    killed_pids: set[int] = field(default_factory=set)  # needed SIGKILL
    survivors: set[int] = field(default_factory=set)    # still running: the stop failed


def sessions_under(root: str) -> list[str]:
    """Session directories directly under `root`."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(root, name)
        if name.startswith("session_") and not os.path.islink(path) and os.path.isdir(path):
            out.append(path)
    return out


def stop_clusters(temp_root: str | None = None, *, force: bool = False) -> StopReport:
    """Stop the user's clusters on this machine (only those under `temp_root` when given).

    Graceful unless `force`: SIGTERM, then SIGKILL for what still runs after
    the config's stop grace period. Registry entries and "current cluster"
    records of the stopped sessions are removed.
    """
    config = get_config()
    root = os.path.abspath(temp_root) if temp_root else None
    entries = [e for e in registry.entries(include_stale=True) if root is None or e.temp_root == root]
    dirs = {e.session_dir for e in entries}
    dirs.update(sessions_under(root or session.default_temp_root()))
    me, uid = os.getpid(), os.getuid()

    find = cluster_processes.MemberTracker(
        lambda table: cluster_processes.cluster_members(table, session_dirs=dirs, uid=uid, exclude=(me,)))
    members = find()
    stages: list[list[int]] = [[] for _ in cluster_processes.SERVICE_STAGES]
    for pid in members:
        stage = cluster_processes.service_stage(find.table[pid].argv)
        if stage is not None:
            stages[stage].append(pid)
    outcome = cluster_processes.stop_members(find, stages, force=force, grace_s=config.stop_grace_period_ms / 1000,
                                             kill_wait_s=config.stop_kill_wait_ms / 1000)
    if not outcome.survivors:
        for entry in entries:
            registry.unregister(entry.path)
        for path in dirs:
            session.forget_current_cluster(path, temp_root=os.path.dirname(path))
            session.remove_sockets(path)
    return StopReport(session_dirs=sorted(dirs), stopped_pids=outcome.stopped, killed_pids=outcome.killed,
                      survivors=outcome.survivors)
