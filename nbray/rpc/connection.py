"""An established, authenticated connection carrying framed messages.

Frame layout (little endian)::

    u32 body_len | u32 trailer_len | u16 method_id | u16 kind | u32 request_id
    body (protobuf) | trailer (raw bytes)

Both ends may send requests. Writes from the loop thread are corked and
flushed once per loop iteration (so a burst of task submissions leaves in
one system call); writes from other threads go straight to the socket.
"""

from __future__ import annotations

import errno
import itertools
import logging
import mmap
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError, Message

from nbray.common.config import get_config
from nbray.exceptions import ConnectionLostError, RpcError
from nbray.protocol import METHODS, Method, common_pb2
from nbray.rpc.eventloop import EventLoop, Future
from nbray.rpc.framing import HEADER as HEADER  # re-exported, as the names below
from nbray.rpc.framing import HEADER_SIZE as HEADER_SIZE
from nbray.rpc.framing import KIND_ERROR as KIND_ERROR
from nbray.rpc.framing import KIND_ONEWAY as KIND_ONEWAY
from nbray.rpc.framing import KIND_REPLY as KIND_REPLY
from nbray.rpc.framing import KIND_REQUEST as KIND_REQUEST
from nbray.rpc.large_frame import LargeFrame

if TYPE_CHECKING:
    from nbray.rpc.fault_injection import FaultInjector

logger = logging.getLogger(__name__)

READ_BUFFER_BYTES = 1 << 20
MAX_IOV = 512
_EVENT_READ = 1
_EVENT_WRITE = 2

# handler(conn, request, request_id) -> reply message, or None when the
# handler replies later with conn.reply() (or the call is one-way).
Handler = Callable[["Connection", Any, int], Message | None]


class Dispatcher:
    """Maps method ids to handlers for the services a process serves."""

    def __init__(self) -> None:
        self._handlers: list[Handler | None] = [None] * len(METHODS)

    def register(self, method: Method, handler: Handler) -> None:
        self._handlers[method.id] = handler

    def register_service(self, service: str, obj: Any, prefix: str = "handle_",
                         wrap: Callable[[str, Handler], Handler] | None = None) -> None:
        """Register every ``obj.handle_<MethodName>`` of a service; ``wrap(method name,
        handler)``, when given, replaces each handler (handler timing)."""
        for m in METHODS:
            if m.service == service:
                fn = getattr(obj, prefix + m.name, None)
                if fn is not None:
                    self._handlers[m.id] = fn if wrap is None else wrap(m.name, fn)

    def get(self, method_id: int) -> Handler | None:
        if 0 <= method_id < len(self._handlers):
            return self._handlers[method_id]
        return None


class _PendingCall:
    __slots__ = ("future", "method", "trailer_into", "callback")

    def __init__(self, future: Future, method: Method, trailer_into: Any,
                 callback: Callable[[Any, BaseException | None], None] | None) -> None:
        self.future = future
        self.method = method
        self.trailer_into = trailer_into
        self.callback = callback


class Connection:
    """One peer. Thread-safe for sending; reading happens on the loop thread."""

    # Whether a frame sent from another thread while the loop thread is
    # awake joins the loop's next flush instead of being written at once.
    # Over TLS that turns a burst of calls into a few records and sends
    # rather than one encryption and one send each (each a handover of the
    # GIL to the loop thread and back); a plain write costs one system call
    # either way, so plain connections write at once.
    defer_writes_to_awake_loop = False

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        dispatcher: Dispatcher,
        *,
        name: str = "",
        peer_role: str = "",
        max_frame_bytes: int = 512 << 20,
        max_trailer_bytes: int = 256 << 20,
        initial_data: bytes = b"",
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.dispatcher = dispatcher
        self.name = name
        self.peer_role = peer_role
        self.max_frame_bytes = max_frame_bytes
        self.max_trailer_bytes = max_trailer_bytes
        # Free-form slot owners use to attach their per-peer state.
        self.context: Any = None
        # Testing only: None (one check per sent request) unless the
        # process config asks for injected RPC faults.
        self._faults = _fault_injector()
        # Frames held back by injected delays, in order: a delay holds its
        # frame and every later one of this connection, as TCP keeps order.
        self._held: list[tuple[float, bytes, bytes, Any]] = []
        self._held_lock = threading.Lock()
        self.closed = False
        self.close_reason = ""
        self.current_trailer: memoryview | None = None
        self._on_close: list[Callable[[Connection], None]] = []
        self._pending: dict[int, _PendingCall] = {}
        self._next_id = itertools.count(1)
        # write side
        self._wlock = threading.Lock()
        self._wbuf: list[Any] = []
        self._markers = 0  # _OnSent entries in _wbuf
        self._write_interest = False
        self._flush_scheduled = False
        self._flush_posted = False
        # read side
        # An anonymous mapping, not a bytearray: its pages cost memory only
        # once bytes land in them, so a thousand quiet connections (a GCS
        # with many nodes, idle actors) hold kilobytes each, not a MiB.
        self._buf: bytearray | mmap.mmap = mmap.mmap(-1, READ_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._lo = 0
        self._hi = 0
        self._large: LargeFrame | None = None
        if initial_data:
            self._buf[: len(initial_data)] = initial_data
            self._hi = len(initial_data)
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Begin reading; call on the loop thread or before the loop runs."""
        if self.loop.in_loop_thread() or not self.loop.is_running():
            self._register()
        else:
            self.loop.post(self._register)

    def _register(self) -> None:
        if self.closed:
            return
        self.loop.set_events(self.sock, _EVENT_READ | (_EVENT_WRITE if self._write_interest else 0),
                             self._on_events)
        if self._hi > self._lo:
            self._process_buffer()

    def detach(self) -> tuple[socket.socket, bytes]:
        """Stop serving this socket (on the loop thread) and return it with
        the bytes received but not yet dispatched, so another process can
        take the connection over. Pending calls fail; close callbacks run."""
        unread = bytes(self._buf[self._lo : self._hi])
        self._lo = self._hi = 0
        sock = self.sock
        self.loop.remove(sock)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # closed below, never used
        self._close_now("handed over")
        return sock, unread

    def add_close_callback(self, cb: Callable[[Connection], None]) -> None:
        if self.closed:
            cb(self)
        else:
            self._on_close.append(cb)

    def close(self, reason: str = "closed") -> None:
        """Close from any thread; pending calls fail with ConnectionLostError."""
        if self.loop.in_loop_thread() or not self.loop.is_running():
            self._close_now(reason)
        else:
            self.loop.post(self._close_now, reason)

    def _close_now(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.loop.remove(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        # Whoever still holds this connection need not hold its read buffer.
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._lo = self._hi = 0
        self._large = None
        pending, self._pending = self._pending, {}
        error = ConnectionLostError(f"connection to {self.name or 'peer'} lost: {reason}")
        for call in pending.values():
            self._complete(call, None, error)
        callbacks, self._on_close = self._on_close, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                logger.exception("close callback failed")

    # ---- sending ---------------------------------------------------------------------

    def call(
        self,
        method: Method,
        request: Message | bytes,
        *,
        callback: Callable[[Any, BaseException | None], None] | None = None,
        timeout_s: float | None = None,
        trailer: Any = None,
        trailer_into: Any = None,
    ) -> Future:
        """Send a request; the returned future resolves to the reply message.

        ``callback(reply, error)`` runs on the loop thread when given.
        `request` may be given already serialized, as bytes.
        ``trailer_into`` is a writable buffer the reply's trailer is read into,
        or a function called with the trailer's size that returns one.
        """
        future = Future()
        rid = next(self._next_id) & 0xFFFFFFFF
        pending = _PendingCall(future, method, trailer_into, callback)
        if self.closed:
            self._complete(pending, None, ConnectionLostError(
                f"connection to {self.name or 'peer'} is closed: {self.close_reason}"))
            return future
        if self._faults is not None and self._faults.active(method.id):
            self._call_with_faults(rid, pending, request, trailer, timeout_s)
            return future
        self._pending[rid] = pending
        body = request if isinstance(request, bytes) else request.SerializeToString()
        header = HEADER.pack(len(body), _trailer_len(trailer), method.id, KIND_REQUEST, rid)
        if self._faults is not None:
            self._send_delayed(0.0, header, body, trailer)
        else:
            self._send(header, body, trailer)
        if timeout_s is not None:
            self.loop.call_later_threadsafe(timeout_s, self._expire, rid, timeout_s)
        return future

    def _call_with_faults(self, rid: int, pending: _PendingCall, request: Message | bytes, trailer: Any,
                          timeout_s: float | None) -> None:
        """``call`` under an injected fault (testing only; see fault_injection)."""
        from nbray.rpc import fault_injection

        assert self._faults is not None
        method = pending.method
        fault = self._faults.decide(method.id)
        peer = self.name or "peer"
        if fault.drop_request:
            error = fault_injection.InjectedRpcFailure(
                f"{method.full_name} to {peer}: the request was dropped (injected fault)")
            # Fail on the loop thread, after call() returned, as a real loss would.
            self.loop.call_later_threadsafe(fault.delay_s, self._complete, pending, None, error)
            return
        if fault.drop_reply:
            # The handler runs; its reply completes a stand-in call and is
            # thrown away, and the caller hears of a lost connection.
            error = fault_injection.InjectedRpcFailure(
                f"{method.full_name} to {peer}: the reply was dropped (injected fault)")
            user = pending

            def discard(reply: Any, exc: BaseException | None) -> None:
                self._complete(user, None, exc if exc is not None else error)

            pending = _PendingCall(Future(), method, pending.trailer_into, discard)
        self._pending[rid] = pending
        body = request if isinstance(request, bytes) else request.SerializeToString()
        header = HEADER.pack(len(body), _trailer_len(trailer), method.id, KIND_REQUEST, rid)
        self._send_delayed(fault.delay_s, header, body, trailer)
        if timeout_s is not None:
            self.loop.call_later_threadsafe(timeout_s, self._expire, rid, timeout_s)

    def _send_delayed(self, delay_s: float, header: bytes, body: bytes, trailer: Any) -> None:
        """Send after `delay_s` and after every frame held before it (testing only)."""
        with self._held_lock:
            now = time.monotonic()
            if not self._held and delay_s <= 0:
                self._send(header, body, trailer)
                return
            due = max(now + delay_s, self._held[-1][0] if self._held else now)
            self._held.append((due, header, body, trailer))
        self.loop.call_later_threadsafe(max(0.0, due - now), self._release_held)

    def _release_held(self) -> None:
        with self._held_lock:
            now = time.monotonic()
            while self._held and self._held[0][0] <= now:
                _, header, body, trailer = self._held.pop(0)
                self._send(header, body, trailer)

    def call_sync(self, method: Method, request: Message, timeout_s: float | None = None) -> Any:
        """Send a request and wait for the reply (never from the loop thread)."""
        if self.loop.in_loop_thread():
            raise RuntimeError(f"call_sync({method.full_name}) on the event loop thread would deadlock")
        future = self.call(method, request)
        if not future.wait(timeout_s):
            self._pending.pop(_find_rid(self._pending, future), None)
            raise TimeoutError(f"{method.full_name} to {self.name or 'peer'} got no reply within {timeout_s} s")
        return future.result()

    def send_oneway(self, method: Method, request: Message | bytes, trailer: Any = None) -> None:
        """Send without waiting for a reply; ``request`` may be a message
        already serialized (a publisher sends one body to many peers)."""
        body = request if isinstance(request, bytes) else request.SerializeToString()
        header = HEADER.pack(len(body), _trailer_len(trailer), method.id, KIND_ONEWAY, 0)
        if self._faults is not None and self._faults.active(method.id):
            fault = self._faults.decide(method.id, oneway=True)
            if fault.drop_request:
                return
            self._send_delayed(fault.delay_s, header, body, trailer)
            return
        if self._faults is not None:
            self._send_delayed(0.0, header, body, trailer)
            return
        self._send(header, body, trailer)

    def reply(self, request_id: int, method: Method | int, reply: Message, trailer: Any = None,
              flush: bool = True, on_sent: Callable[[], None] | None = None) -> None:
        """Send a reply; with flush=False (another thread than the loop's)
        the frame waits for the next flush() or send, to batch replies.

        ``on_sent`` runs on the loop thread once the socket has taken the
        whole frame (so a trailer borrowed from shared memory may be
        released); it never runs if the connection closes first.
        """
        mid = method if isinstance(method, int) else method.id
        body = reply.SerializeToString()
        header = HEADER.pack(len(body), _trailer_len(trailer), mid, KIND_REPLY, request_id)
        if flush:
            self._send(header, body, trailer, on_sent)
            return
        with self._wlock:
            if self.closed:
                return
            self._wbuf.append(header)
            self._wbuf.append(body)
            if trailer is not None:
                self._wbuf.append(trailer)
            if on_sent is not None:
                self._wbuf.append(_OnSent(on_sent))
                self._markers += 1

    def reply_error(self, request_id: int, method_id: int, code: str, message: str) -> None:
        body = common_pb2.RpcError(code=code, message=message).SerializeToString()
        self._send(HEADER.pack(len(body), 0, method_id, KIND_ERROR, request_id), body, None)

    def _send(self, header: bytes, body: bytes, trailer: Any, on_sent: Callable[[], None] | None = None) -> None:
        with self._wlock:
            if self.closed:
                return
            wbuf = self._wbuf
            wbuf.append(header)
            wbuf.append(body)
            if trailer is not None:
                wbuf.append(trailer)
            if on_sent is not None:
                wbuf.append(_OnSent(on_sent))
                self._markers += 1
            if self._write_interest:
                return  # the loop writes when the socket drains
            if self.loop.in_loop_thread():
                # Cork: flush once at the end of this loop iteration.
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.loop.add_end_of_iteration_hook(self._flush_corked)
                return
            if self.defer_writes_to_awake_loop and self.loop.is_awake():
                # The loop flushes before it sleeps again.
                if not self._flush_posted:
                    self._flush_posted = True
                    self.loop.post(self._cork_posted)
                return
            # Another thread: write now, with anything held back before.
            self._wbuf = []
            self._write_now(wbuf)

    def _cork_posted(self) -> None:
        """Frames queued by other threads join this iteration's flush."""
        with self._wlock:
            self._flush_posted = False
            if self._flush_scheduled or self.closed or not self._wbuf:
                return
            self._flush_scheduled = True
        self.loop.add_end_of_iteration_hook(self._flush_corked)

    def flush(self) -> None:
        with self._wlock:
            if self._wbuf and not self._write_interest:
                parts, self._wbuf = self._wbuf, []
                self._write_now(parts)

    def _flush_corked(self) -> None:
        with self._wlock:
            self._flush_scheduled = False
            if self._write_interest or not self._wbuf or self.closed:
                return
            parts, self._wbuf = self._wbuf, []
            self._write_now(parts)

    def _write_now(self, parts: list[Any]) -> None:
        """Write what the socket takes; queue the rest. Caller holds _wlock."""
        sock = self.sock
        while parts:
            if self._markers:
                head = parts[0]
                if type(head) is _OnSent:
                    # Everything before the marker is in the socket.
                    parts = parts[1:]
                    self._markers -= 1
                    self.loop.post(head.callback)
                    continue
                batch = []
                for p in parts[:MAX_IOV]:
                    if type(p) is _OnSent:
                        break
                    batch.append(p)
            else:
                batch = parts[:MAX_IOV]
            try:
                sent = sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._wbuf = []
                self._markers = 0
                self.close(f"send failed: {exc}")
                return
            total = 0
            for p in batch:
                total += len(p) if not isinstance(p, memoryview) else p.nbytes
            if sent == total:
                parts = parts[len(batch):]
                continue
            parts = _advance(parts, sent)
            break
        if parts:
            self._wbuf = parts
            if not self._write_interest:
                self._write_interest = True
                if self.loop.in_loop_thread():
                    self._update_events()
                else:
                    self.loop.post(self._update_events)

    def _update_events(self) -> None:
        if self.closed:
            return
        events = _EVENT_READ | (_EVENT_WRITE if self._write_interest else 0)
        self.loop.set_events(self.sock, events, self._on_events)

    def _on_writable(self) -> None:
        with self._wlock:
            parts, self._wbuf = self._wbuf, []
            self._write_interest = False
            if parts:
                self._write_now(parts)
            if not self._write_interest:
                self._update_events()

    # ---- receiving --------------------------------------------------------------------

    def _on_events(self, mask: int) -> None:
        if mask & _EVENT_WRITE:
            self._on_writable()
        if mask & _EVENT_READ and not self.closed:
            self._on_readable()

    def _on_readable(self) -> None:
        large = self._large
        try:
            if large is not None:
                n = self._receive_large(large)
            else:
                if self._hi == len(self._buf):
                    self._compact()
                n = self.sock.recv_into(self._view[self._hi:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close_now(f"receive failed: {exc}")
            return
        if n == 0:
            self._close_now("peer closed the connection")
            return
        if large is not None:
            self._large = None
            self._finish_large(large)
            return
        self._hi += n
        self._process_buffer()

    def _receive_large(self, large: LargeFrame) -> int:
        """Drain what has arrived into a big frame (it needs many reads):
        the count of the last read, 0 at the end of the stream; returns only
        once the frame is complete or the peer has closed, and raises
        BlockingIOError when the socket runs dry first."""
        recv_into = self.sock.recv_into
        while True:
            # The view is a temporary: a growing buffer cannot be resized
            # while one is alive.
            n = recv_into(large.receive_view())
            if n == 0:
                return 0
            large.filled += n
            if large.filled == large.size:
                return n

    def _compact(self) -> None:
        lo, hi = self._lo, self._hi
        if lo:
            self._buf[: hi - lo] = self._buf[lo:hi]
            self._hi = hi - lo
            self._lo = 0

    def _process_buffer(self) -> None:
        buf = self._buf
        view = self._view
        unpack = HEADER.unpack_from
        while not self.closed:
            lo = self._lo
            avail = self._hi - lo
            if avail < HEADER_SIZE:
                break
            body_len, trailer_len, mid, kind, rid = unpack(buf, lo)
            if body_len > self.max_frame_bytes or trailer_len > self.max_trailer_bytes:
                self._close_now(
                    f"frame of {body_len} + {trailer_len} bytes exceeds the limit "
                    f"({self.max_frame_bytes} + {self.max_trailer_bytes})"
                )
                return
            frame_len = HEADER_SIZE + body_len + trailer_len
            if avail >= frame_len:
                b0 = lo + HEADER_SIZE
                self._lo = lo + frame_len
                body = view[b0 : b0 + body_len]
                trailer = view[b0 + body_len : b0 + body_len + trailer_len] if trailer_len else None
                self._dispatch(mid, kind, rid, body, trailer)
                continue
            if frame_len > len(buf) - (1 << 16):
                self._start_large(mid, kind, rid, body_len, trailer_len)
                return
            if lo + frame_len > len(buf):
                self._compact()
            break
        if self._lo == self._hi:
            self._lo = self._hi = 0

    def _start_large(self, mid: int, kind: int, rid: int, body_len: int, trailer_len: int) -> None:
        """A frame bigger than the read buffer: receive it into its own buffer."""
        lo = self._lo + HEADER_SIZE
        have = self._hi - lo
        target: Any = None
        if kind == KIND_REPLY and trailer_len:
            call = self._pending.get(rid)
            if call is not None and call.trailer_into is not None and body_len <= have:
                target = call.trailer_into
                if callable(target):
                    target = target(trailer_len)
        if target is not None and _nbytes(target) == trailer_len:
            # Read the trailer straight into the caller's buffer.
            body = bytes(self._buf[lo : lo + body_len])
            tv = memoryview(target).cast("B")
            got = have - body_len
            tv[:got] = self._view[lo + body_len : lo + body_len + got]
            self._lo = self._hi = 0
            large = LargeFrame(mid, kind, rid, body_len, tv, trailer_len, direct_body=body)
            large.filled = got
        else:
            total = body_len + trailer_len
            large = LargeFrame(mid, kind, rid, body_len, None, total)
            large.append(self._view[lo : lo + have])
            self._lo = self._hi = 0
        if large.filled == large.size:
            self._finish_large(large)
        else:
            self._large = large

    def _finish_large(self, large: LargeFrame) -> None:
        if large.direct_body is not None:
            self._dispatch(large.mid, large.kind, large.rid, memoryview(large.direct_body), None,
                           trailer_done=True)
        else:
            v = large.completed_view()
            trailer = v[large.body_len:] if large.size > large.body_len else None
            self._dispatch(large.mid, large.kind, large.rid, v[: large.body_len], trailer)
        if self._hi > self._lo and not self.closed:
            self._process_buffer()

    def _dispatch(self, mid: int, kind: int, rid: int, body: memoryview, trailer: memoryview | None,
                  trailer_done: bool = False) -> None:
        if kind in (KIND_REPLY, KIND_ERROR):
            call = self._pending.pop(rid, None)
            if call is None:
                return  # timed out or cancelled
            if kind == KIND_ERROR:
                err = common_pb2.RpcError()
                err.ParseFromString(body)
                self._complete(call, None, RpcError(err.code or "error", err.message))
                return
            reply = call.method.reply_cls()
            try:
                reply.ParseFromString(body)
            except DecodeError as exc:
                self._complete(call, None, RpcError("bad_reply", str(exc)))
                return
            if trailer is not None and not trailer_done:
                into = call.trailer_into
                if into is not None:
                    if callable(into):
                        into = into(trailer.nbytes)
                    memoryview(into).cast("B")[: trailer.nbytes] = trailer
                else:
                    logger.warning("dropped a %d-byte trailer of %s: the call gave no buffer",
                                   trailer.nbytes, call.method.full_name)
            self._complete(call, reply, None)
            return
        if mid >= len(METHODS):
            if kind == KIND_REQUEST:
                self.reply_error(rid, mid, "unknown_method", f"method id {mid} is not known")
            return
        method = METHODS[mid]
        handler = self.dispatcher.get(mid)
        if handler is None:
            if kind == KIND_REQUEST:
                self.reply_error(rid, mid, "unimplemented", f"{method.full_name} is not served here")
            return
        request = method.request_cls()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            if kind == KIND_REQUEST:
                self.reply_error(rid, mid, "bad_request", f"cannot parse {method.full_name}: {exc}")
            return
        self.current_trailer = trailer
        try:
            result = handler(self, request, rid)
        except RpcError as exc:
            if kind == KIND_REQUEST:
                self.reply_error(rid, mid, exc.code, str(exc))
            return
        except Exception as exc:
            logger.exception("handler for %s failed", method.full_name)
            if kind == KIND_REQUEST:
                self.reply_error(rid, mid, "internal", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.current_trailer = None
        if result is not None and kind == KIND_REQUEST:
            self.reply(rid, mid, result)

    def _complete(self, call: _PendingCall, reply: Any, error: BaseException | None) -> None:
        if call.callback is not None:
            try:
                call.callback(reply, error)
            except Exception:
                logger.exception("reply callback for %s failed", call.method.full_name)
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(reply)

    def _expire(self, rid: int, timeout_s: float) -> None:
        call = self._pending.pop(rid, None)
        if call is not None:
            self._complete(call, None, TimeoutError(
                f"{call.method.full_name} to {self.name or 'peer'} got no reply within {timeout_s} s"))

    def __repr__(self) -> str:
        return f"Connection({self.name}{', closed' if self.closed else ''})"


def _fault_injector() -> FaultInjector | None:
    """This process's fault injector, or None (the default: the module is not even imported)."""
    config = get_config()
    if not config.testing_rpc_failure and not config.testing_rpc_delay_ms:
        return None
    from nbray.rpc import fault_injection

    return fault_injection.injector_for(config)


def _trailer_len(trailer: Any) -> int:
    if trailer is None:
        return 0
    return _nbytes(trailer)


class _OnSent:
    """A marker in the write queue: run `callback` once the bytes before it are sent."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


def _nbytes(buf: Any) -> int:
    if isinstance(buf, memoryview):
        return buf.nbytes
    return len(buf)


def _advance(parts: list[Any], sent: int) -> list[Any]:
    """Drop the first `sent` bytes from a list of buffers."""
    i = 0
    while i < len(parts):
        size = _nbytes(parts[i])
        if sent < size:
            break
        sent -= size
        i += 1
    rest = parts[i:]
    if sent and rest:
        rest[0] = memoryview(rest[0]).cast("B")[sent:]
    return rest


def _find_rid(pending: dict[int, _PendingCall], future: Future) -> int:
    for rid, call in pending.items():
        if call.future is future:
            return rid
    return -1


def is_connection_refused(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
