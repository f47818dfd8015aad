"""Each GCS handler a client may resend, called twice with the same request:
the second call changes nothing and gets an equivalent reply.

An in-process GcsServer (memory storage, loop not running) with its handlers
called directly, so each test sees the tables right after each call.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.common.config import Config
from nbray.exceptions import RpcError
from nbray.gcs import client as gcs_client
from nbray.gcs.server import GcsServer
from nbray.protocol import common_pb2, gcs_pb2
from nbray.rpc.eventloop import Future

pytestmark = pytest.mark.timeout(30)


class FakeConn:
    """The few Connection members handlers touch."""

    def __init__(self) -> None:
        self.closed = False
        self.context: Any = None
        self.close_callbacks: list[Any] = []
        self.calls: list[Any] = []
        self.sent: list[Any] = []

    def send_oneway(self, method: Any, msg: Any, trailer: Any = None) -> None:
        self.sent.append(msg)

    def add_close_callback(self, cb: Any) -> None:
        self.close_callbacks.append(cb)

    def call(self, method: Any, request: Any, **kwargs: Any) -> Future:
        self.calls.append((method.full_name, request))
        return Future()

    def close(self, reason: str = "") -> None:
        self.closed = True


@pytest.fixture
def gcs() -> Iterator[GcsServer]:
    config = Config()
    config.gcs_storage = "memory://"
    with tempfile.TemporaryDirectory(prefix="nbray-gcs-idem-") as session_dir:
        server = GcsServer(host="127.0.0.1", port=0, config=config, token=os.urandom(32), session_dir=session_dir)
        try:
            yield server
        finally:
            server.listener.close()
            server.pool.close()
            server.storage.close()


def twice(handler: Any, conn: Any, req: Any) -> tuple[Any, Any]:
    return handler(conn, req, 1), handler(conn, req, 2)


def actor_request(actor_id: bytes, name: str = "") -> gcs_pb2.RegisterActorRequest:
    spec = common_pb2.TaskSpec(actor_id=actor_id, job_id=b"\0\0\0\1", task_id=os.urandom(24))
    spec.caller.worker_id = b"owner-worker"
    return gcs_pb2.RegisterActorRequest(creation_spec=spec, name=name, namespace="ns", class_name="A")


def pg_request(pg_id: bytes) -> gcs_pb2.CreatePlacementGroupRequest:
    info = gcs_pb2.PlacementGroupInfo(placement_group_id=pg_id, name="pg", namespace="ns")
    info.bundles.add().amounts["CPU"] = 1
    return gcs_pb2.CreatePlacementGroupRequest(placement_group=info)


def test_register_node_twice_on_one_connection(gcs: GcsServer) -> None:
    conn = FakeConn()
    req = gcs_pb2.RegisterNodeRequest(node=gcs_pb2.NodeInfo(node_id=b"n" * 28, node_ip="127.0.0.1"))
    req.node.resources_total["CPU"] = 2
    added: list[Any] = []
    gcs.nodes.on_node_added.append(added.append)
    first, second = twice(gcs.handle_RegisterNode, conn, req)
    assert first == second and first.cluster_id == gcs.cluster_id
    assert len(added) == 1 and len(conn.close_callbacks) == 1
    assert [n.node_id for n in gcs.handle_GetAllNodeInfo(conn, None, 3).nodes] == [b"n" * 28]


def test_unregister_node_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    gcs.handle_RegisterNode(conn, gcs_pb2.RegisterNodeRequest(node=gcs_pb2.NodeInfo(node_id=b"m" * 28)), 1)
    dead: list[Any] = []
    gcs.nodes.on_node_dead.append(dead.append)
    first, second = twice(gcs.handle_UnregisterNode, conn,
                          gcs_pb2.UnregisterNodeRequest(node_id=b"m" * 28, reason="stopped"))
    assert first == second and len(dead) == 1
    assert gcs.nodes.get(b"m" * 28) is not None and not gcs.nodes.get(b"m" * 28).alive  # type: ignore[union-attr]


def test_add_job_reattach_and_mark_finished_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    job_id = gcs.handle_AddJob(conn, gcs_pb2.AddJobRequest(job=gcs_pb2.JobInfo()), 1).job_id
    reattach = gcs_pb2.AddJobRequest(job=gcs_pb2.JobInfo(job_id=job_id))
    first, second = twice(gcs.handle_AddJob, conn, reattach)
    assert first == second and first.job_id == job_id and len(gcs.jobs) == 1
    finished = gcs_pb2.MarkJobFinishedRequest(job_id=job_id)
    gcs.handle_MarkJobFinished(conn, finished, 4)
    end_ms = gcs.jobs[job_id].end_time_ms
    assert gcs.handle_MarkJobFinished(conn, finished, 5) == common_pb2.Empty()
    assert gcs.jobs[job_id].is_dead and gcs.jobs[job_id].end_time_ms == end_ms


def test_add_job_is_not_resendable() -> None:
    # Each AddJob makes a new job: the client must never send one twice.
    assert "AddJob" not in gcs_client._RESENDABLE


def test_register_actor_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    req = actor_request(b"a" * 16, name="counter")
    first, second = twice(gcs.handle_RegisterActor, conn, req)
    assert first.actor.actor_id == second.actor.actor_id == b"a" * 16
    assert not first.existed and not second.existed
    assert len(gcs.actors.actors) == 1 and gcs.actors.get_named("counter", "ns") is not None
    # another actor wanting the same name is still refused
    with pytest.raises(RpcError, match="already exists"):
        gcs.handle_RegisterActor(conn, actor_request(b"b" * 16, name="counter"), 3)


def test_kill_actor_and_out_of_scope_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    gcs.handle_RegisterActor(conn, actor_request(b"k" * 16, name="victim"), 1)
    watcher = FakeConn()
    gcs.publisher.subscribe(watcher, gcs_pb2.ACTOR, b"")  # type: ignore[arg-type]
    req = gcs_pb2.KillActorRequest(actor_id=b"k" * 16, no_restart=True, reason="bye")
    gcs.handle_KillActor(conn, req, 1)
    published = len(watcher.sent)
    assert gcs.handle_KillActor(conn, req, 2) == common_pb2.Empty()
    assert len(watcher.sent) == published  # no second death announced
    info = gcs.handle_GetActorInfo(conn, gcs_pb2.GetActorInfoRequest(actor_id=b"k" * 16), 3).actor
    assert info.state == gcs_pb2.ActorInfo.DEAD
    assert gcs.actors.get_named("victim", "ns") is None
    gcs.handle_RegisterActor(conn, actor_request(b"o" * 16), 4)
    scope = gcs_pb2.GetActorInfoRequest(actor_id=b"o" * 16)
    first, second = twice(gcs.handle_ReportActorOutOfScope, conn, scope)
    assert first == second
    entry = gcs.actors.get(b"o" * 16)
    assert entry is not None and entry.info.state == gcs_pb2.ActorInfo.DEAD
    stamp = entry.info.timestamp_ms
    gcs.handle_ReportActorOutOfScope(conn, scope, 7)
    assert entry.info.timestamp_ms == stamp


def test_worker_failure_reported_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    gcs.handle_RegisterActor(conn, actor_request(b"f" * 16), 1)
    failure = gcs_pb2.WorkerFailure(message="crashed")
    failure.address.worker_id = b"owner-worker"
    first, second = twice(gcs.handle_ReportWorkerFailure, conn, failure)
    assert first == second
    entry = gcs.actors.get(b"f" * 16)
    assert entry is not None and entry.info.state == gcs_pb2.ActorInfo.DEAD
    assert len(gcs.actors.actors) == 1


def test_kv_put_twice_gets_the_first_answer(gcs: GcsServer) -> None:
    conn = FakeConn()
    req = gcs_pb2.KVPutRequest(ns="n", key=b"k", value=b"v1", overwrite=True, request_id=b"r1")
    first, second = twice(gcs.handle_KVPut, conn, req)
    assert first.added and second.added
    # put-if-absent: the resend still hears "added", a different writer does not
    absent = gcs_pb2.KVPutRequest(ns="n", key=b"new", value=b"x", overwrite=False, request_id=b"r2")
    a, b = twice(gcs.handle_KVPut, conn, absent)
    assert a.added and b.added
    other = gcs_pb2.KVPutRequest(ns="n", key=b"new", value=b"y", overwrite=False, request_id=b"r3")
    assert not gcs.handle_KVPut(conn, other, 9).added
    assert gcs.kv.get("n", b"new") == b"x" and gcs.kv.get("n", b"k") == b"v1"
    # without an id (an older client) a put is still only applied once per value
    plain = gcs_pb2.KVPutRequest(ns="n", key=b"p", value=b"1", overwrite=True)
    assert gcs.handle_KVPut(conn, plain, 10).added and not gcs.handle_KVPut(conn, plain, 11).added


def test_kv_del_twice_gets_the_first_answer(gcs: GcsServer) -> None:
    conn = FakeConn()
    gcs.kv.put("n", b"a1", b"1", True)
    gcs.kv.put("n", b"a2", b"2", True)
    req = gcs_pb2.KVDelRequest(ns="n", key=b"a", by_prefix=True, request_id=b"d1")
    first, second = twice(gcs.handle_KVDel, conn, req)
    assert first.deleted == second.deleted == 2 and gcs.kv.keys("n", b"") == []


def test_remembered_kv_answers_are_bounded(gcs: GcsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbray.gcs import kv

    monkeypatch.setattr(kv, "REMEMBERED_REQUESTS", 3)
    for i in range(10):
        gcs.kv.put("n", b"k%d" % i, b"v", True, request_id=b"id%d" % i)
    assert len(gcs.kv._answered) == 3


def test_create_and_remove_placement_group_twice(gcs: GcsServer) -> None:
    conn = FakeConn()
    req = pg_request(b"g" * 18)
    first, second = twice(gcs.handle_CreatePlacementGroup, conn, req)
    assert first == second and first.placement_group_id == b"g" * 18
    assert len(gcs.placement_groups.all()) == 1
    remove = gcs_pb2.PlacementGroupIdRequest(placement_group_id=b"g" * 18)
    first, second = twice(gcs.handle_RemovePlacementGroup, conn, remove)
    assert first == second
    got = gcs.handle_GetPlacementGroup(conn, remove, 5)
    assert got.found and got.placement_group.state == gcs_pb2.PlacementGroupInfo.REMOVED
    assert gcs.placement_groups.get_named("pg", "ns") is None


def test_subscribe_twice_delivers_once(gcs: GcsServer) -> None:
    conn = FakeConn()
    req = gcs_pb2.SubscribeRequest(channel=gcs_pb2.JOB, key=b"")  # type: ignore[arg-type]
    first, second = twice(gcs.handle_Subscribe, conn, req)
    assert first == second
    gcs.handle_AddJob(FakeConn(), gcs_pb2.AddJobRequest(job=gcs_pb2.JobInfo()), 3)
    assert len(conn.sent) == 1


# Writes in the client's resend list, each called twice above.
COVERED_WRITES = {"KVPut", "KVDel", "Subscribe", "ReportActorOutOfScope", "MarkJobFinished", "KillActor",
                  "RegisterActor", "CreatePlacementGroup", "RemovePlacementGroup"}


def test_every_resendable_write_is_covered_here() -> None:
    reads = {n for n in gcs_client._RESENDABLE if n.startswith(("Get", "List", "Wait")) or n in ("KVGet", "KVKeys")}
    assert gcs_client._RESENDABLE - reads == COVERED_WRITES
