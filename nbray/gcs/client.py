"""Client side of the GCS: typed calls and channel subscriptions.

Used by raylets, drivers and workers. One connection per process; the GCS
also sends requests back over it (health checks, lease requests for
actors) and publishes subscribed channels on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from nbray.common.config import Config
from nbray.protocol import gcs_pb2, method, service_methods
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop, Future
from nbray.rpc.handshake import connect

logger = logging.getLogger(__name__)

_METHODS = {m.name: m for m in service_methods("GcsService")}
_PUBLISH = method("SubscriberService.Publish")

PubHandler = Callable[[gcs_pb2.PubMessage], None]


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
    ) -> None:
        self.loop = loop
        self.address = address
        self.config = config
        self._subs: dict[tuple[int, bytes], list[PubHandler]] = {}
        dispatcher.register(_PUBLISH, self._on_publish)
        deadline = time.monotonic() + (config.gcs_connect_retry_ms / 1000 if retry_s is None else retry_s)
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
                if time.monotonic() > deadline or "refused" not in str(exc):
                    raise
                time.sleep(0.02)

    # ---- calls ---------------------------------------------------------------------

    def call(self, name: str, request: Message | None = None, timeout_s: float | None = None) -> Any:
        """Blocking call (not from the loop thread)."""
        m = _METHODS[name]
        req = request if request is not None else m.request_cls()
        return self.conn.call_sync(m, req, timeout_s if timeout_s is not None else self.config.rpc_timeout_ms / 1000)

    def call_async(self, name: str, request: Message | None = None,
                   callback: Callable[[Any, BaseException | None], None] | None = None,
                   timeout_s: float | None = None) -> Future:
        m = _METHODS[name]
        req = request if request is not None else m.request_cls()
        return self.conn.call(m, req, callback=callback, timeout_s=timeout_s)

    def send(self, name: str, request: Message) -> None:
        """One-way message."""
        self.conn.send_oneway(_METHODS[name], request)

    def close(self) -> None:
        self.conn.close("client shutting down")

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
