"""A child process known by its pid, with the part of ``subprocess.Popen``'s
interface the daemons use (``poll``, ``wait``, ``send_signal``, ``kill``).

For children started without Popen (forked, or spawned with
``os.posix_spawn``). Imports ``os`` alone when loaded: the raylet uses it
before it imports anything else.
"""

from __future__ import annotations

import os


class ChildProcess:
    def __init__(self, pid: int, label: str) -> None:
        self.pid = pid
        self.label = label
        """What the process is, for error messages ("GCS pid 123")."""
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone all the same
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status; subprocess.TimeoutExpired if it runs `timeout` seconds more."""
        if timeout is None:
            if self.returncode is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                    self.returncode = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    self.returncode = -1
            return self.returncode
        import select
        import time

        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                import subprocess  # for its exception alone

                raise subprocess.TimeoutExpired(self.label, timeout)
            try:
                fd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                continue
            try:
                select.select([fd], [], [], left)
            finally:
                os.close(fd)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)
