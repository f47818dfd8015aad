"""Worker leases: the queue of lease requests and the leases granted.

An owner asks its raylet for a worker of some resource shape. The raylet
grants a local worker, spills the request back to another node, keeps it
queued while resources are busy, or keeps it pending (with a warning to
the job) when no node can ever satisfy it. A lease holds its resources
until the owner returns it; while the leased worker's task is blocked in
get/wait, its CPUs are given back so nested tasks can run.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.common.resources import CPU, Allocation, FixedSet, NodeResources, to_fixed, to_float
from nbray.protocol import gcs_pb2, raylet_pb2
from nbray.raylet.scheduling import ClusterView, Decision, Scheduler, Strategy
from nbray.raylet.worker_pool import ACTOR, IDLE, LEASED, Worker, WorkerPool, env_key
from nbray.rpc.connection import Connection

logger = logging.getLogger(__name__)

_Reply = raylet_pb2.RequestWorkerLeaseReply
_STRATEGY_KINDS = {0: "DEFAULT", 1: "SPREAD", 2: "NODE_AFFINITY", 3: "PLACEMENT_GROUP"}


class LeaseRequest:
    __slots__ = ("req", "conn", "rid", "demand", "placement", "env_key", "env_vars", "strategy",
                 "owner_id", "arrival", "warned", "infeasible", "method_id")

    def __init__(self, req: raylet_pb2.RequestWorkerLeaseRequest, conn: Connection, rid: int,
                 method_id: int) -> None:
        self.req = req
        self.conn = conn
        self.rid = rid
        self.method_id = method_id
        self.demand: FixedSet = to_fixed(req.resources)
        self.placement: FixedSet = to_fixed(req.placement_resources) if req.placement_resources else self.demand
        self.env_vars = dict(req.runtime_env.env_vars)
        self.env_key = env_key(self.env_vars)
        s = req.scheduling_strategy
        self.strategy = Strategy(_STRATEGY_KINDS.get(s.kind, "DEFAULT"), s.node_id, s.soft, req.prefer_local)
        self.owner_id = req.owner.worker_id
        self.arrival = time.monotonic()
        self.warned = False
        self.infeasible = False


class Lease:
    __slots__ = ("lease_id", "worker", "owner_id", "owner", "allocation", "blocked", "is_actor",
                 "owner_conn", "job_id", "is_retriable", "name", "granted_at")

    def __init__(self, lease_id: int, worker: Worker, owner: Any, allocation: Allocation,
                 is_actor: bool, owner_conn: Connection, job_id: bytes, is_retriable: bool = False,
                 name: str = "") -> None:
        self.lease_id = lease_id
        self.worker = worker
        self.owner = owner
        self.owner_id = owner.worker_id
        self.allocation = allocation
        self.blocked = False
        self.is_actor = is_actor
        self.owner_conn = owner_conn
        self.job_id = job_id
        # for the memory monitor: retriable and newest leases are killed first
        self.is_retriable = is_retriable
        self.name = name
        self.granted_at = time.monotonic()


class LeaseManager:
    def __init__(
        self,
        config: Config,
        view: ClusterView,
        pool: WorkerPool,
        scheduler: Scheduler,
        gpu_names: list[str],
        *,
        on_resources_changed: Callable[[], None],
        warn_job: Callable[[bytes, str], None],
    ) -> None:
        self.config = config
        self.view = view
        self.pool = pool
        self.scheduler = scheduler
        self.gpu_names = gpu_names
        self.on_resources_changed = on_resources_changed
        self.warn_job = warn_job
        self.queue: list[LeaseRequest] = []
        self.leases: dict[int, Lease] = {}
        # Totals since the raylet started (nbray/raylet/metrics.py reports them).
        self.num_granted = 0
        self.num_spillbacks = 0
        self._lease_ids = itertools.count(1)
        self._scheduling = False
        self._reschedule = False
        self._warn_timer_set = False
        self.loop = pool.loop

    @property
    def resources(self) -> NodeResources:
        return self.view.local.resources

    # ---- requests -------------------------------------------------------------------------

    def request(self, conn: Connection, req: raylet_pb2.RequestWorkerLeaseRequest, rid: int,
                method_id: int) -> None:
        lr = LeaseRequest(req, conn, rid, method_id)
        self.queue.append(lr)
        self.schedule()

    def cancel(self, owner_id: bytes, lease_request_id: int) -> bool:
        for lr in self.queue:
            if lr.owner_id == owner_id and lr.req.lease_request_id == lease_request_id:
                self.queue.remove(lr)
                self._reply(lr, _Reply(status=_Reply.CANCELED, message="lease request cancelled"))
                return True
        return False

    def drop_requests_of(self, conn: Connection) -> None:
        self.queue = [lr for lr in self.queue if lr.conn is not conn]

    def _reply(self, lr: LeaseRequest, reply: _Reply) -> None:
        if not lr.conn.closed:
            lr.conn.reply(lr.rid, lr.method_id, reply)

    # ---- scheduling -------------------------------------------------------------------------

    def schedule(self) -> None:
        """Grant, spill back or keep each queued request."""
        if self._scheduling:
            self._reschedule = True
            return
        self._scheduling = True
        try:
            while True:
                self._reschedule = False
                self._schedule_pass()
                if not self._reschedule:
                    break
        finally:
            self._scheduling = False

    def _schedule_pass(self) -> None:
        resources = self.resources
        tentative: list[Allocation] = []
        deficit: dict[str, int] = {}
        env_of: dict[str, dict[str, str]] = {}
        remaining: list[LeaseRequest] = []
        changed = False
        for lr in self.queue:
            if lr.conn.closed:
                changed = True
                continue
            placement = self.scheduler.place(
                self.view, lr.demand, lr.strategy, lr.placement,
                allow_spillback=not lr.req.grant_or_reject,
            )
            decision = placement.decision
            if decision == Decision.LOCAL:
                if not resources.is_available(lr.placement):
                    # Hard node affinity places a request here even while the
                    # resources are held: it waits for them, not for a worker.
                    remaining.append(lr)
                    continue
                worker = self.pool.pop_idle(lr.env_key)
                if worker is None:
                    # Hold the resources for this pass so later requests do not
                    # count them as free, and make sure a worker is coming.
                    alloc = resources.allocate(lr.placement)
                    if alloc is not None:
                        tentative.append(alloc)
                    deficit[lr.env_key] = deficit.get(lr.env_key, 0) + 1
                    env_of[lr.env_key] = lr.env_vars
                    remaining.append(lr)
                    continue
                if not self._grant(lr, worker):
                    remaining.append(lr)
                    continue
                changed = True
            elif decision == Decision.SPILLBACK:
                target = self.view.nodes[placement.node_id]
                self.num_spillbacks += 1
                self._reply(lr, _Reply(status=_Reply.SPILLBACK, retry_at_node_id=target.node_id,
                                       retry_at_host=target.host, retry_at_port=target.port))
            elif decision == Decision.WAIT:
                if lr.req.grant_or_reject:
                    self._reply(lr, _Reply(status=_Reply.REJECTED, message="resources are busy"))
                else:
                    lr.infeasible = False
                    remaining.append(lr)
            elif decision == Decision.UNSCHEDULABLE:
                self._reply(lr, _Reply(status=_Reply.UNSCHEDULABLE, message=placement.message))
            else:  # INFEASIBLE: stays pending, as in Ray
                lr.infeasible = True
                # A just-committed placement group reaches this node's view a
                # moment later: do not warn about group resources right away.
                grace_s = 2.0 if any("_group_" in k for k in lr.demand) else 0.0
                if not lr.warned and time.monotonic() - lr.arrival >= grace_s:
                    lr.warned = True
                    name = lr.req.task_name or ("actor" if lr.req.is_actor_creation else "task")
                    self.warn_job(lr.req.job_id, (
                        f"Warning: the {'actor' if lr.req.is_actor_creation else 'task'} {name} "
                        f"cannot be scheduled right now: {placement.message}"
                    ))
                remaining.append(lr)
                if not lr.warned and not self._warn_timer_set:
                    self._warn_timer_set = True
                    self.loop.call_later(2.1, self._recheck_warnings)
        for alloc in tentative:
            resources.free(alloc)
        self.queue = remaining
        for key, need in deficit.items():
            for _ in range(need - self.pool.num_starting(key) - self.pool.idle_count(key)):
                if self.pool.start_worker(key, env_of.get(key)) is None:
                    break
        if changed:
            self.on_resources_changed()

    def fail_runtime_env(self, key: str, message: str) -> None:
        """Answer the queued requests for a runtime environment that could
        not be set up on this node (their owners raise RuntimeEnvSetupError)."""
        remaining = []
        for lr in self.queue:
            if lr.env_key == key:
                self._reply(lr, _Reply(status=_Reply.RUNTIME_ENV_SETUP_FAILED, message=message))
            else:
                remaining.append(lr)
        self.queue = remaining

    def _recheck_warnings(self) -> None:
        self._warn_timer_set = False
        self.schedule()

    def _grant(self, lr: LeaseRequest, worker: Worker) -> bool:
        """Lease `worker` to the request; False (request kept) if its resources are not free."""
        alloc = self.resources.allocate(lr.demand)
        if alloc is None:  # never drop it: its owner counts it as pending until it hears back
            self.pool.push_idle(worker)
            return False
        lease = Lease(next(self._lease_ids), worker, lr.req.owner, alloc, lr.req.is_actor_creation,
                      lr.conn, lr.req.job_id, lr.req.is_retriable, lr.req.task_name)
        self.leases[lease.lease_id] = lease
        self.num_granted += 1
        worker.lease = lease
        worker.job_id = lr.req.job_id
        worker.state = ACTOR if lr.req.is_actor_creation else LEASED
        worker.actor_id = lr.req.actor_id if lr.req.is_actor_creation else b""
        reply = _Reply(status=_Reply.GRANTED, lease_id=lease.lease_id, node_id=self.view.local_node_id,
                       worker_pid=worker.pid)
        assert worker.address is not None
        reply.worker_address.CopyFrom(worker.address)
        for name, idxs in alloc.instance_ids().items():
            names = self.gpu_names if name == "GPU" else []
            reply.resource_ids[name] = ",".join(names[i] if i < len(names) else str(i) for i in idxs)
        self._reply(lr, reply)
        return True

    # ---- returning ----------------------------------------------------------------------------

    def return_lease(self, lease_id: int, disconnect: bool, reason: str = "") -> None:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        self._free(lease)
        worker = lease.worker
        if worker.lease is lease:
            worker.lease = None
        if disconnect:
            self.pool.kill(worker, reason or "the owner asked to disconnect it")
        elif worker.state in (LEASED, ACTOR):
            self.pool.push_idle(worker)
        self.on_resources_changed()
        self.schedule()

    def _free(self, lease: Lease) -> None:
        self.resources.free(lease.allocation)
        if lease.blocked:
            cpu = lease.allocation.amounts.get(CPU, 0)
            if cpu:
                self.resources.take({CPU: cpu})

    def set_blocked(self, worker: Worker, blocked: bool) -> None:
        lease = worker.lease
        if lease is None or lease.blocked == blocked:
            return
        cpu = lease.allocation.amounts.get(CPU, 0)
        lease.blocked = blocked
        if cpu:
            if blocked:
                self.resources.give({CPU: cpu})
            else:
                self.resources.take({CPU: cpu})
        self.on_resources_changed()
        if blocked:
            self.schedule()

    def on_worker_dead(self, worker: Worker) -> None:
        lease = worker.lease
        if lease is not None and self.leases.pop(lease.lease_id, None) is not None:
            self._free(lease)
            self.on_resources_changed()
        self.schedule()

    def on_owner_dead(self, owner_id: bytes) -> None:
        """The owner of leases died: its workers run orphaned tasks; stop them.

        Actor creation requests stay: the GCS sends those, and it alone
        decides whether an actor shares its creator's fate (a detached
        actor does not)."""
        self.queue = [lr for lr in self.queue if lr.owner_id != owner_id or lr.req.is_actor_creation]
        for lease in list(self.leases.values()):
            if lease.owner_id == owner_id and not lease.is_actor:
                self.return_lease(lease.lease_id, disconnect=True, reason="its owner died")

    def lease_of_worker(self, worker_id: bytes) -> Lease | None:
        for lease in self.leases.values():
            if lease.worker.worker_id == worker_id:
                return lease
        return None

    # ---- reporting ------------------------------------------------------------------------------

    def demands(self) -> list[gcs_pb2.ResourceDemand]:
        shapes: dict[tuple, gcs_pb2.ResourceDemand] = {}
        for lr in self.queue:
            key = tuple(sorted(lr.placement.items()))
            d = shapes.get(key)
            if d is None:
                d = gcs_pb2.ResourceDemand(shape=to_float(lr.placement), infeasible=lr.infeasible)
                shapes[key] = d
            d.count += 1
        return list(shapes.values())

    def num_active(self) -> int:
        """Leases granted and not returned yet."""
        return len(self.leases)

    def idle_worker_count(self) -> int:
        return sum(1 for w in self.pool.by_token.values() if w.state == IDLE)

    def describe(self) -> dict[str, Any]:
        return {"queued": len(self.queue), "leases": len(self.leases)}
