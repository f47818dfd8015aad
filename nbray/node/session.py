"""Session directories and how processes find a running cluster.

    <root>/session_<time>_<pid>/
        auth_token          the cluster token (mode 0600)
        cluster.json        GCS address, head node, dashboard, client server
        sockets/            Unix sockets of the raylets
        logs/               output of every process
        spill/<node>/       spilled objects
    <root>/nbray_current_cluster   address of the newest head (for "auto")
    <root>/session_latest          link to the newest session

``<root>`` is the directory given as ``--temp-dir`` (``nbray start``,
``stop``, ``status``, ...) or ``_temp_dir`` (``nbray.init``), as Ray's
``--temp-dir`` replaces ``/tmp/ray``; by default ``$NBRAY_TMPDIR/nbray``
(the system temp directory when ``NBRAY_TMPDIR`` is unset). Every file of
a cluster lives under the same root, so the same ``--temp-dir`` (or the
same ``NBRAY_TMPDIR``) finds it again.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from typing import Any

from nbray.rpc import auth

ADDRESS_ENV = "NBRAY_ADDRESS"


def default_temp_root() -> str:
    return os.path.join(os.environ.get("NBRAY_TMPDIR", tempfile.gettempdir()), "nbray")


def resolve_temp_root(temp_dir: str | None = None) -> str:
    """The root of session files: `temp_dir` when given, else the default."""
    return os.path.abspath(temp_dir) if temp_dir else default_temp_root()


def new_session_dir(temp_root: str | None = None) -> str:
    root = temp_root or default_temp_root()
    os.makedirs(root, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(root, f"session_{stamp}_{os.getpid()}_{os.urandom(2).hex()}")
    for sub in ("", "sockets", "logs", "spill"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    return path


UNIX_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


def socket_path(session_dir: str, name: str) -> str:
    """Path of a Unix socket of the session, short enough for the kernel.

    Sockets live in <session>/sockets unless that path is too long (deep
    temp dirs), in which case a short private directory under /tmp is used.
    """
    path = os.path.join(session_dir, "sockets", name)
    if len(path) <= UNIX_PATH_MAX:
        return path
    import hashlib

    digest = hashlib.sha1(session_dir.encode()).hexdigest()[:12]
    short = os.path.join(tempfile.gettempdir(), f"nbray-s-{digest}")
    os.makedirs(short, mode=0o700, exist_ok=True)
    return os.path.join(short, name)


def write_cluster_info(session_dir: str, info: dict[str, Any]) -> None:
    path = os.path.join(session_dir, "cluster.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, path)


def read_cluster_info(session_dir: str) -> dict[str, Any]:
    with open(os.path.join(session_dir, "cluster.json")) as f:
        data: dict[str, Any] = json.load(f)
    return data


def publish_current_cluster(session_dir: str, gcs_address: str, temp_root: str | None = None) -> None:
    """Record the cluster so `init(address="auto")` and the CLI find it."""
    root = temp_root or default_temp_root()
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "nbray_current_cluster")
    tmp = path + f".{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{gcs_address}\n{session_dir}\n")
    os.replace(tmp, path)
    link = os.path.join(root, "session_latest")
    tmp = link + f".{os.getpid()}"
    try:
        os.symlink(session_dir, tmp)
        os.replace(tmp, link)
    except OSError:
        pass


def forget_current_cluster(session_dir: str, temp_root: str | None = None) -> None:
    root = temp_root or default_temp_root()
    current = os.path.join(root, "nbray_current_cluster")
    try:
        with open(current) as f:
            lines = f.read().split()
        if len(lines) >= 2 and lines[1] == session_dir:
            os.unlink(current)
    except OSError:
        pass


def find_current_cluster(temp_root: str | None = None) -> tuple[str, str] | None:
    """(gcs address, session dir) of the newest running head on this machine."""
    root = temp_root or default_temp_root()
    try:
        with open(os.path.join(root, "nbray_current_cluster")) as f:
            lines = f.read().split()
    except OSError:
        return None
    if len(lines) < 2 or not os.path.isdir(lines[1]):
        return None
    return lines[0], lines[1]


def session_for_address(gcs_address: str, temp_root: str | None = None) -> str | None:
    """The session dir of a cluster on this machine with this GCS address."""
    found = find_current_cluster(temp_root)
    if found and found[0] == gcs_address:
        return found[1]
    root = temp_root or default_temp_root()
    try:
        names = sorted(os.listdir(root), reverse=True)
    except OSError:
        return None
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith("session_") or os.path.islink(path):
            continue
        try:
            info = read_cluster_info(path)
        except (OSError, ValueError):
            continue
        if info.get("gcs_address") == gcs_address:
            return path
    return None


def find_token(session_dir: str | None) -> bytes | None:
    """Token from the environment, else from the session directory."""
    token = auth.token_from_environment()
    if token is not None:
        return token
    if session_dir:
        path = os.path.join(session_dir, auth.TOKEN_FILE_NAME)
        if os.path.exists(path):
            return auth.read_token_file(path)
    return None
