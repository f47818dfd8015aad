"""A throwaway ``redis-server`` on a free loopback port, for the tests of the Redis storage.

It keeps nothing on disk (no RDB snapshots, no append-only file) and its
working directory is the test's temporary directory, so stopping it leaves
no files behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(work_dir: str) -> Iterator[str]:
    """Run a Redis server while the block runs; yields ``redis://127.0.0.1:PORT/0``."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is missing: scripts/install.sh installs it (apt redis-server)"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", work_dir, "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ping(port):
            assert proc.poll() is None, f"redis-server exited: {proc.stderr.read() if proc.stderr else b''!r}"
            assert time.monotonic() < deadline, "redis-server did not answer PING in time"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
