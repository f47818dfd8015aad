"""Which nbray clusters the Jupyter server can see (Jupyter server process).

Three places, in order of preference:

1. the address configured for the server (``c.NbrayExtension.address``);
2. ``NBRAY_ADDRESS`` in the server's environment;
3. clusters started on this machine (``nbray start --head``, or
   ``nbray.init()`` in a kernel): their session directories hold
   ``cluster.json`` (GCS address, pids, dashboard URL) and the token file.

Tokens are read here and stay in this process: ``Candidate.public()``
leaves them out of everything sent to the browser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from nbray.exceptions import AuthenticationError
from nbray.node import session
from nbray.node.launcher import pid_alive
from nbray.rpc import auth

MAX_SESSIONS_SCANNED = 200


@dataclass
class Candidate:
    """A cluster the panel may show."""

    gcs_address: str
    origin: str                      # "configured", "NBRAY_ADDRESS" or "local"
    description: str = ""
    session_dir: str | None = None
    dashboard_url: str = ""
    started_ms: int = 0
    head_pid: int | None = None
    token: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.gcs_address

    def public(self) -> dict[str, Any]:
        """What the browser may see (no token)."""
        return {"id": self.id, "gcs_address": self.gcs_address, "origin": self.origin,
                "description": self.description, "started_ms": self.started_ms,
                "session_name": os.path.basename(self.session_dir) if self.session_dir else None,
                "has_token": self.token is not None}


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def describe_head(gcs_pid: int | None) -> str:
    """Who started a local cluster: a notebook kernel, another process, or `nbray start`."""
    if not gcs_pid:
        return "local cluster"
    args = _cmdline(gcs_pid)
    if "--parent-pid" not in args:
        return "started with nbray start"
    try:
        parent = int(args[args.index("--parent-pid") + 1])
    except (IndexError, ValueError):
        return "local cluster"
    parent_args = " ".join(_cmdline(parent))
    if "ipykernel" in parent_args:
        return f"started by a notebook kernel (pid {parent})"
    return f"started by process {parent}"


def local_clusters(temp_root: str | None = None) -> list[Candidate]:
    """Alive clusters whose session directories are under the temp root, newest first."""
    root = temp_root or session.default_temp_root()
    try:
        names = sorted((n for n in os.listdir(root) if n.startswith("session_")), reverse=True)
    except OSError:
        return []
    out = []
    for name in names[:MAX_SESSIONS_SCANNED]:
        path = os.path.join(root, name)
        if os.path.islink(path):
            continue
        try:
            info = session.read_cluster_info(path)
            started_ms = int(os.stat(os.path.join(path, "cluster.json")).st_mtime * 1000)
        except (OSError, ValueError):
            continue
        gcs_pid = (info.get("pids") or {}).get("gcs")
        if not isinstance(gcs_pid, int) or not pid_alive(gcs_pid):
            continue
        token = _read_token(os.path.join(path, auth.TOKEN_FILE_NAME))
        out.append(Candidate(gcs_address=str(info.get("gcs_address", "")), origin="local",
                             description=describe_head(gcs_pid), session_dir=path,
                             dashboard_url=str(info.get("dashboard_url") or ""), started_ms=started_ms,
                             head_pid=gcs_pid, token=token))
    out.sort(key=lambda c: c.started_ms, reverse=True)
    return [c for c in out if c.gcs_address]


def _read_token(path: str) -> bytes | None:
    try:
        return auth.read_token_file(path)
    except (AuthenticationError, OSError):
        return None


def remote_candidate(address: str, origin: str, token_path: str = "",
                     local: list[Candidate] | None = None) -> Candidate | None:
    """A cluster known by its GCS address; local session files are used when they match."""
    address = address.strip()
    if not address or address in ("auto", "local") or "://" in address:
        return None  # client-mode (nbray://) addresses have no GCS to read
    for c in local or []:
        if c.gcs_address == address:
            return Candidate(gcs_address=address, origin=origin, description=c.description,
                             session_dir=c.session_dir, dashboard_url=c.dashboard_url, started_ms=c.started_ms,
                             head_pid=c.head_pid, token=c.token)
    token = None
    if token_path:
        token = _read_token(os.path.expanduser(token_path))
    if token is None:
        try:
            token = auth.token_from_environment()
        except AuthenticationError:
            token = None
    return Candidate(gcs_address=address, origin=origin, description=f"cluster at {address}", token=token)


def all_candidates(configured_address: str, configured_token_path: str,
                   temp_root: str | None = None) -> list[Candidate]:
    """Every visible cluster, the preferred one first, each address once."""
    local = local_clusters(temp_root)
    out: list[Candidate] = []
    configured = remote_candidate(configured_address, "configured", configured_token_path, local)
    if configured is not None:
        out.append(configured)
    env = remote_candidate(os.environ.get(session.ADDRESS_ENV, ""), "NBRAY_ADDRESS", "", local)
    if env is not None:
        out.append(env)
    out.extend(local)
    seen: set[str] = set()
    unique = []
    for c in out:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique
