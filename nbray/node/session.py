"""Session directories and how processes find a running cluster.

    <root>/session_<time>_<pid>/
        auth_token          the cluster token (mode 0600)
        cluster.json        GCS address, head node, dashboard, client server
        sockets/            Unix sockets of the raylets
        logs/               output of every process
        spill/<node>/       spilled objects
    <root>/nbray_current_cluster   address of the newest head (for "auto")
    <root>/session_latest          link to the newest session
    <root>/head-port-<port>/       token and GCS tables of the head on that port, kept
                                   across its starts (head_state.py)

``<root>`` is the directory given as ``--temp-dir`` (``nbray start``,
``stop``, ``status``, ...) or ``_temp_dir`` (``nbray.init``), as Ray's
``--temp-dir`` replaces ``/tmp/ray``; by default ``$NBRAY_TMPDIR/nbray``
(the system temp directory when ``NBRAY_TMPDIR`` is unset). Every file of
a cluster lives under its root; the per-user registry (``registry.py``)
records each running cluster, so a process of the same user finds it (and
its token) by address or with "auto" whatever root it was started with.
"""

from __future__ import annotations

import os
import stat

# The registry and the process table (and the config they read) are imported
# by the functions that look clusters up, and json by those that read or write
# a file: a raylet imports this module for its socket paths before anything
# else, to start its worker factory early. For the same reason, not typing's
# TYPE_CHECKING (type checkers treat the name itself as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

ADDRESS_ENV = "NBRAY_ADDRESS"


def default_temp_root() -> str:
    base = os.environ.get("NBRAY_TMPDIR")
    return os.path.join(_system_temp_dir() if base is None else base, "nbray")


def _system_temp_dir() -> str:
    import tempfile  # with shutil and random: more than the rest of this module

    return tempfile.gettempdir()


def resolve_temp_root(temp_dir: str | None = None) -> str:
    """The root of session files: `temp_dir` when given, else the default."""
    return os.path.abspath(temp_dir) if temp_dir else default_temp_root()


def new_session_dir(temp_root: str | None = None) -> str:
    import time  # not datetime: a cluster start waits for this, and datetime costs more

    # Absolute: processes are found by the --session-dir on their command line.
    root = os.path.abspath(temp_root or default_temp_root())
    os.makedirs(root, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")  # local time, as datetime.now() gives
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
    short = _short_socket_dir(session_dir)
    os.makedirs(short, mode=0o700, exist_ok=True)
    return os.path.join(short, name)


def _short_socket_dir(session_dir: str) -> str:
    import hashlib

    digest = hashlib.sha1(session_dir.encode()).hexdigest()[:12]
    return os.path.join(_system_temp_dir(), f"nbray-s-{digest}")


def remove_sockets(session_dir: str) -> None:
    """After a node of the session stopped: remove the socket files no
    process listens on any more (killed processes leave theirs), and the
    short directory under /tmp that deep session paths use once it is
    empty. Sockets still served (another node of the same session) stay."""
    short = _short_socket_dir(session_dir)
    for directory in (os.path.join(session_dir, "sockets"), short):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".sock") and not _served(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
    try:
        os.rmdir(short)
    except OSError:
        pass


def _served(path: str) -> bool:
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def write_cluster_info(session_dir: str, info: dict[str, Any]) -> None:
    import json

    path = os.path.join(session_dir, "cluster.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, path)


def read_cluster_info(session_dir: str) -> dict[str, Any]:
    import json

    with open(os.path.join(session_dir, "cluster.json")) as f:
        data: dict[str, Any] = json.load(f)
    return data


def local_head_sessions() -> Iterator[tuple[str, dict[str, Any]]]:
    """(session dir, cluster info) of the heads on this machine a process of
    this user may know: those of the user's registry (any --temp-dir), then
    the default root's, newest first; links and unreadable ones skipped."""
    root = default_temp_root()
    try:
        names = sorted(os.listdir(root), reverse=True)
    except OSError:
        names = []
    from nbray.node import registry

    paths = [e.session_dir for e in registry.entries() if e.role == registry.ROLE_HEAD]
    paths += [os.path.join(root, name) for name in names if name.startswith("session_")]
    for path in paths:
        if os.path.islink(path):
            continue
        try:
            info = read_cluster_info(path)
        except (OSError, ValueError):
            continue
        yield path, info


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


def _current_file(root: str) -> tuple[str, str] | None:
    try:
        with open(os.path.join(root, "nbray_current_cluster")) as f:
            lines = f.read().split()
    except OSError:
        return None
    if len(lines) < 2 or not os.path.isdir(lines[1]):
        return None
    return lines[0], lines[1]


def session_pids(session_dir: str) -> dict[str, int]:
    """Pids recorded in a session's files (the head's cluster.json and every node-*.json),
    by "<file>:<process>"."""
    import json

    pids: dict[str, int] = {}
    try:
        names = os.listdir(session_dir)
    except OSError:
        return pids
    for name in names:
        if name == "cluster.json" or (name.startswith("node-") and name.endswith(".json")):
            try:
                with open(os.path.join(session_dir, name)) as f:
                    recorded = json.load(f).get("pids", {})
                pids.update({f"{name}:{proc}": int(pid) for proc, pid in dict(recorded).items()})
            except (OSError, ValueError, TypeError, AttributeError):
                continue
    return pids


def session_running(session_dir: str) -> bool:
    """Some process recorded in the session's files still runs for it."""
    from nbray.node import cluster_processes

    return any(cluster_processes.runs_session(pid, session_dir) for pid in session_pids(session_dir).values())


def find_current_cluster(temp_root: str | None = None) -> tuple[str, str] | None:
    """(gcs address, session dir) of the newest running head on this machine.

    With `temp_root`, only a head started under that root; without it, the
    default root's newest head, else the newest head of the user's registry.
    """
    from nbray.node import registry

    root = os.path.abspath(temp_root) if temp_root else default_temp_root()
    current = _current_file(root)
    if current is not None and session_running(current[1]):
        return current
    for entry in registry.entries():
        if entry.role == registry.ROLE_HEAD and (temp_root is None or entry.temp_root == root):
            return entry.gcs_address, entry.session_dir
    # Its processes may run where this one cannot see them (another pid namespace).
    return current


def same_address(a: str, b: str) -> bool:
    """Two HOST:PORT strings name the same listener (loopback spellings are equal)."""
    if a == b:
        return True
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    loopback = {"127.0.0.1", "localhost", "::1", "[::1]"}
    return bool(port_a) and port_a == port_b and host_a in loopback and host_b in loopback


def session_for_address(gcs_address: str, temp_root: str | None = None) -> str | None:
    """The session dir of a cluster on this machine with this GCS address.

    A running cluster is preferred: first the registry (any root), then the
    sessions under `temp_root` and the default root. A stopped session with
    the address is returned only when no running one has it.
    """
    from nbray.node import registry

    candidates = [e for e in registry.entries() if same_address(e.gcs_address, gcs_address)]
    candidates.sort(key=lambda e: e.role == registry.ROLE_NODE)  # a head's own session first
    if candidates:
        return candidates[0].session_dir
    roots = [default_temp_root()]
    if temp_root and os.path.abspath(temp_root) != roots[0]:
        roots.insert(0, os.path.abspath(temp_root))
    stopped: str | None = None
    for root in roots:
        for path in _sessions_with_address(root, gcs_address):
            if session_running(path):
                return path
            stopped = stopped or path
    return stopped


def _sessions_with_address(root: str, gcs_address: str) -> list[str]:
    """Session dirs under `root` for this GCS address, the current one and then the newest first."""
    out = []
    current = _current_file(root)
    if current and same_address(current[0], gcs_address):
        out.append(current[1])
    try:
        names = sorted(os.listdir(root), reverse=True)
    except OSError:
        return out
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith("session_") or os.path.islink(path) or path in out:
            continue
        try:
            info = read_cluster_info(path)
        except (OSError, ValueError):
            continue
        if same_address(str(info.get("gcs_address", "")), gcs_address):
            out.append(path)
    return out


def find_token(session_dir: str | None) -> bytes | None:
    """Token from the environment, else from the session directory.

    A token file found on disk is used only if it is a regular file of this
    user, not a link: a session directory under a shared root may hold
    another user's files, and the token is sent to the address connected to.
    """
    from nbray.rpc import auth  # here: the raylet reads socket paths from this module before its own imports

    token = auth.token_from_environment()
    if token is not None:
        return token
    if session_dir:
        path = os.path.join(session_dir, auth.TOKEN_FILE_NAME)
        if own_regular_file(path):
            return auth.read_token_file(path)
    return None


def own_regular_file(path: str) -> bool:
    """`path` is a regular file (not a link) owned by this process's user."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
