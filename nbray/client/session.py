"""A notebook client's session: the driver on the cluster that acts for it.

The client server starts one session process per client and hands it the
client's socket. The session connects to the cluster as an ordinary
driver, so it owns every object, task and actor the client creates, and
serves the client's requests:

* submissions run in arrival order on the connection's thread (they never
  block), so the client need not wait for them;
* anything that may block (get, wait, actor creation, GCS calls) runs on
  its own thread and replies when done;
* every reference handed to the client is held here until the client
  releases it, counted per hand-out so releases and new hand-outs can cross;
* when the connection drops, everything stays for the reconnect grace
  period; a resumed connection gets the replies it missed (each request is
  applied once, by sequence number). After the grace period, or when the
  client disconnects, the session shuts its driver down: the job ends and
  the cluster frees what it owned.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from nbray.client.wire import INLINE_BYTES, LayoutReader, RawLayout, error_bytes
from nbray.common.config import Config, set_config
from nbray.common.serialization import deserialize, serialize
from nbray.protocol import client_pb2, common_pb2, gcs_pb2, method
from nbray.rpc.connection import Connection, Dispatcher

logger = logging.getLogger("nbray.client.session")

_CONNECT = method("ClientService.Connect")
_LOGS = method("ClientService.Logs")
# Requests whose replies are kept for a resent request; the rest are reads,
# simply run again.
_READS = frozenset({"Get", "GetChunk", "Wait", "FlushLogs", "ObjectInfo"})
# Requests that never block: handled in order on the connection's thread.
_QUICK = frozenset({"RegisterFunction", "RegisterTemplate", "SubmitTask", "PutChunk", "GetChunk",
                    "DownloadDone", "Release", "Cancel", "CancelCell", "ObjectInfo", "CreateFuture",
                    "FulfillFuture", "Disconnect"})
# Cells whose tasks are remembered for Ctrl-C.
_MAX_TAGS = 64
# Log entries kept for a disconnected client.
_MAX_BUFFERED_LOG_ENTRIES = 10_000


class _Running:
    """A request in progress; a resend moves where its reply goes."""

    __slots__ = ("conn", "rid")

    def __init__(self, conn: Connection, rid: int) -> None:
        self.conn = conn
        self.rid = rid


class Session:
    def __init__(self, session_id: bytes, config: Config, core: Any, dashboard_url: str) -> None:
        self.session_id = session_id
        self.config = config
        self.core = core
        self.dashboard_url = dashboard_url
        # The client's connection is served by the driver's own I/O thread:
        # submissions then go out corked with the driver's other traffic,
        # with no second thread contending for the submitter's locks.
        self.loop = core.loop
        # requests that may block (get, wait, actor creation, GCS calls); a
        # thread each, reused
        self.blocking = concurrent.futures.ThreadPoolExecutor(max_workers=256,
                                                              thread_name_prefix="nbray-client-op")
        self.dispatcher = Dispatcher()
        self.conn: Connection | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        # what the client holds: object id -> [ref, hand-outs not yet released]
        self.held: dict[bytes, list[Any]] = {}
        self.templates: dict[int, common_pb2.TaskSpec] = {}
        self.uploads: dict[int, tuple[bytes, memoryview, int]] = {}
        self.downloads: dict[int, LayoutReader] = {}
        self.futures: dict[bytes, dict[str, Any]] = {}
        self.tracked_actors: set[bytes] = set()
        self.tasks_by_tag: dict[str, list[bytes]] = {}
        self._timed_out: dict[int, int] = {}
        self._next_transfer = 1
        # exactly-once: replies by sequence number, and what is running
        self.replies: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.running: dict[int, _Running] = {}
        self.acked = 0
        self.grace_timer: Any = None
        self.log_backlog: collections.deque[gcs_pb2.LogEntry] = collections.deque(maxlen=_MAX_BUFFERED_LOG_ENTRIES)
        for m in client_pb2.DESCRIPTOR.services_by_name["ClientService"].methods:
            if m.name in ("Connect", "Logs"):
                continue
            self.dispatcher.register(method(f"ClientService.{m.name}"), self._handler(m.name))
        core.log_handler = self._forward_logs

    # ---- connections -------------------------------------------------------------------------------

    def adopt(self, sock: socket.socket, unread: bytes, connect: client_pb2.ClientConnectRequest, rid: int,
              resumed: bool) -> None:
        """Serve a (re)connected client (on the loop thread)."""
        if self.grace_timer is not None:
            self.grace_timer.cancel()
            self.grace_timer = None
        old = self.conn
        conn = Connection(self.loop, sock, self.dispatcher, name="client", peer_role="client",
                          max_frame_bytes=self.config.max_frame_bytes,
                          max_trailer_bytes=self.config.max_trailer_bytes, initial_data=unread)
        self.conn = conn
        if old is not None and not old.closed:
            old.close("the client reconnected")
        conn.add_close_callback(self._on_close)
        core = self.core
        reply = client_pb2.ClientConnectReply(
            session_id=self.session_id, resumed=resumed, job_id=core.job_id, node_ip=core.node_ip,
            node_id=core.node_id, gcs_address=core.gcs_address, namespace=core.namespace,
            session_dir=core.session_dir, dashboard_url=self.dashboard_url,
            reconnect_grace_ms=self.config.client_reconnect_grace_ms, driver_task_id=_root_task_id())
        reply.driver.CopyFrom(core.address)
        conn.reply(rid, _CONNECT, reply)
        conn.start()
        if self.log_backlog:
            batch = gcs_pb2.LogBatch(entries=list(self.log_backlog))
            self.log_backlog.clear()
            conn.send_oneway(_LOGS, client_pb2.ClientLogs(batch=batch))
        logger.info("client %s:%d %s", connect.hostname, connect.pid, "resumed" if resumed else "connected")

    def _on_close(self, conn: Connection) -> None:
        if conn is not self.conn or self.done.is_set():
            return
        self.conn = None
        grace = self.config.client_reconnect_grace_ms / 1000
        logger.info("client connection lost (%s); waiting %.0f s for it to resume", conn.close_reason, grace)
        self.grace_timer = self.loop.call_later(grace, self.finish, "the client did not reconnect in time")

    def finish(self, reason: str) -> None:
        """End the session: the driver shuts down and the process exits."""
        if self.done.is_set():
            return
        logger.info("session ends: %s", reason)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close(reason)
        self.done.set()

    def _forward_logs(self, batch: gcs_pb2.LogBatch) -> None:
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.send_oneway(_LOGS, client_pb2.ClientLogs(batch=batch))
        else:
            self.log_backlog.extend(batch.entries)

    # ---- request plumbing --------------------------------------------------------------------------

    def _handler(self, name: str) -> Callable[[Connection, Any, int], None]:
        serve = getattr(self, f"_serve_{name}")
        m = method(f"ClientService.{name}")
        is_read = name in _READS
        quick = name in _QUICK

        def handle(conn: Connection, req: Any, rid: int) -> None:
            seq = req.seq
            with self.lock:
                if req.acked > self.acked:
                    self._forget_acked(req.acked)
                cached = self.replies.get(seq)
                if cached is not None:
                    conn.reply(rid, m, cached)
                    return None
                running = self.running.get(seq)
                if running is not None:  # resent while in progress: answer the new request
                    running.conn, running.rid = conn, rid
                    return None
                self.running[seq] = _Running(conn, rid)
            trailer: Any = conn.current_trailer
            if name != "PutChunk" and trailer is not None:
                trailer = bytes(trailer)  # the connection reuses its buffer
            run = (name, m, serve, req, trailer, seq, is_read)
            if quick:
                self._run(*run)
            elif name == "Get":
                self._get_when_ready(req, run)
            else:
                self.blocking.submit(self._run, *run)
            return None

        return handle

    def _get_when_ready(self, req: client_pb2.ClientGetRequest, run: tuple[Any, ...]) -> None:
        """Answer a get once its objects are ready, without a thread waiting
        for them: on this thread when every value is in the driver's memory,
        else on a worker thread (object store reads block)."""
        core = self.core
        store = core.memory_store
        refs = core.refs

        def dispatch() -> None:
            if self._all_local(req):
                self._run(*run)
            else:
                self.blocking.submit(self._run, *run)

        missing = {r.object_id for r in req.refs if not store.contains(r.object_id)}
        if not missing:
            dispatch()
            return
        if not all(refs.is_owned(oid) for oid in missing):
            self.blocking.submit(self._run, *run)  # borrowed: the blocking get asks the owners
            return
        state = {"left": len(missing), "fired": False}
        timer: Any = None

        def fire(timed_out: bool) -> None:
            if state["fired"]:
                return
            state["fired"] = True
            if timer is not None:
                timer.cancel()
            if timed_out:
                # the get now raises GetTimeoutError for what is missing
                self._timed_out[req.seq] = req.timeout_ms
                req.timeout_ms = 0
            dispatch()

        def on_entry(entry: Any) -> None:  # on whichever thread stored the value
            with self.lock:
                state["left"] -= 1
                done = state["left"] <= 0 or entry.is_error
            if done:
                self.loop.post(fire, False)

        for oid in missing:
            store.on_ready(oid, on_entry)
        if req.timeout_ms >= 0 and not state["fired"]:
            timer = self.loop.call_later(req.timeout_ms / 1000, fire, True)

    def _all_local(self, req: client_pb2.ClientGetRequest) -> bool:
        """Every value of a get is in the driver's memory (no waiting, no
        call to the object store): it can be answered on the I/O thread."""
        store = self.core.memory_store
        for r in req.refs:
            entry = store.get(r.object_id)
            if entry is None or entry.in_plasma:
                return False
        return True

    def _run(self, name: str, m: Any, serve: Callable[..., Any], req: Any, trailer: Any, seq: int,
             is_read: bool) -> None:
        reply_trailer = None
        try:
            result = serve(req, trailer)
            if isinstance(result, tuple):
                result, reply_trailer = result
        except BaseException as exc:  # every failure goes back to the client
            if not isinstance(exc, Exception):
                logger.warning("%s interrupted: %r", name, exc)
            result = m.reply_cls(error=error_bytes(exc))
        with self.lock:
            target = self.running.pop(seq, None)
            if not is_read and seq > self.acked:
                self.replies[seq] = result
        if target is not None and not target.conn.closed:
            target.conn.reply(target.rid, m, result, trailer=reply_trailer)

    def _forget_acked(self, acked: int) -> None:
        """Drop replies the client confirmed having (caller holds the lock)."""
        self.acked = acked
        replies = self.replies
        while replies:
            seq = next(iter(replies))
            if seq > acked:
                break
            del replies[seq]

    # ---- references --------------------------------------------------------------------------------

    def _hand_out(self, ref: Any) -> client_pb2.ClientRef:
        """Hold `ref` for the client (once more) and describe it."""
        with self.lock:
            entry = self.held.get(ref._id)
            if entry is None:
                self.held[ref._id] = [ref, 1]
            else:
                entry[1] += 1
        return client_pb2.ClientRef(object_id=ref._id, owner=ref._owner)

    def _ref(self, r: client_pb2.ClientRef) -> Any:
        """A real ObjectRef for a client reference."""
        with self.lock:
            entry = self.held.get(r.object_id)
        if entry is not None:
            return entry[0]
        return self.core.deserialize_ref(r.object_id, r.owner)

    def _load(self, data: Any) -> Any:
        return deserialize(memoryview(data)) if data is not None else ((), {})

    def _tag(self, tag: str) -> None:
        from nbray.worker import context

        context.current().context_tag = tag

    # ---- tasks and actors --------------------------------------------------------------------------

    def _serve_RegisterFunction(self, req: client_pb2.ClientFunctionRequest, _: Any) -> Any:
        self.core._function_bodies[req.function_id] = req.body
        return client_pb2.ClientAck()

    def _serve_RegisterTemplate(self, req: client_pb2.ClientTemplateRequest, _: Any) -> Any:
        spec = common_pb2.TaskSpec()
        spec.CopyFrom(req.spec)
        self.templates[req.template_id] = spec
        return client_pb2.ClientAck()

    def _serve_SubmitTask(self, req: client_pb2.ClientSubmitRequest, trailer: Any) -> Any:
        template = self.templates.get(req.template_id)
        if template is None:
            raise RuntimeError(f"unknown task template {req.template_id} (the client did not register it)")
        args, kwargs = self._load(trailer)
        self._tag(req.context_tag)
        core = self.core
        if req.actor_id:
            if req.actor_id not in self.tracked_actors:
                self.tracked_actors.add(req.actor_id)
                core.post(core.actor_submitter.track, req.actor_id)
            refs = core.submit_actor_task(req.actor_id, template, args, kwargs, req.sequence_number,
                                          task_id=req.task_id, handle_id=req.handle_ref_id)
        else:
            refs = core.submit_task(template, args, kwargs, task_id=req.task_id)
        for ref in refs:
            self._hand_out(ref)
        if req.context_tag:
            self._remember_tag(req.context_tag, req.task_id)
        return client_pb2.ClientAck()

    def _remember_tag(self, tag: str, task_id: bytes) -> None:
        """Which tasks a cell submitted, for Ctrl-C (bounded: finished ones are dropped)."""
        by_tag = self.tasks_by_tag
        tasks = by_tag.pop(tag, None) or []
        by_tag[tag] = tasks  # most recent tag last
        tasks.append(task_id)
        if len(tasks) % 4096 == 0:
            tasks[:] = [t for t in tasks if self.core.task_manager.get(t) is not None]
        while len(by_tag) > _MAX_TAGS:
            del by_tag[next(iter(by_tag))]

    def _serve_CreateActor(self, req: client_pb2.ClientCreateActorRequest, trailer: Any) -> Any:
        args, kwargs = self._load(trailer)
        self._tag(req.context_tag)
        actor_id, info, handle_ref = self.core.create_actor(
            req.spec, args, kwargs, name=req.name, namespace=req.namespace if req.has_namespace else None,
            detached=req.detached, max_restarts=req.max_restarts, get_if_exists=req.get_if_exists,
            class_name=req.class_name, handle_metadata=req.handle_metadata)
        self.tracked_actors.add(actor_id)
        reply = client_pb2.ClientCreateActorReply(actor_id=actor_id, actor=info)
        if handle_ref is not None:
            reply.handle_ref.CopyFrom(self._hand_out(handle_ref))
        return reply

    def _serve_KillActor(self, req: client_pb2.ClientKillActorRequest, _: Any) -> Any:
        self.core.kill_actor(req.actor_id, req.no_restart)
        return client_pb2.ClientAck()

    def _serve_Cancel(self, req: client_pb2.ClientCancelRequest, _: Any) -> Any:
        self.core.cancel(req.object_id, req.force, req.recursive)
        return client_pb2.ClientAck()

    def _serve_CancelCell(self, req: client_pb2.ClientCancelCellRequest, _: Any) -> Any:
        from nbray.common import ids

        core = self.core
        task_ids = list(dict.fromkeys(
            self.tasks_by_tag.pop(req.context_tag, []) if req.context_tag else []))
        task_ids += [ids.task_id_of(oid) for oid in req.object_ids]
        pending = [t for t in dict.fromkeys(task_ids) if core.task_manager.get(t) is not None]
        for task_id in pending:
            try:
                core.cancel(ids.return_object_id(task_id, 1), False, True)
            except Exception as exc:
                logger.debug("cancel of %s failed: %s", task_id.hex(), exc)
        if pending and req.force_after_ms >= 0:
            self.loop.call_later(req.force_after_ms / 1000, self._force_cancel, pending)
        return client_pb2.ClientAck()

    def _force_cancel(self, task_ids: list[bytes]) -> None:
        from nbray.common import ids

        core = self.core
        for task_id in task_ids:
            task = core.task_manager.get(task_id)
            if task is not None and not task.is_actor:
                try:
                    core.cancel(ids.return_object_id(task_id, 1), True, True)
                except Exception as exc:
                    logger.debug("forced cancel of %s failed: %s", task_id.hex(), exc)

    def _serve_Generator(self, req: client_pb2.ClientGeneratorRequest, _: Any) -> Any:
        core = self.core
        if req.op == client_pb2.ClientGeneratorRequest.DROPPED:
            core.generator_dropped(req.generator_id, req.index)
            return client_pb2.ClientGeneratorReply()
        if req.op == client_pb2.ClientGeneratorRequest.QUERY:
            return client_pb2.ClientGeneratorReply(
                item_ready=core.generator_item_ready(req.generator_id, req.index),
                finished=core.generator_finished(req.generator_id, req.index))
        ref = core.generator_next(req.generator_id, req.index,
                                  None if req.timeout_ms < 0 else req.timeout_ms / 1000)
        if ref is None:
            return client_pb2.ClientGeneratorReply(done=True)
        reply = client_pb2.ClientGeneratorReply()
        reply.item.CopyFrom(self._hand_out(ref))
        return reply

    # ---- objects -----------------------------------------------------------------------------------

    def _serve_Put(self, req: client_pb2.ClientPutRequest, trailer: Any) -> Any:
        nested = [(r.object_id, r.owner) for r in req.nested]
        objects = self.core.objects
        if req.upload_id:
            with self.lock:
                upload = self.uploads.pop(req.upload_id, None)
            if upload is None:
                raise RuntimeError(f"unknown upload {req.upload_id}")
            oid, _, size = upload
            ref = objects.finish_put(oid, size, nested)
        else:
            ref = objects.put_serialized(RawLayout(bytes(trailer or b""), nested))
        return client_pb2.ClientPutReply(ref=self._hand_out(ref))

    def _serve_PutStart(self, req: client_pb2.ClientPutStartRequest, _: Any) -> Any:
        oid, dest = self.core.objects.begin_put(req.size)
        with self.lock:
            upload_id = self._next_transfer
            self._next_transfer += 1
            self.uploads[upload_id] = (oid, dest, req.size)
        return client_pb2.ClientPutStartReply(upload_id=upload_id)

    def _serve_PutChunk(self, req: client_pb2.ClientChunkRequest, trailer: Any) -> Any:
        upload = self.uploads.get(req.transfer_id)
        if upload is None:
            raise RuntimeError(f"unknown upload {req.transfer_id}")
        _, dest, size = upload
        n = trailer.nbytes if trailer is not None else 0
        if req.offset < 0 or req.offset + n > size:
            raise ValueError(f"chunk [{req.offset}, {req.offset + n}) outside the upload of {size} bytes")
        dest[req.offset : req.offset + n] = trailer
        return client_pb2.ClientAck()

    def _serve_Get(self, req: client_pb2.ClientGetRequest, _: Any) -> Any:
        from nbray.exceptions import GetTimeoutError

        refs = [self._ref(r) for r in req.refs]
        timeout = None if req.timeout_ms < 0 else req.timeout_ms / 1000
        waited = self._timed_out.pop(req.seq, None)
        try:
            values = self.core.objects.get(refs, timeout)
        except GetTimeoutError as exc:
            if waited is None:
                raise
            raise GetTimeoutError(str(exc).replace("after 0.0 s", f"after {waited / 1000} s")) from None
        reply = client_pb2.ClientGetReply()
        inline: list[bytes] = []
        budget = INLINE_BYTES
        for ref, value in zip(refs, values):
            s = serialize(value)
            item = reply.values.add(object_id=ref._id, size=s.total_bytes)
            for oid, owner in s.nested_refs:
                item.nested.add().CopyFrom(self._hand_out(self.core.deserialize_ref(oid, owner)))
            if s.total_bytes <= budget:
                budget -= s.total_bytes
                inline.append(s.to_bytes())
            else:
                with self.lock:
                    item.download_id = self._next_transfer
                    self._next_transfer += 1
                    self.downloads[item.download_id] = LayoutReader(s, keep_alive=value)
        return reply, (b"".join(inline) if inline else None)

    def _serve_GetChunk(self, req: client_pb2.ClientChunkRequest, _: Any) -> Any:
        reader = self.downloads.get(req.transfer_id)
        if reader is None:
            raise RuntimeError(f"unknown download {req.transfer_id}")
        return client_pb2.ClientAck(), reader.read(req.offset, req.length)

    def _serve_DownloadDone(self, req: client_pb2.ClientDownloadDoneRequest, _: Any) -> Any:
        with self.lock:
            for download_id in req.download_ids:
                self.downloads.pop(download_id, None)
        return client_pb2.ClientAck()

    def _serve_Wait(self, req: client_pb2.ClientWaitRequest, _: Any) -> Any:
        from nbray.common import ids
        from nbray.object_ref import ObjectRef, ObjectRefGenerator

        items: list[Any] = [self._ref(r) for r in req.refs]
        generators = []
        for g in req.generators:
            gen = ObjectRefGenerator(ObjectRef(ids.return_object_id(g.generator_id, 1)), self.core)
            gen._next_index = g.next_index
            items.insert(g.position, gen)
            generators.append(gen)
        try:
            timeout = None if req.timeout_ms < 0 else req.timeout_ms / 1000
            ready, _ = self.core.objects.wait(items, req.num_returns, timeout, req.fetch_local)
        finally:
            for gen in generators:
                gen._core = None  # type: ignore[assignment]  # a view for wait(): never drop the generator
        ready_ids = {id(r) for r in ready}
        return client_pb2.ClientWaitReply(ready=[i for i, r in enumerate(items) if id(r) in ready_ids])

    def _serve_Release(self, req: client_pb2.ClientReleaseRequest, _: Any) -> Any:
        dropped = []
        with self.lock:
            for oid, count in zip(req.object_ids, req.counts):
                entry = self.held.get(oid)
                if entry is None:
                    continue
                entry[1] -= count
                if entry[1] <= 0:
                    dropped.append(self.held.pop(oid)[0])
        del dropped  # the refs go (outside the lock)
        return client_pb2.ClientAck()

    def _serve_ObjectInfo(self, req: client_pb2.ClientObjectInfoRequest, _: Any) -> Any:
        core = self.core
        entry = core.memory_store.get(req.object_id)
        if entry is None:
            return client_pb2.ClientObjectInfoReply(state="pending")
        return client_pb2.ClientObjectInfoReply(
            size=core.object_size(req.object_id), state="failed" if entry.is_error else "ready",
            in_shared_memory=entry.in_plasma, node_id=entry.node_id if entry.in_plasma else core.node_id)

    def _serve_CreateFuture(self, req: client_pb2.ClientFutureRequest, _: Any) -> Any:
        box: dict[str, Any] = {}
        ref = self.core.future_object(lambda fulfill: box.__setitem__("fulfill", fulfill))
        self.futures[ref._id] = box
        return client_pb2.ClientFutureReply(ref=self._hand_out(ref))

    def _serve_FulfillFuture(self, req: client_pb2.ClientFutureRequest, trailer: Any) -> Any:
        box = self.futures.pop(req.object_id, None)
        if box is None:
            raise RuntimeError(f"no future object {req.object_id.hex()}")
        value = deserialize(memoryview(bytes(trailer))) if trailer is not None else None
        fulfill = box.get("fulfill")
        if fulfill is None:  # the core has not started it yet: hand over from its thread
            self.core.post(lambda: box["fulfill"](value, req.is_error))
        else:
            fulfill(value, req.is_error)
        return client_pb2.ClientAck()

    # ---- cluster -----------------------------------------------------------------------------------

    def _serve_GcsCall(self, req: client_pb2.ClientGcsCallRequest, _: Any) -> Any:
        try:
            m = method(f"GcsService.{req.method}")
        except KeyError:
            raise ValueError(f"GcsService has no method {req.method!r}") from None
        request = m.request_cls()
        request.ParseFromString(req.request)
        timeout = req.timeout_ms / 1000 if req.timeout_ms > 0 else None
        reply = self.core.gcs.call(req.method, request, timeout)
        return client_pb2.ClientGcsCallReply(reply=reply.SerializeToString())

    def _serve_FlushLogs(self, req: client_pb2.ClientFlushRequest, _: Any) -> Any:
        self.core.flush_logs(timeout_s=max(0.1, req.timeout_ms / 1000))
        return client_pb2.ClientAck()

    def _serve_Disconnect(self, req: client_pb2.ClientDisconnectRequest, _: Any) -> Any:
        self.loop.post(self.finish, "the client disconnected")
        return client_pb2.ClientAck()


def _dashboard_url(core: Any) -> str:
    try:
        reply = core.gcs.call("KVGet", gcs_pb2.KVGetRequest(ns="dashboard", key=b"url"), 5)
        return reply.value.decode() if reply.found else ""
    except Exception:
        return ""


def _root_task_id() -> bytes:
    from nbray.worker import context

    return context.current().task_id


# ---- process ---------------------------------------------------------------------------------------


def receive_handover(control: socket.socket) -> tuple[socket.socket, bytes, client_pb2.ClientConnectRequest, int] | None:
    """One client socket from the client server, with its Connect request."""
    try:
        data, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
    except OSError:
        return None
    if not data or not fds:
        for fd in fds:
            os.close(fd)
        return None
    msg = json.loads(data)
    sock = socket.socket(fileno=fds[0])
    request = client_pb2.ClientConnectRequest()
    request.ParseFromString(bytes.fromhex(msg["request"]))
    return sock, bytes.fromhex(msg["unread"]), request, int(msg["rid"])


def _refuse(sock: socket.socket, rid: int, error: str) -> None:
    """Answer a Connect with an error (before any session exists)."""
    from nbray.rpc.connection import HEADER, KIND_REPLY

    body = client_pb2.ClientConnectReply(error=error).SerializeToString()
    try:
        sock.setblocking(True)
        sock.settimeout(5)
        sock.sendall(HEADER.pack(len(body), 0, _CONNECT.id, KIND_REPLY, rid) + body)
    except OSError:
        pass
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbray-client-session")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--session-id", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--config-json", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s client-session: %(message)s")
    config = Config.from_json(args.config_json)
    set_config(config)
    control = socket.socket(fileno=args.control_fd)
    first = receive_handover(control)
    if first is None:
        return 1
    sock, unread, connect, rid = first

    import nbray
    from nbray import api

    try:
        runtime_env = json.loads(connect.runtime_env_json) if connect.runtime_env_json else None
        nbray.init(address=args.gcs_address, namespace=connect.namespace or None, runtime_env=runtime_env,
                   configure_logging=False, _system_config=config.overrides())
    except Exception as exc:
        logger.error("could not start the session's driver: %s", exc)
        _refuse(sock, rid, f"the session could not start its driver: {type(exc).__name__}: {exc}")
        return 1
    core = api._state.core
    session = Session(bytes.fromhex(args.session_id), config, core, _dashboard_url(core))
    signal.signal(signal.SIGTERM, lambda *_: session.loop.post(session.finish, "stopped by the client server"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_control(mask: int) -> None:
        handover = receive_handover(control)
        if handover is None:
            session.loop.remove(control)
            session.finish("the client server went away")
            return
        session.adopt(handover[0], handover[1], handover[2], handover[3], resumed=True)

    def start() -> None:
        session.adopt(sock, unread, connect, rid, False)
        session.loop.add_reader(control, on_control)

    session.loop.post(start)
    try:
        while not session.done.wait(1.0):
            pass
    finally:
        session.loop.post(session.loop.remove, control)
        session.blocking.shutdown(wait=False, cancel_futures=True)
        nbray.shutdown()
        control.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
