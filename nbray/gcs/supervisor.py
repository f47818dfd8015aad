"""The GCS supervisor: a small process on the head node that runs the GCS
and starts it again when it dies.

The head's launcher starts this module in place of the GCS, with the GCS's
arguments. The supervisor keeps the GCS's listening socket open for as long
as it runs and hands it to every GCS it starts: the port never changes
hands, and raylets, drivers and workers that reconnect while no GCS runs
wait in the socket's backlog until the next one accepts them. A GCS that
exits unexpectedly is started again from its storage after a backoff, at
most ``gcs_max_restarts_per_minute`` times a minute (``RestartBudget``);
one without storage is never restarted, as it would come back empty.

The supervisor imports the GCS's code once and starts each GCS as a fork
of itself, so a GCS (the first one, and every restart) starts without a
new interpreter importing nbray again. Each GCS dies with its supervisor
(PR_SET_PDEATHSIG). SIGTERM to the
supervisor stops the GCS and then the supervisor; so does the exit of
``--parent-pid`` (embedded clusters). The first GCS's ready line is passed
on to the launcher with the supervisor's pid added.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

from nbray.common.child_process import ChildProcess
from nbray.common.config import Config
from nbray.gcs import server as gcs_server
from nbray.gcs.recovery import RestartBudget
from nbray.gcs.storage import parse_storage_uri

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
RESTART_WINDOW_S = 60.0
READY_TIMEOUT_S = 30.0


def _run_gcs_in_child(supervisor_pid: int, gcs_args: list[str], close_fds: list[int]) -> None:
    """The forked child: become the GCS. Never returns."""
    code = 1
    try:
        # The GCS gets SIGKILL when the supervisor dies, so no GCS ever
        # outlives the process that restarts it.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != supervisor_pid:  # it died before the line above
            os._exit(1)
        for fd in close_fds:
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        logging.root.handlers.clear()  # the GCS sets up its own log format
        gcs_server.main(gcs_args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Supervisor:
    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        self.args = args
        self.config = config
        restarts = config.gcs_max_restarts_per_minute
        if parse_storage_uri(config.gcs_storage, args.session_dir).kind == "memory":
            restarts = 0
        self.budget = RestartBudget(restarts, RESTART_WINDOW_S, config.gcs_restart_initial_backoff_ms / 1000,
                                    config.gcs_restart_max_backoff_ms / 1000)
        self.proc: ChildProcess | None = None
        self.starts = 0
        self.stopping = False
        wake_r, self._wake_w = os.pipe()
        self._wake_r = wake_r
        os.set_blocking(self._wake_w, False)
        self._parent_fd = -1
        if args.parent_pid:
            try:
                self._parent_fd = os.pidfd_open(args.parent_pid)
            except OSError:
                self.stopping = True

    def on_sigterm(self, *_: Any) -> None:
        self.stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def start_gcs(self) -> dict[str, Any] | None:
        """Start a GCS on the kept socket; its ready line (None: it did not start)."""
        ready_r, ready_w = os.pipe()
        gcs_args = ["--listen-fd", str(self.args.listen_fd), "--session-dir", self.args.session_dir,
                    "--config-json", self.args.config_json, "--ready-fd", str(ready_w)]
        own_fds = [ready_r, self._wake_r, self._wake_w] + ([self._parent_fd] if self._parent_fd >= 0 else [])
        if self.args.ready_fd >= 0 and self.starts == 0:
            own_fds.append(self.args.ready_fd)
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_gcs_in_child(supervisor_pid, gcs_args, own_fds)
        os.close(ready_w)
        self.proc = ChildProcess(pid, f"GCS pid {pid}")
        self.starts += 1
        from nbray.node.launcher import read_ready_line

        info = read_ready_line(ready_r, self.proc, READY_TIMEOUT_S)
        if info is not None and "error" not in info:
            logger.info("GCS started (pid %d, start %d)", pid, self.starts)
        return info

    def wait(self, timeout_s: float | None) -> str:
        """Block until something happens: "gcs-exited", "stop" or "timeout"."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "gcs-exited"
        try:
            gcs_fd = os.pidfd_open(self.proc.pid)
        except ProcessLookupError:
            return "gcs-exited"
        try:
            watched = [gcs_fd, self._wake_r] + ([self._parent_fd] if self._parent_fd >= 0 else [])
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not self.stopping:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select(watched, [], [], left)
                if self._parent_fd in ready:
                    logger.info("the process that started the cluster exited; stopping the GCS")
                    self.stopping = True
                elif gcs_fd in ready:
                    return "gcs-exited"
                elif not ready:
                    return "timeout"
            return "stop"
        finally:
            os.close(gcs_fd)

    def stop_gcs(self) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.config.stop_grace_period_ms / 1000)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def run(self) -> int:
        """Supervise until stopped; the exit status of the supervisor."""
        while True:
            event = self.wait(None)
            if event == "stop":
                self.stop_gcs()
                return 0
            assert self.proc is not None
            status = self.proc.wait()
            delay = self.budget.next_restart_delay(time.monotonic())
            if delay is None:
                logger.error("the GCS exited (status %d) and is not started again: %s", status,
                             "it has no storage to come back from" if self.budget.max_restarts == 0 else
                             f"it was restarted {self.budget.max_restarts} times within a minute")
                return 1
            logger.warning("the GCS exited (status %d); starting it again in %.2f s", status, delay)
            if delay > 0 and self._sleep(delay):
                return 0
            info = self.start_gcs()
            if info is None or "error" in info:
                logger.error("the restarted GCS did not come up: %s", info)
                if self.proc is not None and self.proc.poll() is None:
                    self.proc.kill()

    def _sleep(self, delay_s: float) -> bool:
        """Wait `delay_s` unless stopped first (then True)."""
        watched = [self._wake_r] + ([self._parent_fd] if self._parent_fd >= 0 else [])
        ready, _, _ = select.select(watched, [], [], delay_s)
        if ready:
            self.stopping = True
        return self.stopping


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nbray-gcs-supervisor")
    parser.add_argument("--listen-fd", type=int, required=True, help="the GCS's bound listening socket")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-json", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s gcs-supervisor: %(message)s")
    config = Config.from_json(args.config_json)
    supervisor = Supervisor(args, config)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    info = supervisor.start_gcs()
    if args.ready_fd >= 0:
        report: dict[str, Any] = dict(info) if info is not None else {"error": "the GCS exited during start-up"}
        report["supervisor_pid"] = os.getpid()
        os.write(args.ready_fd, (json.dumps(report) + "\n").encode())
        os.close(args.ready_fd)
    if info is None or "error" in info:
        supervisor.stop_gcs()
        raise SystemExit(1)
    raise SystemExit(supervisor.run())


if __name__ == "__main__":
    main()
