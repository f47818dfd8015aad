"""The client end of ``nbray.init("nbray://HOST:PORT")``.

``ClientCore`` stands where a driver's core worker stands: the public API
(``remote``, ``get``, ``put``, ``wait``, actors, ...) calls the same
methods on it, and it forwards them to the client's session on the
cluster, which acts as the driver.

* Submitting never waits: the client picks task ids (hence return ids)
  itself and streams submissions; a submission the session rejects makes
  its results raise that error.
* References are counted here; when the last Python object for an id goes,
  a batched Release tells the session, which holds the object until then.
* Values travel in the shared serialization layout; large ones in chunks
  read straight from (and into) the value's memory, so there is no size
  limit and no extra copy of big arrays.
* Every request carries a sequence number and stays in an outbox until its
  reply arrives. A dropped connection is reopened in the background (for up
  to the session's grace period) and the outbox is sent again; the session
  applies each request once.
* Ctrl-C in a blocking ``get`` cancels what the current notebook cell
  submitted (forcing after a grace period) and leaves the connection usable.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray.client.wire import INLINE_BYTES, chunks, error_bytes, raise_if_error
from nbray.common import ids
from nbray.common.config import Config
from nbray.common.serialization import deserialize, serialize
from nbray.exceptions import ConnectionLostError
from nbray.object_ref import ObjectRef, ObjectRefGenerator
from nbray.protocol import METHODS, client_pb2, common_pb2, gcs_pb2, method
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop, Future
from nbray.rpc.handshake import connect_socket
from nbray.rpc.tls_connection import make_connection
from nbray.worker import context
from nbray.worker.context import TaskContext

logger = logging.getLogger("nbray.client")

# Ctrl-C: running tasks of the interrupted cell get KeyboardInterrupt, and
# are killed if still running after this long.
FORCE_CANCEL_AFTER_MS = 5_000
_GCS_METHODS = {m.name: m for m in METHODS if m.service == "GcsService"}


class SessionLostError(ConnectionError):
    """The client's session on the cluster is gone (closed or expired)."""


class _Op:
    __slots__ = ("seq", "method", "request", "trailer", "trailer_into", "future", "reply_trailer")

    def __init__(self, seq: int, m: Any, request: Any, trailer: Any, trailer_into: Any) -> None:
        self.seq = seq
        self.method = m
        self.request = request
        self.trailer = trailer
        self.trailer_into = trailer_into
        self.future = Future()
        self.reply_trailer: Any = None

    def take_trailer(self, size: int) -> bytearray:
        self.reply_trailer = bytearray(size)
        return self.reply_trailer


class _Gcs:
    """GCS calls, made by the session on the client's behalf."""

    def __init__(self, client: ClientCore) -> None:
        self._client = client

    def call(self, name: str, request: Any = None, timeout_s: float | None = None) -> Any:
        m = _GCS_METHODS.get(name)
        if m is None:
            raise ValueError(f"GcsService has no method {name!r}")
        req = client_pb2.ClientGcsCallRequest(
            method=name, request=(request if request is not None else m.request_cls()).SerializeToString(),
            timeout_ms=int(timeout_s * 1000) if timeout_s else 0)
        reply = self._client._call("GcsCall", req)
        out = m.reply_cls()
        out.ParseFromString(reply.reply)
        return out

    def call_async(self, name: str, request: Any = None,
                   callback: Callable[[Any, BaseException | None], None] | None = None,
                   timeout_s: float | None = None) -> concurrent.futures.Future[Any]:
        def run() -> Any:
            try:
                reply = self.call(name, request, timeout_s)
            except Exception as exc:
                if callback is not None:
                    callback(None, exc)
                raise
            if callback is not None:
                callback(reply, None)
            return reply

        return self._client._pool().submit(run)

    def send(self, name: str, request: Any) -> None:
        self.call_async(name, request)


class _NoActorTracking:
    """The session tracks actors; the client has nothing to do."""

    def track(self, *args: Any) -> None:
        pass

    def state_of(self, actor_id: bytes) -> None:
        return None


class ClientCore:
    is_worker = False
    actor_id = b""
    actor_spec = None

    def __init__(self, address: str, token: bytes, config: Config, *, namespace: str | None,
                 runtime_env: dict[str, Any] | None, tls_context: ssl.SSLContext | None = None) -> None:
        self.server_address = address
        self.token = token
        # With TLS, the server's certificate must be valid for the host in the address.
        self.tls_context = tls_context
        self.config = config
        self.gcs = _Gcs(self)
        self.objects = self
        self.actor_submitter = _NoActorTracking()
        from nbray.worker.core_worker import print_logs

        self.log_handler: Callable[[gcs_pb2.LogBatch], None] = print_logs
        self._lock = threading.RLock()
        self._outbox: collections.OrderedDict[int, _Op] = collections.OrderedDict()
        self._next_seq = 1
        self._conn: Connection | None = None
        self._closed = False
        self._closing = False
        self._lost: str = ""
        self._reconnecting = False
        self.reconnects = 0  # connections resumed after a drop
        self._wake = threading.Event()
        self._disconnected = threading.Event()
        # references: live Python objects per id, and the session's hand-outs per id
        self._live: dict[bytes, int] = {}
        self._grants: dict[bytes, int] = {}
        self._dead_refs: collections.deque[bytes] = collections.deque()
        self._release_scheduled = False
        self._receiving = threading.local()
        self._templates: dict[int, tuple[common_pb2.TaskSpec, int]] = {}
        self._next_template = 1
        self._functions: set[bytes] = set()
        self._failed_tasks: dict[bytes, bytes] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.loop = EventLoop("nbray-client")
        self.dispatcher = Dispatcher()
        self.dispatcher.register(method("ClientService.Logs"), self._on_logs)
        self.loop.start_thread()
        self._connect_request = client_pb2.ClientConnectRequest(
            namespace=namespace or "", runtime_env_json=json.dumps(runtime_env) if runtime_env else "",
            hostname=socket.gethostname(), pid=os.getpid())
        try:
            reply = self._open(first=True)
        except BaseException:
            self.loop.stop()
            self.loop.join(5)
            raise
        self.session_id = reply.session_id
        self.job_id = reply.job_id
        self.address = common_pb2.Address()
        self.address.CopyFrom(reply.driver)
        self.address_bytes = self.address.SerializeToString()
        self.worker_id = self.address.worker_id
        self.node_id = reply.node_id
        self.node_ip = reply.node_ip
        self.gcs_address = reply.gcs_address
        self.namespace = reply.namespace
        self.session_dir = reply.session_dir
        self.dashboard_url = reply.dashboard_url
        self.grace_s = reply.reconnect_grace_ms / 1000
        context.set_root(TaskContext(reply.driver_task_id, self.job_id, name="driver", namespace=self.namespace))

    # ---- connection ---------------------------------------------------------------------------------

    def _open(self, first: bool) -> client_pb2.ClientConnectReply:
        """Connect (or reconnect) to the session; returns the Connect reply."""
        timeout = self.config.connect_timeout_ms / 1000
        host = self.server_address.rpartition(":")[0].strip("[]")
        sock = connect_socket(self.server_address, self.token, "client", timeout, tls_context=self.tls_context,
                              server_hostname=host if self.tls_context is not None else None)
        conn = make_connection(self.loop, sock, self.dispatcher, name=f"client session at {self.server_address}",
                               max_frame_bytes=self.config.max_frame_bytes,
                               max_trailer_bytes=self.config.max_trailer_bytes)
        conn.start()
        request = client_pb2.ClientConnectRequest()
        request.CopyFrom(self._connect_request)
        if not first:
            request.session_id = self.session_id
        # a new session starts a driver process: allow for that
        future = conn.call(method("ClientService.Connect"), request)
        if not future.wait(max(60.0, timeout)):
            conn.close("no answer to Connect")
            raise ConnectionError(f"the client server at {self.server_address} did not answer")
        reply = future.result()
        if reply.error:
            conn.close("refused")
            raise (ConnectionError if first else SessionLostError)(reply.error)
        conn.add_close_callback(self._on_conn_closed)
        with self._lock:
            self._conn = conn
            for op in list(self._outbox.values()):
                self._transmit(conn, op)
        return reply  # type: ignore[no-any-return]

    def _on_conn_closed(self, conn: Connection) -> None:
        if self._closing:
            self._disconnected.set()
        with self._lock:
            if conn is not self._conn:
                return
            self._conn = None
            if self._closed or self._closing or self._lost or self._reconnecting:
                return
            self._reconnecting = True
        logger.warning("lost the connection to the nbray session (%s); reconnecting", conn.close_reason)
        threading.Thread(target=self._reconnect, name="nbray-client-reconnect", daemon=True).start()

    def _reconnect(self) -> None:
        deadline = time.monotonic() + self.grace_s
        delay = 0.05
        error: BaseException | None = None
        while not self._closed and time.monotonic() < deadline:
            try:
                self._open(first=False)
                logger.warning("reconnected to the nbray session")
                with self._lock:
                    self._reconnecting = False
                    self.reconnects += 1
                return
            except SessionLostError as exc:
                error = exc
                break
            except (ConnectionError, OSError, TimeoutError) as exc:
                error = exc
            self._wake.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(1.0, delay * 2)
        reason = (f"the connection to the nbray session at {self.server_address} could not be restored "
                  f"within {self.grace_s:.0f} s ({error}); its objects and actors are gone. "
                  "Call nbray.shutdown() and nbray.init() to start a new session.")
        with self._lock:
            self._reconnecting = False
            self._lost = reason
            pending = list(self._outbox.values())
            self._outbox.clear()
        for op in pending:
            op.future.set_exception(SessionLostError(reason))

    def _transmit(self, conn: Connection, op: _Op) -> None:
        def on_reply(reply: Any, err: BaseException | None) -> None:
            self._on_reply(op, conn, reply, err)

        conn.call(op.method, op.request, trailer=op.trailer, trailer_into=op.trailer_into, callback=on_reply)

    def _on_reply(self, op: _Op, conn: Connection, reply: Any, error: BaseException | None) -> None:
        if isinstance(error, ConnectionLostError):
            return  # stays in the outbox: sent again after reconnecting
        with self._lock:
            if self._outbox.pop(op.seq, None) is None:
                return
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(reply)

    def _send(self, name: str, request: Any, trailer: Any = None, trailer_into: Any = None) -> _Op:
        m = method(f"ClientService.{name}")
        with self._lock:
            if self._lost:
                raise SessionLostError(self._lost)
            if self._closed:
                raise RuntimeError("nbray is not connected (the client was shut down)")
            seq = self._next_seq
            self._next_seq += 1
            request.seq = seq
            request.acked = (next(iter(self._outbox)) - 1) if self._outbox else seq - 1
            op = _Op(seq, m, request, trailer, trailer_into)
            if trailer_into == "bytes":
                op.trailer_into = op.take_trailer
            self._outbox[seq] = op
            conn = self._conn
        # Sent outside the lock: a reconnect in between resends it too, and
        # the session applies a sequence number once.
        if conn is not None:
            self._transmit(conn, op)
        return op

    def _wait(self, op: _Op, timeout_s: float | None = None) -> Any:
        if not op.future.wait(timeout_s):
            raise TimeoutError(f"no reply from the nbray session within {timeout_s} s")
        reply = op.future.result()
        raise_if_error(reply.error)
        return reply

    def _call(self, name: str, request: Any, trailer: Any = None) -> Any:
        return self._wait(self._send(name, request, trailer))

    def _on_logs(self, conn: Connection, msg: client_pb2.ClientLogs, rid: int) -> None:
        try:
            self.log_handler(msg.batch)
        except Exception:
            logger.exception("printing worker output failed")
        return None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="nbray-client")
        return self._executor

    def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        try:
            self._flush_releases()
            if not self._lost and self._conn is not None:
                # the session answers, or just closes the connection as it ends
                op = self._send("Disconnect", client_pb2.ClientDisconnectRequest())
                op.future.add_done_callback(lambda f: self._disconnected.set())
                self._disconnected.wait(10)
        except Exception as exc:
            logger.debug("disconnect: %s", exc)
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        self._wake.set()
        if conn is not None:
            conn.close("client shut down")
        self.loop.stop()
        self.loop.join(5)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        context.set_root(None)
        from nbray.object_ref import _core

        if _core[0] is self:  # type: ignore[comparison-overlap]
            _core[0] = None

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    def shutting_down(self) -> bool:
        return self._closed

    # ---- references ---------------------------------------------------------------------------------

    def _ref(self, object_id: bytes, owner: bytes, granted: bool) -> ObjectRef:
        with self._lock:
            self._live[object_id] = self._live.get(object_id, 0) + 1
            if granted:
                self._grants[object_id] = self._grants.get(object_id, 0) + 1
        return ObjectRef(object_id, owner, _counted=True)

    def _granted(self, r: client_pb2.ClientRef) -> ObjectRef:
        return self._ref(r.object_id, r.owner, True)

    def deserialize_ref(self, object_id: bytes, owner: bytes) -> ObjectRef:
        """A ref met while unpickling: counted; a hand-out when the value came from the session."""
        return self._ref(object_id, owner, getattr(self._receiving, "active", False))

    def release_ref(self, object_id: bytes) -> None:
        # From __del__, on any thread: no locks, no I/O.
        self._dead_refs.append(object_id)
        if not self._release_scheduled and not self._closed:
            self._release_scheduled = True
            self.loop.call_later_threadsafe(0.02, self._flush_releases)

    def _flush_releases(self) -> None:
        self._release_scheduled = False
        released: dict[bytes, int] = {}
        with self._lock:
            while self._dead_refs:
                oid = self._dead_refs.popleft()
                left = self._live.get(oid, 0) - 1
                if left > 0:
                    self._live[oid] = left
                    continue
                self._live.pop(oid, None)
                grants = self._grants.pop(oid, 0)
                if grants:
                    released[oid] = released.get(oid, 0) + grants
            if not released or self._lost or self._closed:
                return
            self._send("Release", client_pb2.ClientReleaseRequest(
                object_ids=list(released), counts=list(released.values())))

    def _load(self, data: Any) -> Any:
        """Deserialize a value the session sent (its refs are hand-outs)."""
        self._receiving.active = True
        try:
            return deserialize(data)
        finally:
            self._receiving.active = False

    # ---- functions and tasks ------------------------------------------------------------------------

    def register_function(self, exported: Any) -> None:
        if exported.function_id in self._functions:
            return
        self._functions.add(exported.function_id)
        self._send("RegisterFunction", client_pb2.ClientFunctionRequest(
            function_id=exported.function_id, body=exported.pickled))

    def function_body(self, function_id: bytes) -> bytes:
        return b""

    def _template_id(self, template: common_pb2.TaskSpec) -> int:
        known = self._templates.get(id(template))
        if known is not None and known[0] is template:
            return known[1]
        with self._lock:
            template_id = self._next_template
            self._next_template += 1
            self._templates[id(template)] = (template, template_id)
            self._send("RegisterTemplate", client_pb2.ClientTemplateRequest(template_id=template_id, spec=template))
        return template_id

    def _pack_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        s = serialize((args, kwargs))
        if s.total_bytes > self.config.max_inline_object_bytes:
            # Big arguments go into the object store first and travel by
            # reference (as the driver would do; the session never has to).
            args = tuple(self._promote(a) for a in args)
            kwargs = {k: self._promote(v) for k, v in kwargs.items()}
            s = serialize((args, kwargs))
        return s.to_bytes()

    def _promote(self, value: Any) -> Any:
        if isinstance(value, (ObjectRef, ObjectRefGenerator)):
            return value
        s = serialize(value)
        return self.put_serialized(s) if s.total_bytes > self.config.max_inline_object_bytes // 4 else value

    def _tag(self) -> str:
        ctx = context.current_or_none()
        return ctx.context_tag if ctx is not None else ""

    def submit_task(self, template: common_pb2.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any],
                    name: str = "", task_id: bytes | None = None) -> list[ObjectRef]:
        return self._submit(template, args, kwargs, b"", 0, b"")

    def submit_actor_task(self, actor_id: bytes, template: common_pb2.TaskSpec, args: tuple[Any, ...],
                          kwargs: dict[str, Any], sequence: int, task_id: bytes | None = None,
                          handle_id: bytes = b"") -> list[ObjectRef]:
        return self._submit(template, args, kwargs, actor_id, sequence, handle_id)

    def _submit(self, template: common_pb2.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any],
                actor_id: bytes, sequence: int, handle_id: bytes) -> list[ObjectRef]:
        payload = self._pack_args(args, kwargs)
        template_id = self._template_id(template)
        task_id = ids.new_task_id(actor_id or ids.nil_actor_id(self.job_id))
        count = 1 if template.streaming_generator else template.num_returns
        refs = [self._ref(ids.return_object_id(task_id, i + 1), self.address_bytes, True) for i in range(count)]
        op = self._send("SubmitTask", client_pb2.ClientSubmitRequest(
            template_id=template_id, task_id=task_id, actor_id=actor_id, sequence_number=sequence,
            context_tag=self._tag(), handle_ref_id=handle_id), trailer=payload)
        op.future.add_done_callback(lambda f: self._on_submitted(task_id, f))
        return refs

    def _on_submitted(self, task_id: bytes, future: Future) -> None:
        """A submission the session refused: its results raise the reason."""
        error = future.exception()
        data = error_bytes(error) if error is not None else future.result().error
        if data:
            self._failed_tasks[task_id] = data

    def _raise_failed_submissions(self, refs: list[Any]) -> None:
        if self._failed_tasks:
            for r in refs:
                data = self._failed_tasks.get(ids.task_id_of(r._id))
                if data is not None:
                    raise_if_error(data)

    def create_actor(self, template: common_pb2.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                     name: str, namespace: str | None, detached: bool, max_restarts: int,
                     get_if_exists: bool, class_name: str, handle_metadata: bytes
                     ) -> tuple[bytes, gcs_pb2.ActorInfo, ObjectRef | None]:
        payload = self._pack_args(args, kwargs)
        reply = self._call("CreateActor", client_pb2.ClientCreateActorRequest(
            spec=template, name=name, has_namespace=namespace is not None, namespace=namespace or "",
            detached=detached, max_restarts=max_restarts, get_if_exists=get_if_exists, class_name=class_name,
            handle_metadata=handle_metadata, context_tag=self._tag()), trailer=payload)
        handle_ref = self._granted(reply.handle_ref) if reply.HasField("handle_ref") else None
        return reply.actor_id, reply.actor, handle_ref

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        self._call("KillActor", client_pb2.ClientKillActorRequest(actor_id=actor_id, no_restart=no_restart))

    def cancel(self, object_id: bytes, force: bool, recursive: bool) -> None:
        self._call("Cancel", client_pb2.ClientCancelRequest(object_id=object_id, force=force, recursive=recursive))

    # ---- generators ---------------------------------------------------------------------------------

    def generator_next(self, task_id: bytes, index: int, timeout_s: float | None) -> ObjectRef | None:
        op = self._send("Generator", client_pb2.ClientGeneratorRequest(
            op=client_pb2.ClientGeneratorRequest.NEXT, generator_id=task_id, index=index,
            timeout_ms=-1 if timeout_s is None else int(timeout_s * 1000)))
        reply = self._interruptible(op, [])
        if reply.done:
            return None
        return self._granted(reply.item)

    def _generator_query(self, task_id: bytes, index: int) -> Any:
        return self._call("Generator", client_pb2.ClientGeneratorRequest(
            op=client_pb2.ClientGeneratorRequest.QUERY, generator_id=task_id, index=index))

    def generator_item_ready(self, task_id: bytes, index: int) -> bool:
        return bool(self._generator_query(task_id, index).item_ready)

    def generator_finished(self, task_id: bytes, index: int) -> bool:
        return bool(self._generator_query(task_id, index).finished)

    def generator_dropped(self, task_id: bytes, consumed: int) -> None:
        if self._closed or self._lost:
            return
        # from __del__: send from the I/O thread
        self.loop.post(self._send, "Generator", client_pb2.ClientGeneratorRequest(
            op=client_pb2.ClientGeneratorRequest.DROPPED, generator_id=task_id, index=consumed))

    # ---- objects ------------------------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        from nbray.worker.objects import serialize_put_value

        return self.put_serialized(serialize_put_value(value))

    def put_serialized(self, s: Any) -> ObjectRef:
        nested = [client_pb2.ClientRef(object_id=oid, owner=owner) for oid, owner in s.nested_refs]
        if s.total_bytes <= INLINE_BYTES:
            reply = self._call("Put", client_pb2.ClientPutRequest(size=s.total_bytes, nested=nested),
                               trailer=s.to_bytes())
            return self._granted(reply.ref)
        start = self._call("PutStart", client_pb2.ClientPutStartRequest(size=s.total_bytes))
        window: collections.deque[_Op] = collections.deque()
        limit = self.config.object_pull_window_chunks
        try:
            for offset, piece in chunks(s, self.config.object_chunk_bytes):
                if len(window) >= limit:
                    self._wait(window.popleft())
                window.append(self._send("PutChunk", client_pb2.ClientChunkRequest(
                    transfer_id=start.upload_id, offset=offset, length=piece.nbytes), trailer=piece))
            while window:
                self._wait(window.popleft())
        finally:
            window.clear()
        reply = self._call("Put", client_pb2.ClientPutRequest(
            upload_id=start.upload_id, size=s.total_bytes, nested=nested))
        return self._granted(reply.ref)

    def get(self, refs: list[ObjectRef], timeout_s: float | None) -> list[Any]:
        self._raise_failed_submissions(refs)
        op = self._send("Get", client_pb2.ClientGetRequest(
            refs=[client_pb2.ClientRef(object_id=r._id, owner=r._owner) for r in refs],
            timeout_ms=-1 if timeout_s is None else int(timeout_s * 1000)), trailer_into="bytes")
        reply = self._interruptible(op, refs)
        inline = memoryview(op.reply_trailer).toreadonly() if op.reply_trailer is not None else None
        pos = 0
        out = []
        downloads = []
        for item in reply.values:
            if item.download_id:
                data = self._download(item.download_id, item.size)
                downloads.append(item.download_id)
            else:
                assert inline is not None
                data = inline[pos : pos + item.size]
                pos += item.size
            out.append(self._load(data))
        if downloads:
            self._send("DownloadDone", client_pb2.ClientDownloadDoneRequest(download_ids=downloads))
        return out

    def _download(self, download_id: int, size: int) -> memoryview:
        buf = bytearray(size)
        view = memoryview(buf)
        chunk = self.config.object_chunk_bytes
        limit = self.config.object_pull_window_chunks
        window: collections.deque[_Op] = collections.deque()
        for offset in range(0, size, chunk):
            if len(window) >= limit:
                self._wait(window.popleft())
            length = min(chunk, size - offset)
            window.append(self._send("GetChunk", client_pb2.ClientChunkRequest(
                transfer_id=download_id, offset=offset, length=length),
                trailer_into=view[offset : offset + length]))
        while window:
            self._wait(window.popleft())
        return view.toreadonly()

    def _interruptible(self, op: _Op, refs: list[ObjectRef]) -> Any:
        """Wait for a blocking request; Ctrl-C cancels the cell's work."""
        try:
            op.future.wait()
        except KeyboardInterrupt:
            with self._lock:
                self._outbox.pop(op.seq, None)  # the reply, if any, is not wanted any more
            try:
                self._send("CancelCell", client_pb2.ClientCancelCellRequest(
                    context_tag=self._tag(), object_ids=[r._id for r in refs],
                    force_after_ms=FORCE_CANCEL_AFTER_MS))
            except Exception as exc:
                logger.warning("could not cancel the interrupted work: %s", exc)
            raise
        reply = op.future.result()
        raise_if_error(reply.error)
        return reply

    def wait(self, refs: list[Any], num_returns: int, timeout_s: float | None,
             fetch_local: bool, object_ids: list[bytes] | None = None) -> tuple[list[Any], list[Any]]:
        """`object_ids` is accepted for the driver's signature; unused here."""
        req = client_pb2.ClientWaitRequest(num_returns=num_returns, fetch_local=fetch_local,
                                           timeout_ms=-1 if timeout_s is None else int(timeout_s * 1000))
        plain = []
        for i, r in enumerate(refs):
            if isinstance(r, ObjectRefGenerator):
                req.generators.add(position=i, generator_id=r._task_id, next_index=r._next_index)
            else:
                plain.append(r)
                req.refs.add(object_id=r._id, owner=r._owner)
        failed = [i for i, r in enumerate(refs) if isinstance(r, ObjectRef)
                  and ids.task_id_of(r._id) in self._failed_tasks]
        reply = self._interruptible(self._send("Wait", req), plain)
        ready_at = set(reply.ready) | set(failed)
        ready: list[Any] = []
        not_ready: list[Any] = []
        for i, r in enumerate(refs):
            (ready if i in ready_at and len(ready) < num_returns else not_ready).append(r)
        return ready, not_ready

    def future_object(self, start: Callable[[Callable[[Any, bool], None]], None]) -> ObjectRef:
        reply = self._call("CreateFuture", client_pb2.ClientFutureRequest())
        oid = reply.ref.object_id

        def fulfill(value: Any, is_error: bool) -> None:
            data = serialize(value, is_error=is_error).to_bytes()
            self._send("FulfillFuture", client_pb2.ClientFutureRequest(object_id=oid, is_error=is_error),
                       trailer=data)

        self._pool().submit(start, fulfill)
        return self._granted(reply.ref)

    def ref_future(self, ref: ObjectRef) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def resolve() -> None:
            try:
                fut.set_result(self.get([ref], None)[0])
            except BaseException as exc:
                fut.set_exception(exc)

        threading.Thread(target=resolve, name="nbray-client-future", daemon=True).start()
        return fut

    def object_size(self, object_id: bytes) -> int:
        return int(self.object_info(object_id).size)

    def object_info(self, object_id: bytes) -> client_pb2.ClientObjectInfoReply:
        """State, size and location of an object, as its owner (the session) sees it."""
        return self._call("ObjectInfo", client_pb2.ClientObjectInfoRequest(object_id=object_id))

    # ---- output -------------------------------------------------------------------------------------

    def flush_logs(self, timeout_s: float = 2.0) -> None:
        """Wait until worker output written so far has reached this client."""
        try:
            self._wait(self._send("FlushLogs", client_pb2.ClientFlushRequest(timeout_ms=int(timeout_s * 1000))),
                       timeout_s + 5)
        except Exception as exc:
            logger.debug("flush_logs: %s", exc)

    def flush_events(self) -> None:
        pass
