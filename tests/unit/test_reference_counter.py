"""Distributed reference counting decisions (pure logic)."""

from nbray.worker.reference_counter import ReferenceCounter

OWNER = b"owner-addr"
ME = b"me-addr"


def frees(actions):
    return [a[1] for a in actions if a[0] == "free"]


def deltas(actions):
    return [(a[1], a[2], a[3], a[4]) for a in actions if a[0] == "delta"]


def test_owned_object_freed_when_last_local_ref_goes():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.add_local(b"x", OWNER)
    assert rc.remove_local(b"x") == []
    assert frees(rc.remove_local(b"x")) == [b"x"]
    assert rc.get(b"x") is None


def test_pending_task_argument_keeps_object_alive():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.add_submitted([b"x"])
    assert rc.remove_local(b"x") == []
    assert frees(rc.remove_submitted([b"x"])) == [b"x"]


def test_borrower_counts_are_signed_and_order_independent():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.borrower_delta(b"x", b"w-s", +1)       # borrower S holds x
    assert rc.remove_local(b"x") == []         # owner drops its own ref; S keeps x alive
    # S sent x to B and registered B (+1) before releasing its own hold, but
    # B's unregistration (-1) overtakes that registration on another path.
    assert rc.borrower_delta(b"x", b"w-b", -1) == []
    assert rc.borrower_delta(b"x", b"w-b", +1) == []   # B's count back to zero
    assert frees(rc.borrower_delta(b"x", b"w-s", -1)) == [b"x"]


def test_registration_before_sender_release_keeps_object():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.borrower_delta(b"x", b"w-b", +1)       # sender registers the receiver first
    assert rc.remove_local(b"x") == []         # then the owner drops its own ref
    assert frees(rc.borrower_delta(b"x", b"w-b", -1)) == [b"x"]


def test_borrower_sends_unregistration_with_all_registrations():
    rc = ReferenceCounter(b"w-me", ME)
    rc.registered_for_us(b"x", OWNER, 2)
    rc.add_local(b"x", OWNER)
    assert deltas(rc.remove_local(b"x")) == [(OWNER, b"x", ME, -2)]


def test_sender_registers_receiver_with_remote_owner():
    rc = ReferenceCounter(b"w-me", ME)
    rc.add_local(b"x", OWNER)
    assert deltas(rc.register_receiver(b"x", OWNER, b"w-r", b"r-addr")) == [(OWNER, b"x", b"r-addr", 1)]


def test_owner_registers_receiver_locally():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    assert rc.register_receiver(b"x", OWNER, b"w-r", b"r-addr") == []
    assert rc.get(b"x").borrowers == {b"w-r": 1}


def test_contained_refs_live_as_long_as_the_container():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"inner")
    rc.own(b"outer", contains=[(b"inner", OWNER)])
    assert rc.remove_local(b"inner") == []
    actions = rc.remove_local(b"outer")
    assert set(frees(actions)) == {b"outer", b"inner"}


def test_borrowed_container_releases_nested_registrations():
    rc = ReferenceCounter(b"w-me", ME)
    rc.add_local(b"outer", OWNER)
    rc.registered_for_us(b"inner", b"other-owner", 1)
    rc.set_contains(b"outer", [(b"inner", b"other-owner")])
    actions = rc.remove_local(b"outer")
    assert (b"other-owner", b"inner", ME, -1) in deltas(actions)


def test_dead_borrower_is_forgotten():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.borrower_delta(b"x", b"w-b", +1)
    assert rc.remove_local(b"x") == []
    assert frees(rc.borrower_died(b"w-b")) == [b"x"]


def test_self_registration_happens_once():
    rc = ReferenceCounter(b"w-me", ME)
    assert rc.add_local(b"x", OWNER) is True
    assert rc.begin_self_registration(b"x") is True
    assert rc.begin_self_registration(b"x") is False
    rc.add_local(b"x", OWNER)
    assert rc.remove_local(b"x") == []
    assert deltas(rc.remove_local(b"x")) == [(OWNER, b"x", ME, -1)]


def test_lineage_pins_keep_metadata_but_free_the_value():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"arg")
    rc.add_submitted([b"arg"])
    assert rc.remove_local(b"arg") == []
    actions = rc.to_lineage([b"arg"])          # the task finished; kept for reconstruction
    assert [a[0] for a in actions] == ["free_value"]
    assert rc.get(b"arg") is not None and rc.get(b"arg").value_freed
    assert frees(rc.release_lineage([b"arg"])) == [b"arg"]
    assert rc.get(b"arg") is None


def test_ref_handed_back_to_its_owner_does_not_pin_it():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    # a borrower returns x to its owner and registers the owner as receiver
    assert rc.borrower_delta(b"x", b"w-owner", +1) == []
    assert frees(rc.remove_local(b"x")) == [b"x"]


def test_registration_for_a_dead_borrower_arriving_late_is_ignored():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    assert rc.borrower_delta(b"x", b"w-a", +1) == []
    assert rc.borrower_died(b"w-a") == []
    # a third process registered w-a before it died; the message lands now
    assert rc.borrower_delta(b"x", b"w-a", +1) == []
    assert frees(rc.remove_local(b"x")) == [b"x"]


def test_dead_borrowers_remembered_are_bounded():
    rc = ReferenceCounter(b"w-owner", OWNER, dead_borrowers_remembered=2)
    rc.own(b"x")
    for wid in (b"w-a", b"w-b", b"w-c"):
        rc.borrower_died(wid)
    # the oldest is forgotten: its registration counts again
    rc.borrower_delta(b"x", b"w-a", +1)
    assert frees(rc.remove_local(b"x")) == []
    rc.borrower_delta(b"x", b"w-c", +1)
    assert frees(rc.borrower_delta(b"x", b"w-a", -1)) == [b"x"]


def test_owner_ignores_a_receiver_it_already_knows_is_dead():
    # A task is pushed to a cached worker whose death was handled already:
    # the worker never unregisters, so the owner must not count it.
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    rc.borrower_died(b"w-dead")
    assert rc.register_receiver(b"x", OWNER, b"w-dead", b"dead-addr") == []
    assert not rc.get(b"x").borrowers
    assert frees(rc.remove_local(b"x")) == [b"x"]


def test_receiver_that_dies_after_its_registration_releases_it():
    rc = ReferenceCounter(b"w-owner", OWNER)
    rc.own(b"x")
    assert rc.register_receiver(b"x", OWNER, b"w-r", b"r-addr") == []
    assert rc.remove_local(b"x") == []
    assert frees(rc.borrower_died(b"w-r")) == [b"x"]


def test_registration_taken_and_dropped_unused_unregisters_at_once():
    # A worker handed a task back unrun: it takes the sender's registration
    # and, holding nothing, releases it; the owner's count returns to zero.
    owner = ReferenceCounter(b"w-owner", OWNER)
    owner.own(b"x")
    owner.register_receiver(b"x", OWNER, b"w-me", ME)
    worker = ReferenceCounter(b"w-me", ME)
    worker.registered_for_us(b"x", OWNER, 1)
    (delta,) = deltas(worker.check_release(b"x"))
    assert delta == (OWNER, b"x", ME, -1)
    assert worker.get(b"x") is None
    assert owner.borrower_delta(b"x", b"w-me", delta[3]) == []
    assert frees(owner.remove_local(b"x")) == [b"x"]


def test_worker_still_using_a_ref_keeps_the_registration_it_takes_back():
    worker = ReferenceCounter(b"w-me", ME)
    worker.registered_for_us(b"x", OWNER, 1)    # the task it runs
    worker.add_local(b"x", OWNER)
    worker.registered_for_us(b"x", OWNER, 1)    # a task handed back unrun
    assert worker.check_release(b"x") == []
    assert deltas(worker.remove_local(b"x")) == [(OWNER, b"x", ME, -2)]


def test_task_returns_are_owned_with_lineage_and_freed_one_by_one():
    rc = ReferenceCounter(b"me", b"addr-me")
    rc.own_returns([b"r1", b"r2"], b"task")
    assert rc.refs[b"r1"].owned and rc.refs[b"r1"].lineage == b"task" and rc.refs[b"r2"].local == 1
    actions = rc.remove_local(b"r1")
    assert [a[:2] for a in actions] == [("free", b"r1")]
    assert b"r1" not in rc.refs and b"r2" in rc.refs
