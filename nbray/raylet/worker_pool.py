"""The node's worker processes: starting, registering, idling, killing.

Workers are forked by the zygote and register with the raylet by the
startup token they were given. Each worker has a runtime-environment key;
only workers with the same key are reused for a lease. A pool of idle
default workers (one per CPU) is kept warm; extra idle workers exit after
a while.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.protocol import common_pb2, method, raylet_pb2
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop
from nbray.runtime_env.node_agent import RuntimeEnvAgent
from nbray.runtime_env.spec import RUNTIME_ENV_VAR

logger = logging.getLogger(__name__)

STARTING = "STARTING"
IDLE = "IDLE"
LEASED = "LEASED"
ACTOR = "ACTOR"
DEAD = "DEAD"

_SPAWN = method("ZygoteService.SpawnWorker")


def env_key(env_vars: dict[str, str]) -> str:
    """A stable key for a runtime environment ("" for the default)."""
    if not env_vars:
        return ""
    return "\x1e".join(f"{k}={v}" for k, v in sorted(env_vars.items()))


class Worker:
    __slots__ = ("startup_token", "pid", "worker_id", "address", "conn", "env_key", "state",
                 "lease", "is_driver", "job_id", "idle_since", "started_at", "actor_id",
                 "killed_reason", "register_timer")

    def __init__(self, startup_token: int, env: str, is_driver: bool = False) -> None:
        self.startup_token = startup_token
        self.pid = 0
        self.worker_id = b""
        self.address: common_pb2.Address | None = None
        self.conn: Connection | None = None
        self.env_key = env
        self.state = STARTING
        self.lease: Any = None
        self.is_driver = is_driver
        self.job_id = b""
        self.idle_since = 0.0
        self.started_at = time.monotonic()
        self.actor_id = b""
        self.killed_reason = ""
        self.register_timer: Any = None

    def __repr__(self) -> str:
        return f"Worker(pid={self.pid}, {self.state}{', driver' if self.is_driver else ''})"


class WorkerPool:
    def __init__(
        self,
        loop: EventLoop,
        config: Config,
        zygote_conn: Connection,
        log_dir: str,
        *,
        on_idle: Callable[[Worker], None],
        on_dead: Callable[[Worker, str, bool], None],
        num_prestart: int,
        runtime_envs: RuntimeEnvAgent | None = None,
        on_env_failed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.config = config
        self.zygote = zygote_conn
        self.log_dir = log_dir
        self.on_idle = on_idle
        self.on_dead = on_dead
        self.num_prestart = num_prestart
        self._tokens = itertools.count(1)
        self.by_token: dict[int, Worker] = {}
        self.by_pid: dict[int, Worker] = {}
        self.by_id: dict[bytes, Worker] = {}
        self.drivers: dict[bytes, Worker] = {}
        self._idle: dict[str, list[Worker]] = {}
        self._starting: dict[str, int] = {}
        self._env_vars: dict[str, dict[str, str]] = {"": {}}
        self.runtime_envs = runtime_envs
        self.on_env_failed = on_env_failed

    # ---- starting -------------------------------------------------------------------

    def prestart(self) -> None:
        for _ in range(self.num_prestart):
            self.start_worker("")

    def num_starting(self, key: str) -> int:
        return self._starting.get(key, 0)

    def num_workers(self) -> int:
        return sum(1 for w in self.by_token.values() if w.state != DEAD)

    def start_worker(self, key: str, env_vars: dict[str, str] | None = None) -> Worker | None:
        if self.num_workers() >= self.config.max_workers_per_node:
            logger.warning("not starting a worker: %d workers already run on this node "
                           "(max_workers_per_node)", self.num_workers())
            return None
        if env_vars is not None:
            self._env_vars[key] = dict(env_vars)
        token = next(self._tokens)
        worker = Worker(token, key)
        self.by_token[token] = worker
        self._starting[key] = self._starting.get(key, 0) + 1
        env = self._env_vars.get(key, {})
        if self.runtime_envs is not None and RUNTIME_ENV_VAR in env:
            # set the environment up on this node first (once; later workers reuse it)
            self.runtime_envs.prepare(env[RUNTIME_ENV_VAR],
                                      lambda extra, error: self._on_env_ready(worker, env, extra, error))
        else:
            self._spawn(worker, env)
        return worker

    def _on_env_ready(self, worker: Worker, env: dict[str, str], extra: dict[str, str] | None,
                      error: str) -> None:
        if worker.state != STARTING:
            return
        if extra is None:
            self._starting[worker.env_key] = max(0, self._starting.get(worker.env_key, 1) - 1)
            worker.state = DEAD
            self.by_token.pop(worker.startup_token, None)
            if self.on_env_failed is not None:
                self.on_env_failed(worker.env_key, error)
            return
        self._spawn(worker, {**env, **extra})

    def _spawn(self, worker: Worker, env: dict[str, str]) -> None:
        request = raylet_pb2.SpawnWorkerRequest(startup_token=worker.startup_token, env=env)

        def on_spawned(reply: Any, error: BaseException | None) -> None:
            if error is not None:
                logger.error("the worker factory failed to start a worker: %s", error)
                self._mark_dead(worker, f"could not start: {error}", intended=False)
                return
            worker.pid = reply.pid
            self.by_pid[reply.pid] = worker

        self.zygote.call(_SPAWN, request, callback=on_spawned)
        worker.register_timer = self.loop.call_later(self.config.worker_register_timeout_ms / 1000,
                                                     self._check_registered, worker)

    @staticmethod
    def _stop_register_timer(worker: Worker) -> None:
        if worker.register_timer is not None:
            worker.register_timer.cancel()
            worker.register_timer = None

    def _check_registered(self, worker: Worker) -> None:
        if worker.state == STARTING:
            logger.error("worker pid=%s did not register within %d ms; killing it",
                         worker.pid, self.config.worker_register_timeout_ms)
            self.kill(worker, "registration timed out")

    # ---- registration ---------------------------------------------------------------

    def register_worker(self, conn: Connection, req: raylet_pb2.RegisterWorkerRequest) -> Worker | None:
        worker = self.by_token.get(req.startup_token)
        if worker is None or worker.state != STARTING:
            return None
        self._stop_register_timer(worker)
        worker.pid = req.pid
        self.by_pid[req.pid] = worker
        worker.worker_id = req.address.worker_id
        worker.address = req.address
        worker.conn = conn
        self.by_id[worker.worker_id] = worker
        self._starting[worker.env_key] -= 1
        conn.add_close_callback(lambda c: self._on_disconnect(worker))
        self.push_idle(worker)
        return worker

    def register_driver(self, conn: Connection, req: raylet_pb2.RegisterWorkerRequest) -> Worker:
        driver = Worker(0, "", is_driver=True)
        driver.pid = req.pid
        driver.worker_id = req.address.worker_id
        driver.address = req.address
        driver.conn = conn
        driver.job_id = req.job_id
        driver.state = LEASED
        self.drivers[driver.worker_id] = driver
        conn.add_close_callback(lambda c: self._on_driver_disconnect(driver))
        return driver

    # ---- idle / leased ------------------------------------------------------------------

    def push_idle(self, worker: Worker) -> None:
        if worker.state == DEAD:
            return
        worker.state = IDLE
        worker.lease = None
        worker.idle_since = time.monotonic()
        self._idle.setdefault(worker.env_key, []).append(worker)
        self.on_idle(worker)

    def pop_idle(self, key: str) -> Worker | None:
        workers = self._idle.get(key)
        while workers:
            worker = workers.pop()
            if worker.state == IDLE:
                return worker
        return None

    def idle_count(self, key: str) -> int:
        return sum(1 for w in self._idle.get(key, ()) if w.state == IDLE)

    def reap_idle(self) -> None:
        """Stop idle workers beyond the warm pool that idled too long."""
        now = time.monotonic()
        limit = self.config.idle_worker_kill_ms / 1000
        for key, workers in self._idle.items():
            keep = self.num_prestart if key == "" else 0
            alive = [w for w in workers if w.state == IDLE]
            excess = len(alive) - keep
            for w in sorted(alive, key=lambda w: w.idle_since):
                if excess <= 0:
                    break
                if now - w.idle_since > limit:
                    self.kill(w, "idle", force=False)
                    excess -= 1
        if self.runtime_envs is not None:
            self.runtime_envs.collect(self.envs_in_use())

    def envs_in_use(self) -> set[str]:
        """The resolved runtime environments of the node's live workers."""
        keys = {w.env_key for w in self.by_token.values() if w.state != DEAD and w.env_key}
        return {env[RUNTIME_ENV_VAR] for k in keys
                if RUNTIME_ENV_VAR in (env := self._env_vars.get(k, {}))}

    # ---- death --------------------------------------------------------------------------

    def kill(self, worker: Worker, reason: str, force: bool = True) -> None:
        if worker.state == DEAD:
            return
        worker.killed_reason = reason
        if worker.pid:
            try:
                if force:
                    os.killpg(worker.pid, signal.SIGKILL)
                else:
                    os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(worker.pid, signal.SIGKILL)
        if not force:
            self.loop.call_later(self.config.kill_worker_timeout_ms / 1000, self._force_kill, worker)

    def _force_kill(self, worker: Worker) -> None:
        if worker.state != DEAD and worker.pid:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _on_disconnect(self, worker: Worker) -> None:
        self._mark_dead(worker, worker.killed_reason or "worker process exited",
                        intended=worker.killed_reason in ("idle", "exit requested"))

    def on_process_exit(self, pid: int, status: int) -> None:
        worker = self.by_pid.pop(pid, None)
        if worker is None:
            return
        if worker.state == STARTING:
            self._mark_dead(worker, f"exited with status {status} before registering", intended=False)
        # registered workers are handled when their connection closes; if the
        # socket outlives the process (a leaked child), force the issue.
        elif worker.state != DEAD and worker.conn is not None:
            worker.conn.close(f"process exited with status {status}")

    def _mark_dead(self, worker: Worker, reason: str, intended: bool) -> None:
        if worker.state == DEAD:
            return
        if worker.state == STARTING:
            self._starting[worker.env_key] = max(0, self._starting.get(worker.env_key, 1) - 1)
        self._stop_register_timer(worker)
        worker.state = DEAD
        self.by_token.pop(worker.startup_token, None)
        self.by_id.pop(worker.worker_id, None)
        if worker.pid:
            self.by_pid.pop(worker.pid, None)
        self.on_dead(worker, reason, intended)

    def _on_driver_disconnect(self, driver: Worker) -> None:
        self.drivers.pop(driver.worker_id, None)
        driver.state = DEAD
        self.on_dead(driver, "driver disconnected", True)

    def all_workers(self) -> list[Worker]:
        return [w for w in self.by_token.values() if w.state != DEAD] + list(self.drivers.values())

    def pid_of_token(self, token: int) -> int:
        worker = self.by_token.get(token)
        return worker.pid if worker is not None else 0

    def shutdown(self) -> None:
        for worker in list(self.by_token.values()):
            if worker.pid and worker.state != DEAD:
                try:
                    os.killpg(worker.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
