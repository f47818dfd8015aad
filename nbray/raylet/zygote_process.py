"""Starting the worker factory (``zygote.py``), a child process of the raylet.

Runs in the raylet process. ``python -m nbray.raylet`` starts the factory
from its own command line before it imports the raylet's modules
(``start_early``), so that the factory imports the worker's modules while
the raylet imports its own: the first worker is ready that much sooner.
The raylet then takes that factory over (``take_early``) if it was started
with the arguments and configuration the raylet would give it, and
otherwise starts one itself (``spawn``).

This module imports nothing heavy: it runs before the raylet's imports.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

from nbray.node import session

if TYPE_CHECKING:
    from nbray.common.config import Config


class ZygoteProcess:
    """A started worker factory and the raylet's end of its control connection."""

    # A plain class, not a dataclass: ``dataclasses`` (and ``inspect``) would
    # cost the raylet more before it starts the factory than the rest of this module.
    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket, args: list[str],
                 config_json: str) -> None:
        self.proc = proc
        self.control = control
        self.args = args  # its command-line arguments: log socket, then the workers' arguments
        self.config_json = config_json  # the configuration its workers run with (NBRAY_CONFIG_JSON)

    def __repr__(self) -> str:
        return f"ZygoteProcess(pid={self.proc.pid}, args={self.args!r})"

    def discard(self) -> None:
        self.control.close()  # the factory exits on EOF
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def zygote_args(*, log_socket: str, raylet_socket: str, node_id: bytes, node_ip: str, gcs_address: str,
                session_dir: str) -> list[str]:
    """The factory's command-line arguments (after its control fd)."""
    return [log_socket, "--raylet-socket", raylet_socket, "--node-id", node_id.hex(), "--node-ip", node_ip,
            "--gcs-address", gcs_address, "--session-dir", session_dir]


def socket_paths(session_dir: str, node_id: bytes) -> tuple[str, str]:
    """The raylet's socket and its log socket, as the raylet names them: (raylet, logs)."""
    short = node_id.hex()[:8]
    return (session.socket_path(session_dir, f"raylet-{short}.sock"),
            session.socket_path(session_dir, f"logs-{short}.sock"))


def log_path(session_dir: str, node_id: bytes) -> str:
    return os.path.join(session_dir, "logs", f"zygote-{node_id.hex()[:8]}.log")


def spawn(args: list[str], token: bytes, config_json: str, log_file: str) -> ZygoteProcess:
    """Start a factory with `args` (see ``zygote_args``); its workers authenticate with `token`."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["NBRAY_AUTH_TOKEN"] = token.hex()
    env["PYTHONUNBUFFERED"] = "1"
    env["NBRAY_CONFIG_JSON"] = config_json
    try:
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nbray.raylet.zygote", str(theirs.fileno()), *args],
                pass_fds=[theirs.fileno()], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ZygoteProcess(proc, ours, list(args), config_json)


_early: ZygoteProcess | None = None


def start_early(raylet_argv: list[str]) -> None:
    """Start the factory from the raylet's command line, before the raylet's imports.

    Never raises: whatever is missing or wrong here, the raylet reports it
    itself, and starts its factory when it is ready (``take_early`` returns None).
    """
    global _early
    parser = argparse.ArgumentParser(add_help=False)
    for flag in ("--node-id", "--gcs-address", "--session-dir"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--config-json", default="")
    try:
        known, _ = parser.parse_known_args(raylet_argv)
        token = bytes.fromhex(os.environ["NBRAY_AUTH_TOKEN"])
        node_id = bytes.fromhex(known.node_id)
        raylet_socket, log_socket = socket_paths(known.session_dir, node_id)
        args = zygote_args(log_socket=log_socket, raylet_socket=raylet_socket, node_id=node_id,
                           node_ip=known.node_ip, gcs_address=known.gcs_address, session_dir=known.session_dir)
        _early = spawn(args, token, known.config_json, log_path(known.session_dir, node_id))
    except (SystemExit, KeyError, ValueError, OSError):
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
