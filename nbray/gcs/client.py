"""Client side of the GCS: typed calls and channel subscriptions.

Used by raylets, drivers and workers. One connection per process; the GCS
also sends requests back over it (health checks, lease requests for
actors) and publishes subscribed channels on it.

With ``reconnect=True`` the client outlives its GCS: when the connection
drops it reconnects in the background (a GCS restarted on the same
address), subscribes again to every channel, runs the owner's
``on_reconnected`` hooks (a raylet registers its node again), and then
sends what was asked while the GCS was away. Calls wait for the GCS up to
their own timeout; once the outage lasts ``gcs_reconnect_timeout_ms`` the
client gives up: ``on_gave_up`` hooks run and every call fails with
``RpcError("gcs_unavailable")``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from nbray.common.config import Config
from nbray.exceptions import AuthenticationError, ConnectionLostError, GetTimeoutError, RpcError, VersionMismatchError
from nbray.gcs.recovery import backoff_delay_s
from nbray.protocol import Method, gcs_pb2, method, service_methods
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop, Future
from nbray.rpc.handshake import connect, connect_socket, make_connection

logger = logging.getLogger(__name__)

_METHODS = {m.name: m for m in service_methods("GcsService")}
_PUBLISH = method("SubscriberService.Publish")
# Requests that may be sent again when the connection dropped with them in
# flight: reads, writes of the same value, changes that are no-ops the
# second time (MarkJobFinished, KillActor, ReportActorOutOfScope,
# RemovePlacementGroup), creations the GCS recognises by their id
# (RegisterActor, CreatePlacementGroup), and KV writes, which carry a
# request id the GCS answers from memory (_stamp_request_id). AddJob is
# left out: each call makes a new job. tests/integration/test_gcs_idempotency.py
# calls each of these twice.
_RESENDABLE = frozenset({
    "GetAllNodeInfo", "GetClusterStatus", "GetAllJobInfo", "GetActorInfo", "GetNamedActor",
    "ListNamedActors", "GetAllActorInfo", "KVGet", "KVKeys", "KVPut", "KVDel", "GetTaskEvents", "Subscribe",
    "GetPlacementGroup", "GetNamedPlacementGroup", "GetAllPlacementGroup", "WaitPlacementGroupReady",
    "ReportActorOutOfScope", "MarkJobFinished", "KillActor", "RegisterActor", "CreatePlacementGroup",
    "RemovePlacementGroup",
})
# Requests whose resends are recognised by a request id the client sets.
_NEEDS_REQUEST_ID = frozenset({"KVPut", "KVDel"})
_WAIT_SLICE_S = 0.05
_REQUEST_ID_BYTES = 16


def _stamp_request_id(request: Any) -> None:
    """Give a write a random id (once: a resend keeps it) so the GCS can
    answer a resend as it answered the first attempt."""
    if not request.request_id:
        request.request_id = os.urandom(_REQUEST_ID_BYTES)

PubHandler = Callable[[gcs_pb2.PubMessage], None]


class _Queued:
    """A call made while the GCS was away, sent once it is back."""

    __slots__ = ("method", "request", "future", "callback", "deadline")

    def __init__(self, m: Method, request: Message, callback: Callable[[Any, BaseException | None], None] | None,
                 deadline: float | None) -> None:
        self.method = m
        self.request = request
        self.future = Future()
        self.callback = callback
        self.deadline = deadline

    def finish(self, reply: Any, error: BaseException | None) -> None:
        if self.future.done():
            return
        if self.callback is not None:
            try:
                self.callback(reply, error)
            except Exception:
                logger.exception("reply callback for %s failed", self.method.full_name)
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(reply)


class GcsClient:
    def __init__(
        self,
        loop: EventLoop,
        address: str,
        token: bytes,
        dispatcher: Dispatcher,
        config: Config,
        *,
        role: str,
        retry_s: float | None = None,
        reconnect: bool = False,
    ) -> None:
        """Connects before returning; ConnectionError when the GCS cannot be
        reached within `retry_s` (default: ``gcs_connect_retry_ms``; a worker
        that reconnects waits as long as an outage may last)."""
        self.loop = loop
        self.address = address
        self.config = config
        self.role = role
        self.reconnect = reconnect
        self._token = token
        self._dispatcher = dispatcher
        self._subs: dict[tuple[int, bytes], list[PubHandler]] = {}
        # Hooks on the loop thread: after a reconnection (before queued calls
        # go out), and once the outage outlasted gcs_reconnect_timeout_ms.
        self.on_reconnected: list[Callable[[], None]] = []
        self.on_gave_up: list[Callable[[str], None]] = []
        self.gave_up_reason = ""
        self.outage_started: float | None = None  # time.monotonic() when the connection dropped
        self.reconnections = 0
        self._closing = False
        self._stop = threading.Event()
        self._queue: collections.deque[_Queued | tuple[Method, Message]] = collections.deque()
        self._dropped_messages = 0
        dispatcher.register(_PUBLISH, self._on_publish)
        if retry_s is None:
            retry_s = config.gcs_connect_retry_ms / 1000
            if reconnect and role == "worker":
                retry_s = max(retry_s, config.gcs_reconnect_timeout_ms / 1000)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                self.conn: Connection = connect(
                    loop, address, token, dispatcher, role=role,
                    timeout_s=config.connect_timeout_ms / 1000, name=f"gcs@{address}",
                    max_frame_bytes=config.max_frame_bytes,
                )
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"could not connect to the GCS at {address}: connection refused") from None
                time.sleep(0.02)
            except ConnectionError as exc:
                if time.monotonic() > deadline or ("refused" not in str(exc) and not reconnect):
                    raise
                time.sleep(0.02)
        self.conn.add_close_callback(self._on_conn_closed)

    @property
    def connected(self) -> bool:
        return not self.conn.closed and self.outage_started is None

    # ---- calls ---------------------------------------------------------------------

    def call(self, name: str, request: Message | None = None, timeout_s: float | None = None) -> Any:
        """Blocking call (not from the loop thread).

        While the GCS is away the call waits for it: GetTimeoutError when
        `timeout_s` passes first, RpcError("gcs_unavailable") once the client
        gave up on the GCS or when the connection dropped with a request in
        flight that must not be sent twice.
        """
        m = _METHODS[name]
        req = request if request is not None else m.request_cls()
        if name in _NEEDS_REQUEST_ID:
            _stamp_request_id(req)
        timeout = timeout_s if timeout_s is not None else self.config.rpc_timeout_ms / 1000
        if not self.reconnect:
            return self.conn.call_sync(m, req, timeout)
        deadline = time.monotonic() + timeout
        while True:
            conn = self._wait_connected(name, deadline)
            try:
                return conn.call_sync(m, req, max(0.001, deadline - time.monotonic()))
            except ConnectionLostError as exc:
                if self._closing:
                    raise
                if name not in _RESENDABLE:
                    raise RpcError("gcs_unavailable", f"the connection to the GCS at {self.address} dropped "
                                   f"while {name} was in flight; it may or may not have taken effect") from exc
                # a read: ask the GCS again once it is back

    def _wait_connected(self, name: str, deadline: float) -> Connection:
        while True:
            if self.gave_up_reason:
                raise RpcError("gcs_unavailable", f"{name} failed: {self.gave_up_reason}")
            if self._closing:
                raise ConnectionLostError(f"{name} failed: the GCS client is closed")
            conn = self.conn
            if not conn.closed and self.outage_started is None:
                return conn
            left = deadline - time.monotonic()
            if left <= 0:
                since = self.outage_started
                away = f" (away for {time.monotonic() - since:.1f} s)" if since is not None else ""
                raise GetTimeoutError(f"{name} timed out waiting for the GCS at {self.address} to come "
                                      f"back{away}")
            self._stop.wait(min(left, _WAIT_SLICE_S))

    def call_async(self, name: str, request: Message | None = None,
                   callback: Callable[[Any, BaseException | None], None] | None = None,
                   timeout_s: float | None = None) -> Future:
        m = _METHODS[name]
        req = request if request is not None else m.request_cls()
        if name in _NEEDS_REQUEST_ID:
            _stamp_request_id(req)
        if not self.reconnect or self.connected or self.gave_up_reason or self._closing:
            return self.conn.call(m, req, callback=callback, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        queued = _Queued(m, req, callback, deadline)
        self.loop.post(self._enqueue, queued)
        if timeout_s is not None:
            self.loop.call_later_threadsafe(timeout_s, self._expire, queued, timeout_s)
        return queued.future

    def send(self, name: str, request: Message) -> None:
        """One-way message; kept (up to a bound) while the GCS is away."""
        m = _METHODS[name]
        if not self.reconnect or self.connected or self.gave_up_reason or self._closing:
            self.conn.send_oneway(m, request)
        else:
            self.loop.post(self._enqueue, (m, request))

    def close(self) -> None:
        self._closing = True
        self._stop.set()
        self.conn.close("client shutting down")

    # ---- outage and reconnection (loop thread) ----------------------------------------------

    def _enqueue(self, item: _Queued | tuple[Method, Message]) -> None:
        if self.connected or self.gave_up_reason or self._closing:
            self._send_queued(item)
            return
        if len(self._queue) >= self.config.gcs_outage_max_queued_messages:
            oldest = self._queue.popleft()
            self._dropped_messages += 1
            if isinstance(oldest, _Queued):
                oldest.finish(None, RpcError("gcs_unavailable", f"{oldest.method.name} was dropped: more than "
                             f"{self.config.gcs_outage_max_queued_messages} requests waited for the GCS"))
        self._queue.append(item)

    def _send_queued(self, item: _Queued | tuple[Method, Message]) -> None:
        if not isinstance(item, _Queued):
            self.conn.send_oneway(item[0], item[1])
            return
        if item.future.done():
            return
        if self.gave_up_reason:
            item.finish(None, RpcError("gcs_unavailable", f"{item.method.name} failed: {self.gave_up_reason}"))
            return
        left = None if item.deadline is None else max(0.001, item.deadline - time.monotonic())
        self.conn.call(item.method, item.request, callback=item.finish, timeout_s=left)

    def _expire(self, item: _Queued, timeout_s: float) -> None:
        if not item.future.done():
            item.finish(None, GetTimeoutError(f"{item.method.name} timed out after {timeout_s} s waiting for "
                                              f"the GCS at {self.address} to come back"))

    def _on_conn_closed(self, conn: Connection) -> None:
        if self._closing or not self.reconnect or conn is not self.conn or self.gave_up_reason:
            return
        self.outage_started = time.monotonic()
        logger.warning("lost the connection to the GCS at %s (%s); reconnecting for up to %.0f s",
                       self.address, conn.close_reason, self.config.gcs_reconnect_timeout_ms / 1000)
        threading.Thread(target=self._reconnect_loop, args=(self.outage_started,),
                         name="gcs-reconnect", daemon=True).start()

    def _reconnect_loop(self, since: float) -> None:
        """Off the loop thread: connecting blocks until the GCS answers."""
        config = self.config
        deadline = since + config.gcs_reconnect_timeout_ms / 1000
        attempt = 0
        last_error = "no attempt made"
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                sock = connect_socket(self.address, self._token, self.role,
                                      min(left, config.connect_timeout_ms / 1000))
            except (AuthenticationError, VersionMismatchError) as exc:
                self.loop.post(self._give_up, f"the GCS at {self.address} came back but refused this "
                                              f"process: {exc}")
                return
            except (ConnectionError, OSError) as exc:
                last_error = str(exc)
                delay = backoff_delay_s(attempt, config.gcs_reconnect_initial_backoff_ms / 1000,
                                        config.gcs_reconnect_max_backoff_ms / 1000)
                attempt += 1
                self._stop.wait(max(0.0, min(delay, deadline - time.monotonic())))
                continue
            self.loop.post(self._on_reconnected_socket, sock)
            return
        if not self._stop.is_set():
            self.loop.post(self._give_up, f"the GCS at {self.address} has been unreachable for "
                                          f"{time.monotonic() - since:.0f} s (gcs_reconnect_timeout_ms = "
                                          f"{config.gcs_reconnect_timeout_ms}); last error: {last_error}")

    def _on_reconnected_socket(self, sock: Any) -> None:
        if self._closing:
            sock.close()
            return
        conn = make_connection(self.loop, sock, self._dispatcher, name=f"gcs@{self.address}",
                               max_frame_bytes=self.config.max_frame_bytes)
        conn.start()
        since = self.outage_started
        self.conn = conn
        self.outage_started = None
        self.reconnections += 1
        logger.warning("reconnected to the GCS at %s after %.2f s", self.address,
                       time.monotonic() - since if since is not None else 0.0)
        conn.add_close_callback(self._on_conn_closed)
        for hook in list(self.on_reconnected):
            try:
                hook()
            except Exception:
                logger.exception("a GCS reconnection hook failed")
        for channel, key in list(self._subs):
            conn.call(_METHODS["Subscribe"], gcs_pb2.SubscribeRequest(channel=channel, key=key))  # type: ignore[arg-type]
        queued, self._queue = self._queue, collections.deque()
        if self._dropped_messages:
            logger.warning("%d messages for the GCS were dropped while it was away", self._dropped_messages)
            self._dropped_messages = 0
        for item in queued:
            self._send_queued(item)

    def _give_up(self, reason: str) -> None:
        if self._closing or self.gave_up_reason:
            return
        self.gave_up_reason = reason
        logger.error("giving up on the GCS: %s", reason)
        queued, self._queue = self._queue, collections.deque()
        for item in queued:
            if isinstance(item, _Queued):
                item.finish(None, RpcError("gcs_unavailable", f"{item.method.name} failed: {reason}"))
        for hook in list(self.on_gave_up):
            try:
                hook(reason)
            except Exception:
                logger.exception("a GCS give-up hook failed")

    # ---- pubsub ----------------------------------------------------------------------

    def subscribe(self, channel: int, key: bytes, handler: PubHandler, wait: bool = False) -> None:
        """Receive messages of `channel` (with `key`, or all when empty)."""
        handlers = self._subs.setdefault((channel, key), [])
        first = not handlers
        handlers.append(handler)
        if first:
            req = gcs_pb2.SubscribeRequest(channel=channel, key=key)  # type: ignore[arg-type]
            if wait:
                self.call("Subscribe", req)
            else:
                self.call_async("Subscribe", req)

    def unsubscribe(self, channel: int, key: bytes, handler: PubHandler | None = None) -> None:
        handlers = self._subs.get((channel, key))
        if not handlers:
            return
        if handler is not None and handler in handlers:
            handlers.remove(handler)
        else:
            handlers.clear()
        if not handlers:
            del self._subs[(channel, key)]
            self.call_async("Subscribe", gcs_pb2.SubscribeRequest(
                channel=channel, key=key, unsubscribe=True))  # type: ignore[arg-type]

    def _on_publish(self, conn: Connection, msg: gcs_pb2.PubMessage, rid: int) -> None:
        for key in (msg.key, b""):
            for handler in list(self._subs.get((msg.channel, key), ())):
                try:
                    handler(msg)
                except Exception:
                    logger.exception("subscriber of channel %s failed", msg.channel)
            if not msg.key:
                break
        return None
