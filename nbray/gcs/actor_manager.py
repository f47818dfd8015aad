"""Actors: registration, placement, creation, restarts and death (GCS).

State machine of an actor::

    PENDING_CREATION --created--> ALIVE --worker/node died--> RESTARTING --> ALIVE ...
           |                        |                            |
           +-- __init__ raised -----+--- killed / restarts used / owner died --> DEAD

The GCS picks a node with the same hybrid policy the raylets use (the
owner's node counts as local), leases a dedicated worker from that raylet,
pushes the creation task to the worker and publishes every state change
on the ACTOR channel, where handles learn the actor's address.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from nbray.common.config import Config
from nbray.common.resources import NodeResources
from nbray.exceptions import RpcError
from nbray.gcs.node_manager import NodeEntry, NodeManager
from nbray.gcs.pubsub import Publisher
from nbray.protocol import common_pb2, core_worker_pb2, gcs_pb2, method, raylet_pb2
from nbray.raylet.scheduling import ClusterView, Decision, NodeView, Scheduler, Strategy
from nbray.rpc.connection import Connection
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.pool import ConnectionPool

logger = logging.getLogger(__name__)

_LEASE = method("RayletService.RequestWorkerLease")
_CANCEL_LEASE = method("RayletService.CancelWorkerLease")
_KILL_WORKER = method("RayletService.KillWorker")
_PUSH = method("CoreWorkerService.PushTask")
_KILL_ACTOR = method("CoreWorkerService.KillActor")
_LEASE_REPLY = raylet_pb2.RequestWorkerLeaseReply
_State = gcs_pb2.ActorInfo
_STRATEGY_KINDS = {0: "DEFAULT", 1: "SPREAD", 2: "NODE_AFFINITY", 3: "PLACEMENT_GROUP"}


class ActorEntry:
    __slots__ = ("info", "spec", "worker_id", "lease_node", "lease_id", "no_restart", "incarnation",
                 "lease_request_id", "detached", "kill_requested", "kill_reason")

    def __init__(self, info: gcs_pb2.ActorInfo, spec: common_pb2.TaskSpec, detached: bool) -> None:
        self.info = info
        self.spec = spec
        self.detached = detached
        self.worker_id = b""
        self.lease_node = b""
        self.lease_id = 0
        self.no_restart = False
        self.incarnation = 0
        self.lease_request_id = 0
        self.kill_requested = False
        # Why it was killed (nbray.kill, its owner died, its job ended):
        # what its callers read once the worker is gone.
        self.kill_reason = ""

    @property
    def actor_id(self) -> bytes:
        return self.info.actor_id


class ActorManager:
    def __init__(self, loop: EventLoop, config: Config, publisher: Publisher, nodes: NodeManager,
                 pool: ConnectionPool, scheduler: Scheduler) -> None:
        self.loop = loop
        self.config = config
        self.publisher = publisher
        self.nodes = nodes
        self.pool = pool
        self.scheduler = scheduler
        self.actors: dict[bytes, ActorEntry] = {}
        self.named: dict[tuple[str, str], bytes] = {}
        self.by_worker: dict[bytes, bytes] = {}
        self._lease_seq = 0
        nodes.on_node_dead.append(self.on_node_dead)
        nodes.on_node_added.append(lambda info: self._retry_pending())

    # ---- registration ------------------------------------------------------------------------------

    def register(self, req: gcs_pb2.RegisterActorRequest) -> gcs_pb2.RegisterActorReply:
        spec = req.creation_spec
        known = self.actors.get(spec.actor_id)
        if known is not None:
            # The same request again (sent anew after the GCS connection
            # dropped): the actor it registered stands.
            return gcs_pb2.RegisterActorReply(actor=known.info)
        if req.name:
            key = (req.namespace, req.name)
            existing_id = self.named.get(key)
            if existing_id is not None:
                existing = self.actors[existing_id]
                if req.get_if_exists:
                    return gcs_pb2.RegisterActorReply(actor=existing.info, existed=True)
                raise RpcError("already_exists", (
                    f"an actor named {req.name!r} already exists in namespace {req.namespace!r}; "
                    "pick another name, use get_if_exists=True, or nbray.get_actor() to reach it"))
        info = gcs_pb2.ActorInfo(
            actor_id=spec.actor_id, job_id=spec.job_id, state=_State.PENDING_CREATION,
            name=req.name, namespace=req.namespace, class_name=req.class_name,
            max_restarts=req.max_restarts, is_detached=req.detached,
            is_async=spec.is_async_actor, max_concurrency=spec.max_concurrency,
            timestamp_ms=_now_ms(), handle_metadata=req.handle_metadata,
        )
        info.owner.CopyFrom(spec.caller)
        info.required_resources.update(spec.resources)
        if spec.scheduling_strategy.placement_group_id:
            info.placement_group_id = spec.scheduling_strategy.placement_group_id
        entry = ActorEntry(info, spec, req.detached)
        self.actors[entry.actor_id] = entry
        if req.name:
            self.named[(req.namespace, req.name)] = entry.actor_id
        self._publish(entry)
        self._schedule(entry)
        return gcs_pb2.RegisterActorReply(actor=info)

    # ---- placement ----------------------------------------------------------------------------------

    def _schedule(self, entry: ActorEntry) -> None:
        target = self._pick_node(entry)
        if target is None:
            entry.lease_request_id = 0  # no node yet; retried when a node joins
            return
        self._request_lease(entry, target, hops=0)

    def _pick_node(self, entry: ActorEntry) -> NodeEntry | None:
        alive = self.nodes.alive()
        if not alive:
            return None
        spec = entry.spec
        owner_node = spec.caller.node_id
        local = owner_node if any(n.info.node_id == owner_node for n in alive) else alive[0].info.node_id
        view = ClusterView(local)
        for n in alive:
            res = NodeResources(n.total)
            res.available = NodeResources(n.available).total
            view.nodes[n.info.node_id] = NodeView(n.info.node_id, res, n.info.node_ip, n.info.raylet_port)
        s = spec.scheduling_strategy
        strategy = Strategy(_STRATEGY_KINDS.get(s.kind, "DEFAULT"), s.node_id, s.soft)
        from nbray.common.resources import to_fixed

        demand = to_fixed(spec.resources)
        placement_demand = to_fixed(_placement_resources(spec))
        decision = self.scheduler.place(view, demand, strategy, placement_demand)
        if decision.decision == Decision.UNSCHEDULABLE:
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_UNSCHEDULABLE,
                                                  message=decision.message))
            return None
        if decision.decision in (Decision.LOCAL, Decision.SPILLBACK):
            return self.nodes.get(decision.node_id)
        # Wait (or infeasible): queue at the owner's node, which warns the job.
        return self.nodes.get(local)

    def _request_lease(self, entry: ActorEntry, node: NodeEntry, hops: int) -> None:
        self._lease_seq += 1
        entry.lease_request_id = self._lease_seq
        incarnation = entry.incarnation
        spec = entry.spec
        req = raylet_pb2.RequestWorkerLeaseRequest(
            lease_request_id=self._lease_seq, is_actor_creation=True, actor_id=entry.actor_id,
            job_id=spec.job_id, task_name=entry.info.class_name, grant_or_reject=hops >= 4)
        req.resources.update(spec.resources)
        req.placement_resources.update(_placement_resources(spec))
        req.scheduling_strategy.CopyFrom(spec.scheduling_strategy)
        req.runtime_env.CopyFrom(spec.runtime_env)
        req.owner.CopyFrom(spec.caller)
        node_id = node.info.node_id
        node.conn.call(_LEASE, req, callback=lambda reply, err: self._on_lease(
            entry, incarnation, node_id, hops, reply, err))

    def _on_lease(self, entry: ActorEntry, incarnation: int, node_id: bytes, hops: int,
                  reply: Any, error: BaseException | None) -> None:
        if entry.incarnation != incarnation or entry.info.state == _State.DEAD:
            if error is None and reply.status == _LEASE_REPLY.GRANTED:
                self._kill_worker(node_id, reply.worker_address.worker_id, "actor no longer needed")
            return
        if error is not None:
            # the node died while we waited; pick another
            self.loop.call_later(0.05, self._schedule, entry)
            return
        if reply.status == _LEASE_REPLY.GRANTED:
            if entry.kill_requested and entry.no_restart:
                self._kill_worker(node_id, reply.worker_address.worker_id, "actor was killed")
                self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED,
                                                      message="the actor was killed with nbray.kill()"))
                return
            self._create_on(entry, node_id, reply)
        elif reply.status == _LEASE_REPLY.SPILLBACK:
            target = self.nodes.get(reply.retry_at_node_id)
            if target is None or not target.alive:
                self.loop.call_later(0.05, self._schedule, entry)
            else:
                self._request_lease(entry, target, hops + 1)
        elif reply.status == _LEASE_REPLY.UNSCHEDULABLE:
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_UNSCHEDULABLE,
                                                  message=reply.message))
        elif reply.status == _LEASE_REPLY.RUNTIME_ENV_SETUP_FAILED:
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.RUNTIME_ENV_SETUP_FAILED,
                                                  message=reply.message))
        else:  # rejected or cancelled: try again
            self.loop.call_later(0.05, self._schedule, entry)

    def _create_on(self, entry: ActorEntry, node_id: bytes, lease: Any) -> None:
        entry.worker_id = lease.worker_address.worker_id
        entry.lease_node = node_id
        entry.lease_id = lease.lease_id
        self.by_worker[entry.worker_id] = entry.actor_id
        entry.info.node_id = node_id
        entry.info.pid = lease.worker_pid
        incarnation = entry.incarnation
        address = common_pb2.Address()
        address.CopyFrom(lease.worker_address)
        spec = common_pb2.TaskSpec()
        spec.CopyFrom(entry.spec)
        spec.attempt_number = entry.info.num_restarts
        request = core_worker_pb2.PushTaskRequest(spec=spec, intended_worker_id=entry.worker_id)
        request.resource_ids.update(lease.resource_ids)

        def on_conn(conn: Connection | None, error: BaseException | None) -> None:
            if entry.incarnation != incarnation:
                return
            if conn is None:
                self._on_worker_lost(entry, incarnation, f"could not reach the actor's worker: {error}")
                return
            conn.call(_PUSH, request, callback=lambda reply, err: self._on_created(
                entry, incarnation, address, reply, err))

        self.pool.get(address, on_conn)

    def _on_created(self, entry: ActorEntry, incarnation: int, address: common_pb2.Address,
                    reply: Any, error: BaseException | None) -> None:
        if entry.incarnation != incarnation or entry.info.state == _State.DEAD:
            return
        if error is not None:
            self._on_worker_lost(entry, incarnation, f"the actor's worker died during creation ({error})")
            return
        if reply.is_application_error:
            data = reply.returns[0].value.data if reply.returns else b""
            entry.info.init_error = data
            self._kill_worker(entry.lease_node, entry.worker_id, "actor __init__ failed")
            self._die(entry, common_pb2.ErrorInfo(
                type=common_pb2.ACTOR_DIED,
                message=f"The actor {entry.info.class_name} died because its __init__ raised an exception."))
            return
        entry.info.state = _State.ALIVE
        entry.info.address.CopyFrom(address)
        entry.info.repr_name = reply.actor_repr_name
        entry.info.timestamp_ms = _now_ms()
        self._publish(entry)
        if entry.kill_requested:
            self._send_kill(entry, force=True)

    # ---- deaths -----------------------------------------------------------------------------------------

    def on_worker_dead(self, failure: gcs_pb2.WorkerFailure) -> None:
        wid = failure.address.worker_id
        actor_id = self.by_worker.get(wid)
        if actor_id is not None:
            entry = self.actors.get(actor_id)
            if entry is not None and entry.worker_id == wid:
                self._on_worker_lost(entry, entry.incarnation, failure.message or "the actor's worker died",
                                     intended=failure.intended)
        # actors owned by the dead process fate-share with it
        self._kill_owned_by(wid, owner_died_reason(failure))

    def _kill_owned_by(self, owner_worker_id: bytes, reason: str) -> None:
        # A detached actor has no owner: its creator's death is not its own.
        for entry in list(self.actors.values()):
            if (not entry.detached and entry.info.state != _State.DEAD
                    and entry.spec.caller.worker_id == owner_worker_id):
                self.kill(entry.actor_id, force=True, no_restart=True, reason=reason)

    def on_job_finished(self, job_id: bytes) -> None:
        for entry in list(self.actors.values()):
            if not entry.detached and entry.info.job_id == job_id and entry.info.state != _State.DEAD:
                self.kill(entry.actor_id, force=True, no_restart=True, reason="the job that owns the actor finished")

    def on_node_dead(self, node: gcs_pb2.NodeInfo) -> None:
        for entry in list(self.actors.values()):
            if entry.lease_node == node.node_id and entry.info.state in (_State.ALIVE, _State.PENDING_CREATION,
                                                                           _State.RESTARTING):
                if entry.worker_id or entry.info.state == _State.ALIVE:
                    self._on_worker_lost(entry, entry.incarnation, f"the actor's node {node.node_id.hex()[:8]} died",
                                         node_died=True)
            if entry.spec.caller.node_id == node.node_id and not entry.detached:
                # the owner lived on that node
                if entry.info.state != _State.DEAD:
                    self.kill(entry.actor_id, force=True, no_restart=True, reason="the actor's owner's node died")

    def _on_worker_lost(self, entry: ActorEntry, incarnation: int, message: str,
                        intended: bool = False, node_died: bool = False) -> None:
        if entry.incarnation != incarnation or entry.info.state == _State.DEAD:
            return
        self.by_worker.pop(entry.worker_id, None)
        entry.worker_id = b""
        entry.incarnation += 1
        info = entry.info
        restarts_left = info.max_restarts == -1 or info.num_restarts < info.max_restarts
        if intended or entry.no_restart or not restarts_left:
            why = message
            if entry.no_restart and entry.kill_requested:
                why = entry.kill_reason or "the actor was killed with nbray.kill()"
            elif intended:
                why = "the actor exited (exit_actor, __ray_terminate__ or out of scope)"
            elif not restarts_left and info.max_restarts:
                why = f"{message}; it used all {info.max_restarts} restarts"
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED, message=why),
                      preempted=node_died)
            return
        info.num_restarts += 1
        info.state = _State.RESTARTING
        info.preempted = node_died
        info.ClearField("address")
        info.timestamp_ms = _now_ms()
        logger.info("restarting actor %s (%d/%s): %s", info.actor_id.hex()[:8], info.num_restarts,
                    info.max_restarts if info.max_restarts != -1 else "inf", message)
        self._publish(entry)
        self._schedule(entry)

    def _die(self, entry: ActorEntry, cause: common_pb2.ErrorInfo, preempted: bool = False) -> None:
        info = entry.info
        if info.state == _State.DEAD:
            return
        info.state = _State.DEAD
        detail = (f"class={info.class_name}, actor_id={info.actor_id.hex()}, pid={info.pid}, "
                  f"name={info.name!r}, namespace={info.namespace!r}")
        node = self.nodes.get(info.node_id)
        if node is not None:
            detail += f", ip={node.info.node_ip}"
        cause.message = f"{cause.message} ({detail})"
        info.death_cause.CopyFrom(cause)
        info.preempted = preempted
        info.ClearField("address")
        info.timestamp_ms = _now_ms()
        entry.incarnation += 1
        self.by_worker.pop(entry.worker_id, None)
        self._release_name(entry)
        self._publish(entry)

    def _release_name(self, entry: ActorEntry) -> None:
        info = entry.info
        if info.name and self.named.get((info.namespace, info.name)) == info.actor_id:
            del self.named[(info.namespace, info.name)]

    # ---- killing -----------------------------------------------------------------------------------------

    def kill(self, actor_id: bytes, force: bool, no_restart: bool, reason: str = "") -> None:
        entry = self.actors.get(actor_id)
        if entry is None:
            raise RpcError("not_found", f"no actor with id {actor_id.hex()}")
        if entry.info.state == _State.DEAD:
            return
        entry.kill_requested = True
        entry.no_restart = entry.no_restart or no_restart
        # the first reason stands: a later owner death does not rewrite an earlier kill
        entry.kill_reason = entry.kill_reason or reason
        if entry.no_restart:
            # It will never serve again: its name is free at once (as in
            # Ray), not only once its worker's exit has been reported.
            self._release_name(entry)
        if entry.worker_id:
            if force:
                self._kill_worker(entry.lease_node, entry.worker_id, reason or "killed")
            else:
                self._send_kill(entry, force=False)
        elif entry.no_restart:
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED,
                                                  message=reason or "the actor was killed with nbray.kill()"))

    def out_of_scope(self, actor_id: bytes) -> None:
        entry = self.actors.get(actor_id)
        if entry is None or entry.detached or entry.info.state == _State.DEAD:
            return
        entry.no_restart = True
        # Free the name now: the worker may exit before its death reaches
        # the GCS, and a lookup in between must not find a dying actor.
        self._release_name(entry)
        if entry.worker_id:
            self._send_kill(entry, force=False)
        else:
            self._die(entry, common_pb2.ErrorInfo(type=common_pb2.ACTOR_DIED,
                                                  message="all handles to the actor went out of scope"))

    def _send_kill(self, entry: ActorEntry, force: bool) -> None:
        address = entry.info.address
        if not address.worker_id:
            return
        req = core_worker_pb2.KillActorLocalRequest(force=force, no_restart=entry.no_restart)

        def on_conn(conn: Connection | None, error: BaseException | None) -> None:
            if conn is not None:
                conn.call(_KILL_ACTOR, req)
            elif entry.worker_id:
                self._kill_worker(entry.lease_node, entry.worker_id, "could not reach the actor")

        self.pool.get(address, on_conn)

    def _kill_worker(self, node_id: bytes, worker_id: bytes, reason: str) -> None:
        node = self.nodes.get(node_id)
        if node is not None and node.alive and worker_id:
            node.conn.call(_KILL_WORKER, raylet_pb2.KillWorkerRequest(worker_id=worker_id, force=True,
                                                                      reason=reason))

    # ---- queries -------------------------------------------------------------------------------------------

    def get(self, actor_id: bytes) -> ActorEntry | None:
        return self.actors.get(actor_id)

    def get_named(self, name: str, namespace: str) -> ActorEntry | None:
        actor_id = self.named.get((namespace, name))
        return self.actors.get(actor_id) if actor_id is not None else None

    def list_named(self, all_namespaces: bool, namespace: str) -> list[tuple[str, str]]:
        return [(ns, name) for (ns, name), aid in self.named.items()
                if (all_namespaces or ns == namespace) and self.actors[aid].info.state != _State.DEAD]

    def pending_count(self) -> int:
        return sum(1 for e in self.actors.values()
                   if e.info.state in (_State.PENDING_CREATION, _State.RESTARTING) and not e.worker_id)

    def _retry_pending(self) -> None:
        for entry in list(self.actors.values()):
            if (entry.info.state in (_State.PENDING_CREATION, _State.RESTARTING) and not entry.worker_id
                    and entry.lease_request_id == 0):
                self._schedule(entry)

    def restore(self, info: gcs_pb2.ActorInfo, spec: common_pb2.TaskSpec, detached: bool) -> None:
        """Take an actor record an earlier GCS stored (before any request).

        The record keeps its state: an ALIVE actor keeps its address (its
        worker may still serve), a pending one is placed once nodes register.
        """
        entry = ActorEntry(info, spec, detached)
        if info.state == _State.ALIVE and info.address.worker_id:
            entry.worker_id = info.address.worker_id
            entry.lease_node = info.node_id
            self.by_worker[entry.worker_id] = entry.actor_id
        self.actors[entry.actor_id] = entry
        if info.name and info.state != _State.DEAD:
            self.named[(info.namespace, info.name)] = entry.actor_id

    def _publish(self, entry: ActorEntry) -> None:
        self.publisher.publish(gcs_pb2.PubMessage(channel=gcs_pb2.ACTOR, key=entry.actor_id, actor=entry.info))


def owner_died_reason(failure: gcs_pb2.WorkerFailure) -> str:
    """Why an actor died with its owner, naming the owner as far as known."""
    addr = failure.address
    who = f"worker {addr.worker_id.hex()[:12]}" if addr.worker_id else "a worker"
    if failure.pid:
        who += f", pid {failure.pid}"
    if addr.host:
        who += f", at {addr.host}:{addr.port}"
    kind = "driver" if failure.is_driver else "owner"
    return (f"the actor's {kind} ({who}) died, and a non-detached actor fate-shares with the process "
            "that created it (create it with lifetime='detached' to outlive its creator)")


def _placement_resources(spec: common_pb2.TaskSpec) -> dict[str, float]:
    return dict(spec.placement_resources) if spec.placement_resources else dict(spec.resources)


def _now_ms() -> int:
    return int(time.time() * 1000)
