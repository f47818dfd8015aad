"""The per-user registry of the clusters running on this machine.

Used by every process that starts, looks for or stops a cluster: ``nbray
start/stop/status/...``, drivers (``nbray.init``) and the test helpers.

A cluster's files live under the temp root it was started with
(``--temp-dir``), which another process cannot guess. The registry is the
one place every process of the user looks, whatever root it was given:

    $NBRAY_TMPDIR/nbray-clusters-<uid>/          mode 0700, owned by the user
        <host>_<port>.<session name>.json        one per node session started here

It sits beside the default root (``$NBRAY_TMPDIR/nbray``), not inside it,
so it does not depend on who created that shared directory. An entry
names a session directory, its temp root, the GCS address and the pids
started for it; never the token, which stays in the session directory
with mode 0600, readable by the same user only. An entry whose processes
are all gone is stale: lookups skip it and delete it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from nbray.common.config import get_config
from nbray.node import cluster_processes

logger = logging.getLogger(__name__)

ROLE_HEAD = "head"    # `nbray start --head`: what address="auto" finds
ROLE_LOCAL = "local"  # a cluster a driver started for itself (nbray.init()); found by address only
ROLE_NODE = "node"    # a node that joined with a session directory of its own


class UnsafeRegistryError(PermissionError):
    """The registry directory exists but another user could change it."""


@dataclass(frozen=True)
class RegistryEntry:
    """One node session running on this machine."""

    gcs_address: str
    session_dir: str
    temp_root: str
    role: str
    pids: dict[str, int] = field(default_factory=dict)  # process name -> pid started for it
    started_by_pid: int = 0
    started_at_s: float = 0.0
    path: str = field(default="", compare=False)  # the entry's file (not stored in it)

    def running(self) -> bool:
        """Some process started for this session still runs."""
        return any(cluster_processes.runs_session(pid, self.session_dir) for pid in self.pids.values())


def registry_dir() -> str:
    base = os.environ.get("NBRAY_TMPDIR") or tempfile.gettempdir()
    return os.path.join(base, f"nbray-clusters-{os.getuid()}")


def _check_private(path: str) -> None:
    """Raise UnsafeRegistryError unless `path` is a real directory of this user, closed to others."""
    st = os.lstat(path)
    what_to_do = (f"remove {path} if you do not know who made it, or set NBRAY_TMPDIR to a "
                  "directory only you can write")
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRegistryError(f"the nbray cluster registry {path} is a symbolic link; {what_to_do}")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRegistryError(f"the nbray cluster registry {path} is not a directory; {what_to_do}")
    if st.st_uid != os.getuid():
        raise UnsafeRegistryError(f"the nbray cluster registry {path} belongs to uid {st.st_uid}, "
                                  f"not to you (uid {os.getuid()}); {what_to_do}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours: close it rather than refuse


def ensure_registry_dir() -> str:
    """The registry directory, created with mode 0700 if missing.

    Raises UnsafeRegistryError if it exists and is a link, not a directory,
    or another user's.
    """
    path = registry_dir()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    _check_private(path)
    return path


def _entry_file_name(gcs_address: str, session_dir: str) -> str:
    safe_address = "".join(c if c.isalnum() or c in ".-" else "_" for c in gcs_address)
    return f"{safe_address}.{os.path.basename(session_dir.rstrip(os.sep))}.json"


def register(*, gcs_address: str, session_dir: str, role: str, pids: dict[str, int]) -> str:
    """Record a node session started by this process; returns the entry's path (for `unregister`).

    Raises UnsafeRegistryError when the registry directory cannot be trusted.
    """
    directory = ensure_registry_dir()
    entry = RegistryEntry(gcs_address=gcs_address, session_dir=os.path.abspath(session_dir),
                          temp_root=os.path.dirname(os.path.abspath(session_dir)), role=role, pids=dict(pids),
                          started_by_pid=os.getpid(), started_at_s=time.time())
    path = os.path.join(directory, _entry_file_name(gcs_address, entry.session_dir))
    data = asdict(entry)
    del data["path"]
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


def unregister(path: str) -> None:
    """Remove an entry; nothing happens if it is already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_entry(path: str) -> RegistryEntry | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return RegistryEntry(gcs_address=str(data["gcs_address"]), session_dir=str(data["session_dir"]),
                             temp_root=str(data["temp_root"]), role=str(data["role"]),
                             pids={str(k): int(v) for k, v in dict(data.get("pids", {})).items()},
                             started_by_pid=int(data.get("started_by_pid", 0)),
                             started_at_s=float(data.get("started_at_s", 0.0)), path=path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("skipping the unreadable registry entry %s: %s", path, exc)
        return None


def entries(*, include_stale: bool = False,
            running: Callable[[RegistryEntry], bool] = RegistryEntry.running) -> list[RegistryEntry]:
    """Registered sessions, newest first; stale ones are deleted unless `include_stale`.

    An untrusted registry directory is ignored (with a warning): its entries
    could point anywhere.
    """
    path = registry_dir()
    try:
        _check_private(path)
        names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    except (UnsafeRegistryError, OSError) as exc:
        logger.warning("not reading the nbray cluster registry: %s", exc)
        return []
    limit = get_config().max_registered_sessions
    if len(names) > limit:
        logger.warning("the nbray cluster registry %s holds %d entries; reading the first %d", path,
                       len(names), limit)
    out = []
    for name in names[:limit]:
        entry = _read_entry(os.path.join(path, name))
        if entry is None:
            continue
        if include_stale or running(entry):
            out.append(entry)
        else:
            unregister(entry.path)
    out.sort(key=lambda e: e.started_at_s, reverse=True)
    return out
