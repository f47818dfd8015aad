"""Cached, authenticated connections to peers, opened off the loop thread.

Processes talk to many peers (owners, leased workers, actors, raylets).
Connecting (and the handshake) blocks, so from the loop thread it runs on
a small helper thread and the caller gets the connection in a callback; a
peer on the same node is reached over its Unix socket.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbray.common.config import Config
from nbray.protocol import common_pb2
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handshake import connect

logger = logging.getLogger(__name__)

ConnectCallback = Callable[[Connection | None, BaseException | None], None]


def address_string(address: common_pb2.Address, local_node_id: bytes) -> str:
    if address.unix_path and address.node_id == local_node_id:
        return "unix:" + address.unix_path
    return f"{address.host}:{address.port}"


class ConnectionPool:
    def __init__(self, loop: EventLoop, token: bytes, dispatcher: Dispatcher, config: Config,
                 *, role: str, local_node_id: bytes = b"") -> None:
        self.loop = loop
        self.token = token
        self.dispatcher = dispatcher
        self.config = config
        self.role = role
        self.local_node_id = local_node_id
        self._conns: dict[str, Connection] = {}
        self._pending: dict[str, list[ConnectCallback]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    def _key_and_address(self, address: common_pb2.Address | str) -> tuple[str, str]:
        if isinstance(address, str):
            return address, address
        target = address_string(address, self.local_node_id)
        return (address.worker_id.hex() or target), target

    def cached(self, address: common_pb2.Address | str) -> Connection | None:
        key, _ = self._key_and_address(address)
        conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        return None

    def get(self, address: common_pb2.Address | str, callback: ConnectCallback) -> None:
        """Deliver a connection to `callback` on the loop thread."""
        key, target = self._key_and_address(address)
        conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            callback(conn, None)
            return
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(callback)
            return
        self._pending[key] = [callback]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nbray-connect")
        self._executor.submit(self._connect_in_thread, key, target)

    def _connect_in_thread(self, key: str, target: str) -> None:
        try:
            conn = self._open(target)
            error = None
        except BaseException as exc:  # delivered to the callbacks
            conn, error = None, exc
        self.loop.post(self._deliver, key, conn, error)

    def _deliver(self, key: str, conn: Connection | None, error: BaseException | None) -> None:
        callbacks = self._pending.pop(key, [])
        if conn is not None:
            if self._closed:
                conn.close("pool closed")
                conn, error = None, ConnectionError("connection pool is closed")
            else:
                self._remember(key, conn)
        for cb in callbacks:
            try:
                cb(conn, error)
            except Exception:
                logger.exception("connect callback failed")

    def get_blocking(self, address: common_pb2.Address | str) -> Connection:
        """Connect from a non-loop thread (raises ConnectionError)."""
        key, target = self._key_and_address(address)
        with self._lock:
            conn = self._conns.get(key)
            if conn is not None and not conn.closed:
                return conn
        conn = self._open(target)
        with self._lock:
            existing = self._conns.get(key)
            if existing is not None and not existing.closed:
                conn.close("duplicate")
                return existing
            self._remember(key, conn)
        return conn

    def _open(self, target: str) -> Connection:
        return connect(self.loop, target, self.token, self.dispatcher, role=self.role,
                       timeout_s=self.config.connect_timeout_ms / 1000, name=target,
                       max_frame_bytes=self.config.max_frame_bytes,
                       max_trailer_bytes=self.config.max_trailer_bytes)

    def _remember(self, key: str, conn: Connection) -> None:
        self._conns[key] = conn
        conn.add_close_callback(functools.partial(self._forget, key))

    def _forget(self, key: str, conn: Connection) -> None:
        if self._conns.get(key) is conn:
            del self._conns[key]

    def adopt(self, key: str, conn: Connection) -> None:
        """Reuse an inbound connection for calls to that peer."""
        existing = self._conns.get(key)
        if existing is None or existing.closed:
            self._remember(key, conn)

    def close(self) -> None:
        self._closed = True
        for conn in list(self._conns.values()):
            conn.close("shutting down")
        self._conns.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def all(self) -> list[Any]:
        return list(self._conns.values())
