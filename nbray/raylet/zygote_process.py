"""Starting the worker factory (``zygote.py``), a child process of the raylet.

Runs in the raylet process. ``python -m nbray.raylet`` starts the factory
from its own command line before it imports the raylet's modules
(``start_early``), so that the factory imports the workers' modules while
the raylet imports its own: the first worker is ready that much sooner.
The raylet then takes that factory over (``take_early``) if it was started
with the arguments and configuration the raylet would give it, and
otherwise starts one itself (``spawn``).

This module imports ``os`` and ``sys`` alone, and ``start_early`` nothing
more (no argparse, subprocess or socket, not even typing): whatever the
raylet imports before the factory runs delays every first worker.
"""

from __future__ import annotations

import os
import sys

from nbray.common.child_process import ChildProcess

# typing costs as much as the rest of the early start: the name alone tells type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from nbray.common.config import Config

_CONTROL_FLAGS = ("--node-id", "--gcs-address", "--session-dir")


class ZygoteProcess:
    """A started worker factory and the raylet's end of its control connection."""

    # A plain class, not a dataclass: ``dataclasses`` (and ``inspect``) would
    # cost the raylet more before it starts the factory than the rest of this module.
    def __init__(self, proc: ChildProcess, control_fd: int, args: list[str], config_json: str) -> None:
        self.proc = proc
        self.control_fd = control_fd
        self.args = args  # its command-line arguments: log socket, then the workers' arguments
        self.config_json = config_json  # the configuration its workers run with (NBRAY_CONFIG_JSON)
        self._control: socket.socket | None = None

    def __repr__(self) -> str:
        return f"ZygoteProcess(pid={self.proc.pid}, args={self.args!r})"

    @property
    def control(self) -> socket.socket:
        """The control connection as a socket (made on first use: the early start imports no socket)."""
        if self._control is None:
            import socket

            self._control = socket.socket(fileno=self.control_fd)
        return self._control

    def discard(self) -> None:
        if self._control is not None:
            self._control.close()  # the factory exits on EOF
        else:
            os.close(self.control_fd)
        self.proc.kill()
        self.proc.wait()


def zygote_args(*, log_socket: str, raylet_socket: str, node_id: bytes, node_ip: str, gcs_address: str,
                session_dir: str) -> list[str]:
    """The factory's command-line arguments (after its control fd)."""
    return [log_socket, "--raylet-socket", raylet_socket, "--node-id", node_id.hex(), "--node-ip", node_ip,
            "--gcs-address", gcs_address, "--session-dir", session_dir]


def socket_paths(session_dir: str, node_id: bytes) -> tuple[str, str]:
    """The raylet's socket and its log socket, as the raylet names them: (raylet, logs)."""
    from nbray.node import session

    short = node_id.hex()[:8]
    return (session.socket_path(session_dir, f"raylet-{short}.sock"),
            session.socket_path(session_dir, f"logs-{short}.sock"))


def log_path(session_dir: str, node_id: bytes) -> str:
    return os.path.join(session_dir, "logs", f"zygote-{node_id.hex()[:8]}.log")


def spawn(args: list[str], token: bytes, config_json: str, log_file: str) -> ZygoteProcess:
    """Start a factory with `args` (see ``zygote_args``); its workers authenticate with `token`.

    Only the factory's end of the control connection and the standard
    streams (stdin from /dev/null, stdout and stderr to `log_file`) pass to
    it: every other inheritable descriptor of this process is closed there.
    """
    ours, theirs = _socketpair()
    env = dict(os.environ)
    env["NBRAY_AUTH_TOKEN"] = token.hex()
    env["PYTHONUNBUFFERED"] = "1"
    env["NBRAY_CONFIG_JSON"] = config_json
    actions: list[tuple[int | str, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if fd > 2 and fd != theirs]
    try:
        os.set_inheritable(theirs, True)
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "nbray.raylet.zygote", str(theirs), *args],
                             env, file_actions=actions)
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
    return ZygoteProcess(ChildProcess(pid, f"worker factory {pid}"), ours, list(args), config_json)


def _socketpair() -> tuple[int, int]:
    """A connected pair of Unix stream sockets, as descriptors (not inheritable)."""
    import _socket  # the socket module's C core: ``socket`` itself would import enum and selectors here

    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return a.detach(), b.detach()


def _inheritable_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if os.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the directory listing's own descriptor, closed by now
            pass
    return fds


def _flag_values(argv: list[str], flags: tuple[str, ...]) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` pairs of `argv` for `flags` (the last one wins, as in argparse)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in flags:
            continue
        if eq:
            found[name] = value
        elif i + 1 < len(argv):
            found[name] = argv[i + 1]
    return found


_early: ZygoteProcess | None = None


def start_early(raylet_argv: list[str]) -> None:
    """Start the factory from the raylet's command line, before the raylet's imports.

    Never raises: whatever is missing or wrong here, the raylet reports it
    itself, and starts its factory when it is ready (``take_early`` returns None).
    """
    global _early
    values = _flag_values(raylet_argv, (*_CONTROL_FLAGS, "--node-ip", "--config-json"))
    try:
        if any(flag not in values for flag in _CONTROL_FLAGS):
            return
        token = bytes.fromhex(os.environ["NBRAY_AUTH_TOKEN"])
        node_id = bytes.fromhex(values["--node-id"])
        session_dir = values["--session-dir"]
        raylet_socket, log_socket = socket_paths(session_dir, node_id)
        args = zygote_args(log_socket=log_socket, raylet_socket=raylet_socket, node_id=node_id,
                           node_ip=values.get("--node-ip", "127.0.0.1"), gcs_address=values["--gcs-address"],
                           session_dir=session_dir)
        _early = spawn(args, token, values.get("--config-json", ""), log_path(session_dir, node_id))
    except (KeyError, ValueError, OSError):
        _early = None


def take_early(args: list[str], config: Config) -> ZygoteProcess | None:
    """The factory ``start_early`` started, if it runs with `args` and `config`; else None
    (and that factory, if any, is stopped)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    from nbray.common.config import Config

    if early.args == args and early.proc.poll() is None and Config.from_json(early.config_json) == config:
        return early
    early.discard()
    return None
