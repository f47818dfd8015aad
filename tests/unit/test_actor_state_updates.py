"""How a caller follows an actor's state from the GCS: the reply to its
GetActorInfo and the ACTOR channel's messages can arrive in either order,
and the newer one wins."""

from types import SimpleNamespace

import pytest

from nbray.protocol import gcs_pb2
from nbray.worker.actor_submitter import ActorState, ActorTaskSubmitter

pytestmark = pytest.mark.timeout(30)

_S = gcs_pb2.ActorInfo


class FakeGcs:
    def __init__(self):
        self.subscribed = []
        self.info_callbacks = []

    def subscribe(self, channel, key, handler):
        self.subscribed.append((channel, key, handler))

    def call_async(self, name, request, callback):
        assert name == "GetActorInfo"
        self.info_callbacks.append(callback)


def info(state, num_restarts=0, worker=b"w1"):
    msg = gcs_pb2.ActorInfo(actor_id=b"a" * 16, state=state, num_restarts=num_restarts, class_name="Keeper")
    if state == _S.ALIVE:
        msg.address.worker_id = worker
    return msg


def submitter():
    gcs = FakeGcs()
    core = SimpleNamespace(gcs=gcs, release_creation_args=lambda actor_id: None)
    sub = ActorTaskSubmitter(core)  # type: ignore[arg-type]
    return sub, gcs


def reply(gcs, actor_info):
    gcs.info_callbacks.pop(0)(gcs_pb2.GetActorInfoReply(actor=actor_info), None)


def test_an_actor_that_became_alive_before_the_subscription_is_seen_alive():
    sub, gcs = submitter()
    # RegisterActor said PENDING; the actor became ALIVE before we subscribed,
    # so no message will come: the GetActorInfo reply must be taken.
    sub.track(b"a" * 16, info(_S.PENDING_CREATION))
    reply(gcs, info(_S.ALIVE))
    st: ActorState = sub.actors[b"a" * 16]
    assert st.state == _S.ALIVE
    assert st.address is not None and st.address.worker_id == b"w1"


def test_a_stale_reply_does_not_undo_a_newer_message():
    sub, gcs = submitter()
    sub.track(b"a" * 16, info(_S.PENDING_CREATION))
    sub._on_publish(gcs_pb2.PubMessage(channel=gcs_pb2.ACTOR, key=b"a" * 16, actor=info(_S.ALIVE)))
    reply(gcs, info(_S.PENDING_CREATION))
    assert sub.actors[b"a" * 16].state == _S.ALIVE


def test_restarts_move_forward_and_death_is_final():
    sub, gcs = submitter()
    sub.track(b"a" * 16, info(_S.ALIVE, 0, b"w1"))
    key = b"a" * 16

    def publish(actor_info):
        sub._on_publish(gcs_pb2.PubMessage(channel=gcs_pb2.ACTOR, key=key, actor=actor_info))

    publish(info(_S.RESTARTING, 1))
    assert sub.actors[key].state == _S.RESTARTING
    publish(info(_S.ALIVE, 0, b"w1"))  # late news from the first incarnation
    assert sub.actors[key].state == _S.RESTARTING
    publish(info(_S.ALIVE, 1, b"w2"))
    assert sub.actors[key].address.worker_id == b"w2"
    publish(info(_S.DEAD, 1))
    publish(info(_S.ALIVE, 2, b"w3"))
    assert sub.actors[key].state == _S.DEAD
    assert sub.actors[key].death is not None
