"""A peer's announced frame size does not decide the memory a receiver
holds: over TLS and in plaintext, a frame bigger than the read buffer takes
memory as its bytes arrive, and a peer that stalls or leaves mid-frame
costs what it sent."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from nbray.protocol import method, raylet_pb2
from nbray.rpc.connection import HEADER, KIND_ONEWAY, Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.large_frame import LARGE_FRAME_UPFRONT_BYTES, LargeFrame, large_frame_capacity
from nbray.rpc.tls_certs import TlsFiles, init_directory
from nbray.rpc.tls_connection import make_connection
from tests.unit.test_tls_connection import socket_pair

pytestmark = pytest.mark.timeout(60)

PULL = method("RayletService.PullChunk")
MB = 1024 * 1024
# Near the limit a connection accepts (512 MiB of body).
ANNOUNCED_BYTES = 500 * MB
SENT_BYTES = 256 * 1024
# Resident memory the receiver may gain while the frame is incomplete: the
# bytes sent, a few huge pages, and room for the interpreter's own churn.
RSS_SLACK_BYTES = 48 * MB


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return init_directory(str(tmp_path_factory.mktemp("certs")), ["localhost", "127.0.0.1"])


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


class Receiver:
    """A connection served by its own loop; `peer` is the raw other end."""

    def __init__(self, sock: socket.socket, peer: socket.socket, dispatcher: Dispatcher) -> None:
        self.loop = EventLoop("large-frame-test")
        self.conn: Connection = make_connection(self.loop, sock, dispatcher, name="receiver")
        self.peer = peer
        self.conn.start()
        self.loop.start_thread()

    def send(self, data: bytes) -> None:
        self.peer.sendall(data)

    def close(self) -> None:
        self.loop.post(self.conn.close)
        self.loop.post(self.loop.stop)
        self.loop.join(10)
        self.loop.close()
        self.peer.close()


@pytest.fixture(params=["plaintext", "tls"])
def receiver(request: pytest.FixtureRequest, certs: TlsFiles) -> Iterator[tuple[Receiver, Dispatcher]]:
    dispatcher = Dispatcher()
    if request.param == "tls":
        server, client = socket_pair(certs)
        client.settimeout(10)
        pair = Receiver(server, client, dispatcher)
    else:
        a, b = socket.socketpair()
        b.settimeout(10)
        pair = Receiver(a, b, dispatcher)
    yield pair, dispatcher
    pair.close()


def received(conn: Connection, nbytes: int) -> Callable[[], bool]:
    """Whether `conn` holds `nbytes` of an incomplete big frame."""
    return lambda: conn._large is not None and conn._large.filled == nbytes


def frame_header(body_len: int, trailer_len: int) -> bytes:
    return HEADER.pack(body_len, trailer_len, PULL.id, KIND_ONEWAY, 0)


def test_an_announced_huge_frame_takes_memory_only_as_its_bytes_arrive_and_a_leaving_peer_frees_it(
        receiver: tuple[Receiver, Dispatcher]) -> None:
    pair, _ = receiver
    conn = pair.conn
    before = resident_bytes()
    pair.send(frame_header(ANNOUNCED_BYTES, 0) + b"\x00" * SENT_BYTES)
    wait_until(received(conn, SENT_BYTES), "the receiver has the bytes sent")
    grown = resident_bytes() - before
    assert grown < RSS_SLACK_BYTES, f"resident memory grew by {grown >> 20} MiB for {SENT_BYTES} bytes received"
    large = conn._large
    assert large is not None and large.capacity <= LARGE_FRAME_UPFRONT_BYTES
    # The peer goes away mid-frame: the connection closes and lets the buffer go.
    pair.peer.close()
    wait_until(lambda: conn.closed, "the connection is closed")
    assert conn.close_reason == "peer closed the connection"
    assert conn._large is None


def test_a_stalled_peer_holds_no_more_than_twice_what_it_sent(receiver: tuple[Receiver, Dispatcher]) -> None:
    pair, _ = receiver
    conn = pair.conn
    pair.send(frame_header(ANNOUNCED_BYTES, 0))
    sent = 0
    for target in (20 * MB, 70 * MB):
        pair.send(b"\x00" * (target - sent))
        sent = target
        wait_until(received(conn, sent), f"{sent} bytes arrived")
        large = conn._large
        assert large is not None and sent <= large.capacity <= 2 * sent
    assert not conn.closed


def test_a_big_frame_in_many_pieces_arrives_intact(receiver: tuple[Receiver, Dispatcher]) -> None:
    pair, dispatcher = receiver
    trailer_bytes = 3 * LARGE_FRAME_UPFRONT_BYTES + 12345  # grows three times
    body = raylet_pb2.PullChunkRequest(offset=7, length=trailer_bytes).SerializeToString()
    payload = os.urandom(trailer_bytes)
    seen: list[tuple[int, int, str | None]] = []

    def pull(conn: Connection, req: raylet_pb2.PullChunkRequest, rid: int) -> None:
        trailer = conn.current_trailer
        seen.append((req.offset, req.length, None if trailer is None else hashlib.sha256(trailer).hexdigest()))

    dispatcher.register(PULL, pull)
    data = frame_header(len(body), trailer_bytes) + body + payload
    piece = 1 << 20
    for start in range(0, len(data), piece):
        pair.send(data[start:start + piece])
    # A small frame after it still parses.
    small = raylet_pb2.PullChunkRequest(offset=1, length=0).SerializeToString()
    pair.send(frame_header(len(small), 0) + small)
    wait_until(lambda: len(seen) == 2, "both frames were dispatched")
    assert seen[0] == (7, trailer_bytes, hashlib.sha256(payload).hexdigest())
    assert seen[1] == (1, 0, None)
    assert pair.conn._large is None and not pair.conn.closed


def test_a_frame_up_to_the_upfront_size_is_allocated_whole() -> None:
    frame = LargeFrame(0, 0, 0, 0, None, LARGE_FRAME_UPFRONT_BYTES)
    assert frame.capacity == LARGE_FRAME_UPFRONT_BYTES
    assert frame.receive_view().nbytes == LARGE_FRAME_UPFRONT_BYTES


def test_a_view_still_held_does_not_stop_the_buffer_growing() -> None:
    size = 2 * LARGE_FRAME_UPFRONT_BYTES
    frame = LargeFrame(0, 0, 0, 0, None, size)
    held = frame.receive_view()
    held[:4] = b"head"
    frame.filled = held.nbytes
    view = frame.receive_view()  # the held view forces a copy instead of mremap
    assert view.nbytes == size - LARGE_FRAME_UPFRONT_BYTES
    view[:] = b"t" * view.nbytes
    frame.filled = size
    done = frame.completed_view()
    assert bytes(done[:4]) == b"head" and bytes(done[-1:]) == b"t" and done.nbytes == size


@pytest.mark.parametrize(("size", "needed", "first", "expected"), [
    (100, 0, 16, 16),
    (100, 16, 16, 16),
    (100, 17, 16, 32),
    (100, 65, 16, 100),  # never past the frame
    (10, 1, 16, 10),
    (512 * MB, 1, 16 * MB, 16 * MB),
    (512 * MB, 300 * MB, 16 * MB, 512 * MB),
])
def test_large_frame_capacity_doubles_up_to_the_frame_size(size: int, needed: int, first: int,
                                                            expected: int) -> None:
    assert large_frame_capacity(size, needed, first) == expected


@pytest.mark.parametrize(("size", "needed", "first"), [(10, 11, 4), (10, -1, 4), (10, 1, 0)])
def test_large_frame_capacity_refuses_impossible_requests(size: int, needed: int, first: int) -> None:
    with pytest.raises(ValueError):
        large_frame_capacity(size, needed, first)



def test_bytes_appended_past_the_first_buffer_make_it_grow() -> None:
    frame = LargeFrame(0, 0, 0, 0, None, 4 * LARGE_FRAME_UPFRONT_BYTES)
    head = b"h" * (LARGE_FRAME_UPFRONT_BYTES + 10)
    frame.append(memoryview(head))
    assert frame.filled == len(head) and frame.capacity == 2 * LARGE_FRAME_UPFRONT_BYTES
    assert frame.receive_view().nbytes == 2 * LARGE_FRAME_UPFRONT_BYTES - len(head)
