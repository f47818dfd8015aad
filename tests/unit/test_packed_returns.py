"""Many returns of one task in one packed reply (worker side) cut back into
memory-store entries (owner side); and when the owner hands freed memory back."""

from types import SimpleNamespace
from typing import Any

import pytest

from nbray.common.ids import return_object_id
from nbray.common.serialization import deserialize
from nbray.protocol import common_pb2, core_worker_pb2
from nbray.worker.gc_policy import HeapTrimPolicy
from nbray.worker.returns import pack_returns, packed_returns_problem, unpack_returns

pytestmark = pytest.mark.timeout(30)

TASK_ID = b"t" * 24
MAX_INLINE = 200


def fake_core() -> Any:
    """What pack_returns needs of a core worker: the inline limit, and a
    store that 'puts' a value in shared memory (here: records it)."""
    stored: list[bytes] = []

    def store_serialized(oid: bytes, s: Any, caller: Any) -> core_worker_pb2.ReturnObject:
        stored.append(oid)
        return core_worker_pb2.ReturnObject(object_id=oid, value=common_pb2.SerializedValue(
            format=common_pb2.VALUE_IN_PLASMA, plasma_size=s.total_bytes))

    return SimpleNamespace(config=SimpleNamespace(max_inline_object_bytes=MAX_INLINE),
                           store_serialized=store_serialized, stored=stored)


def spec() -> Any:
    return SimpleNamespace(task_id=TASK_ID, caller=common_pb2.Address())


def ids(n: int) -> list[bytes]:
    return [return_object_id(TASK_ID, i + 1) for i in range(n)]


def test_small_values_of_many_returns_travel_packed_and_come_back_equal():
    values = [1, "two", 3.0, None, True, [4, {"five": 5}], (6,), b"seven", 2 ** 80]
    reply = core_worker_pb2.PushTaskReply.FromString(
        pack_returns(fake_core(), spec(), values).SerializeToString())
    assert len(reply.returns) == 0 and list(reply.packed_return_sizes) != []
    assert len(reply.packed_return_sizes) == len(values) and packed_returns_problem(reply, len(values)) == ""
    entries = unpack_returns(reply, ids(len(values)), set(ids(len(values))))
    assert [oid for oid, _ in entries] == ids(len(values))
    assert [deserialize(entry.data) for _, entry in entries] == values
    assert not any(entry.is_error or entry.in_plasma for _, entry in entries)


def test_large_values_are_listed_apart_and_the_rest_stay_in_order():
    core = fake_core()
    big = "x" * (MAX_INLINE * 2)
    values = [0, big, 2, [big], 4]
    reply = pack_returns(core, spec(), values)
    assert core.stored == [ids(5)[1], ids(5)[3]]
    assert [r.object_id for r in reply.returns] == core.stored
    assert list(reply.packed_return_sizes)[1] == 0 and list(reply.packed_return_sizes)[3] == 0
    entries = unpack_returns(reply, ids(5), set(ids(5)))
    assert [(oid, deserialize(e.data)) for oid, e in entries] == [(ids(5)[0], 0), (ids(5)[2], 2), (ids(5)[4], 4)]


def test_only_the_returns_still_referenced_get_entries():
    reply = pack_returns(fake_core(), spec(), list(range(100)))
    wanted = set(ids(100)[::3])
    entries = unpack_returns(reply, ids(100), wanted)
    assert [oid for oid, _ in entries] == ids(100)[::3]
    assert [deserialize(e.data) for _, e in entries] == list(range(100))[::3]


def test_a_single_return_is_packed_too():
    reply = pack_returns(fake_core(), spec(), [7])
    assert not reply.returns and list(reply.packed_return_sizes) == [len(reply.packed_return_data)]
    assert packed_returns_problem(reply, 1) == ""
    [(oid, entry)] = unpack_returns(reply, ids(1), set(ids(1)))
    assert oid == ids(1)[0] and deserialize(entry.data) == 7
    assert not pack_returns(fake_core(), spec(), []).packed_return_sizes  # num_returns=0


def test_a_reply_that_does_not_fit_its_task_is_recognised():
    reply = pack_returns(fake_core(), spec(), [1, 2, 3])
    assert "packs 3 returns for a task with 4" in packed_returns_problem(reply, 4)
    reply.packed_return_data = reply.packed_return_data[:-1]
    assert "add up to" in packed_returns_problem(reply, 3)


def test_a_trim_is_asked_for_once_enough_refs_went_and_covers_later_ones():
    policy = HeapTrimPolicy(min_released=100, max_waits=0)
    assert policy.on_fired() == "idle"     # nothing armed
    assert not policy.on_released(60)
    assert policy.on_released(40)          # crossed the mark: arm the timer
    assert not policy.on_released(10_000)  # already armed: the same trim covers these
    assert policy.on_fired() == "trim" and policy.released == 0
    assert policy.on_fired() == "idle"     # fired once per arming
    assert not policy.on_released(99) and policy.on_released(1)


def test_a_trim_waits_while_a_burst_of_releases_goes_on_but_not_forever():
    policy = HeapTrimPolicy(min_released=100, max_waits=2)
    assert policy.on_released(100)
    policy.on_released(500)                # still releasing when the timer fires
    assert policy.on_fired() == "wait"
    policy.on_released(99)                 # the burst is over (fewer than the mark per delay)
    assert policy.on_fired() == "trim"
    assert policy.on_released(100)
    for _ in range(2):
        policy.on_released(1_000)
        assert policy.on_fired() == "wait"
    policy.on_released(1_000)
    assert policy.on_fired() == "trim"     # a steady stream still gets its trim


def test_a_trim_policy_rejects_bad_bounds():
    with pytest.raises(ValueError, match="positive"):
        HeapTrimPolicy(min_released=0)
    with pytest.raises(ValueError, match="negative"):
        HeapTrimPolicy(max_waits=-1)
