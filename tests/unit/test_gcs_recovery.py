"""Decisions around a GCS restart: backoff, the supervisor's restart budget,
and what the node table does with raylets that register again."""

from __future__ import annotations

from typing import Any

import pytest

from nbray.common.config import Config
from nbray.exceptions import RpcError
from nbray.gcs.node_manager import NodeManager
from nbray.gcs.pubsub import Publisher
from nbray.gcs.recovery import Registration, RestartBudget, backoff_delay_s, registration_decision
from nbray.protocol import gcs_pb2
from nbray.rpc.eventloop import EventLoop


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_delay_s(n, 0.1, 1.0) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay_s(10_000, 0.1, 2.0) == 2.0  # no overflow for long outages
    with pytest.raises(ValueError):
        backoff_delay_s(-1, 0.1, 1.0)
    with pytest.raises(ValueError):
        backoff_delay_s(0, -0.1, 1.0)


def test_restart_budget_backs_off_and_gives_up_within_its_window() -> None:
    budget = RestartBudget(max_restarts=3, window_s=60.0, initial_s=0.1, max_s=0.3)
    assert budget.next_restart_delay(0.0) == pytest.approx(0.1)
    assert budget.next_restart_delay(1.0) == pytest.approx(0.2)
    assert budget.next_restart_delay(2.0) == pytest.approx(0.3)
    assert budget.next_restart_delay(3.0) is None  # a fourth death within the minute: give up
    # Once the first restarts leave the window, restarts are allowed again, with a short delay.
    assert budget.next_restart_delay(61.0) == pytest.approx(0.3)
    assert budget.next_restart_delay(200.0) == pytest.approx(0.1)


def test_restart_budget_of_zero_never_restarts() -> None:
    assert RestartBudget(0, 60.0, 0.1, 1.0).next_restart_delay(0.0) is None
    with pytest.raises(ValueError):
        RestartBudget(-1, 60.0, 0.1, 1.0)
    with pytest.raises(ValueError):
        RestartBudget(1, 0.0, 0.1, 1.0)


@pytest.mark.parametrize(("known", "alive", "awaiting", "expected"), [
    (False, False, False, Registration.NEW),
    (True, False, True, Registration.RETURNING),   # stored alive, back after the GCS restarted
    (True, True, False, Registration.RETURNING),   # registering again on a new connection
    (True, False, False, Registration.REFUSED),    # declared dead: never rejoins
])
def test_registration_decision(known: bool, alive: bool, awaiting: bool, expected: Registration) -> None:
    assert registration_decision(known, alive, awaiting) is expected


class FakeConn:
    def __init__(self) -> None:
        self.context: Any = None
        self.closed = False
        self.close_reason = ""
        self.on_close: list[Any] = []

    def add_close_callback(self, cb: Any) -> None:
        self.on_close.append(cb)

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.close_reason = True, reason
            for cb in self.on_close:
                cb(self)


class RecordingPublisher(Publisher):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[gcs_pb2.PubMessage] = []

    def publish(self, msg: gcs_pb2.PubMessage) -> int:
        copy = gcs_pb2.PubMessage()
        copy.CopyFrom(msg)
        self.sent.append(copy)
        return 0


def node(node_id: bytes, state: int = gcs_pb2.NodeInfo.ALIVE) -> gcs_pb2.NodeInfo:
    info = gcs_pb2.NodeInfo(node_id=node_id, node_ip="127.0.0.1", raylet_port=1, state=state)  # type: ignore[arg-type]
    info.resources_total["CPU"] = 2.0
    return info


@pytest.fixture
def manager() -> Any:
    loop = EventLoop("test")
    publisher = RecordingPublisher()
    nodes = NodeManager(loop, Config(gcs_reregister_grace_ms=1_000), publisher)
    try:
        yield nodes, publisher
    finally:
        loop.close()


def test_restored_nodes_return_or_are_declared_dead_after_the_grace(manager: Any) -> None:
    nodes, publisher = manager
    died: list[bytes] = []
    nodes.on_node_dead.append(lambda info: died.append(info.node_id))
    back, lost, dead_before = b"a" * 28, b"b" * 28, b"c" * 28
    nodes.restore([node(back), node(lost), node(dead_before, gcs_pb2.NodeInfo.DEAD)])
    assert set(nodes.awaiting) == {back, lost}
    assert not nodes.alive() and not publisher.sent  # nobody is told anything yet

    conn = FakeConn()
    nodes.register(conn, node(back))
    assert [e.info.node_id for e in nodes.alive()] == [back]
    assert conn.context is nodes.get(back)

    assert nodes.end_reregistration_grace() == [lost]
    assert died == [lost]
    entry = nodes.get(lost)
    assert entry is not None and not entry.alive
    assert "did not register again within 1000 ms" in entry.info.death_reason_message
    dead_msgs = [m.node for m in publisher.sent if m.channel == gcs_pb2.NODE and m.node.state == gcs_pb2.NodeInfo.DEAD]
    assert [n.node_id for n in dead_msgs] == [lost]
    assert not nodes.awaiting

    # Too late: a node declared dead never rejoins.
    with pytest.raises(RpcError, match="declared dead") as caught:
        nodes.register(FakeConn(), node(lost))
    assert caught.value.code == "node_dead"
    with pytest.raises(RpcError):
        nodes.register(FakeConn(), node(dead_before))


def test_a_node_registering_again_on_a_new_connection_stays_alive(manager: Any) -> None:
    nodes, _ = manager
    died: list[bytes] = []
    nodes.on_node_dead.append(lambda info: died.append(info.node_id))
    node_id = b"d" * 28
    first, second = FakeConn(), FakeConn()
    nodes.register(first, node(node_id))
    nodes.register(second, node(node_id))
    assert first.closed  # the stale connection is dropped ...
    entry = nodes.get(node_id)
    assert entry is not None and entry.alive and entry.conn is second  # ... without declaring the node dead
    assert not died
    second.close("raylet exited")
    assert died == [node_id]
