"""Channel subscriptions of the GCS (runs in the GCS process).

A subscriber is a connection; it subscribes to (channel, key) pairs, an
empty key meaning every message of the channel. Messages go out as one-way
``SubscriberService.Publish`` calls, corked per loop iteration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from nbray.protocol import gcs_pb2, method
from nbray.rpc.connection import Connection

_PUBLISH = method("SubscriberService.Publish")


class Publisher:
    def __init__(self) -> None:
        self._subs: dict[tuple[int, bytes], set[Connection]] = {}
        # Called with (conn, channel, key) for each new subscription.
        self.on_subscribe: list[Callable[[Connection, int, bytes], None]] = []

    def subscribe(self, conn: Connection, channel: int, key: bytes) -> None:
        subs = self._subs.setdefault((channel, key), set())
        if conn not in subs:
            subs.add(conn)
            conn.add_close_callback(functools.partial(self._drop_on_close, (channel, key)))
            for cb in self.on_subscribe:
                cb(conn, channel, key)

    def unsubscribe(self, conn: Connection, channel: int, key: bytes) -> None:
        self._drop(conn, (channel, key))

    def _drop_on_close(self, channel_key: tuple[int, bytes], conn: Connection) -> None:
        self._drop(conn, channel_key)

    def _drop(self, conn: Connection, channel_key: tuple[int, bytes]) -> None:
        subs = self._subs.get(channel_key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[channel_key]

    def has_subscribers(self, channel: int, key: bytes = b"") -> bool:
        return bool(self._subs.get((channel, b""))) or (bool(key) and bool(self._subs.get((channel, key))))

    def publish(self, msg: gcs_pb2.PubMessage) -> int:
        """Send `msg` to subscribers of its channel and key; returns how many."""
        targets: set[Connection] = set()
        targets |= self._subs.get((msg.channel, b""), set())
        if msg.key:
            targets |= self._subs.get((msg.channel, msg.key), set())
        if not targets:
            return 0
        body = msg.SerializeToString()  # once, however many subscribers
        for conn in targets:
            if not conn.closed:
                conn.send_oneway(_PUBLISH, body)
        return len(targets)

    def send_to(self, conns: Iterable[Connection], msg: gcs_pb2.PubMessage) -> int:
        """Send `msg` to the given subscribers only (say, a snapshot to new
        ones); returns how many it went to."""
        body = msg.SerializeToString()
        sent = 0
        for conn in conns:
            if not conn.closed:
                conn.send_oneway(_PUBLISH, body)
                sent += 1
        return sent
