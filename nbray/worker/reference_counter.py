"""Distributed reference counting, one process's share (pure logic).

Every process counts, per object it knows, the references it holds:

    local       ObjectRef instances in this process
    submitted   pending tasks this process submitted that take the object
    contained   objects this process owns whose value contains the ref

The owner also counts *borrowers*: other processes holding the ref, by
worker id, with a signed count. The rule that keeps this race free:

    whoever sends a ref registers the receiver with the owner (+1) before
    it could release its own hold; the receiver unregisters (-n, all the
    registrations made for it) once its own counts drop to zero.

Both messages of one sender travel on one connection, so an owner always
sees a registration before the sender's release; the receiver's own
unregistration may overtake a registration made for it, which is why the
counts are signed. A process that reads refs out of shared memory (no
sender involved) registers itself, and the caller keeps the containing
object pinned until the owner acknowledges. An owner never counts a
registration for a borrower whose death it has already handled, whichever
way the registration reaches it: that borrower can never unregister.

Methods return *actions* for the caller to carry out:

    ("free", object_id, Ref)                   an owned object is out of scope
    ("forget", object_id, Ref)                 a borrowed object is no longer used here
    ("delta", owner_address, object_id, borrower_address, n)
                                               tell the owner about a borrower
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

Action = tuple[Any, ...]

# How many dead borrowers an owner remembers, to ignore registrations for
# them that arrive late (they come within moments of the death).
DEAD_BORROWERS_REMEMBERED = 4096


class Ref:
    """One object's counts. A process may hold millions (one per pending
    task's return), so the fields every entry uses are slots set at
    creation, and the rest are class-level defaults: an entry stores one of
    those only when it changes (then in its own ``__dict__``, made on
    first use), which keeps the common entry small and quick to create."""

    __slots__ = ("owned", "owner", "local", "submitted", "contained", "lineage", "__dict__")

    # owned: borrower worker id -> count (signed)
    borrowers: dict[bytes, int] | None = None
    # borrowed: registrations made with the owner on our behalf
    registered: int = 0
    # owned: (object id, owner) of refs inside this object's value
    contains: tuple[tuple[bytes, bytes], ...] = ()
    in_plasma: bool = False
    node_ids: set[bytes] | None = None
    size: int = 0
    # set when the object is the handle reference of an actor
    actor_id: bytes = b""
    # finished tasks kept for reconstruction that take this object as an
    # argument: they keep its metadata (not its value) alive
    lineage_pins: int = 0
    # the value was freed while lineage pins kept the entry
    value_freed: bool = False

    def __init__(self, owned: bool, owner: bytes) -> None:
        self.owned = owned
        # Serialized Address of the owner.
        self.owner = owner
        self.local = 0
        self.submitted = 0
        self.contained = 0
        # owned objects made by a task: the task id (for lineage)
        self.lineage = b""

    def total(self) -> int:
        n = self.local + self.submitted + self.contained
        if self.borrowers:
            n += sum(c for c in self.borrowers.values() if c > 0)
        return n

    def __repr__(self) -> str:
        return (f"Ref(owned={self.owned}, local={self.local}, submitted={self.submitted}, "
                f"contained={self.contained}, borrowers={self.borrowers}, registered={self.registered})")


class ReferenceCounter:
    def __init__(self, my_worker_id: bytes, my_address: bytes,
                 dead_borrowers_remembered: int = DEAD_BORROWERS_REMEMBERED) -> None:
        self.my_worker_id = my_worker_id
        self.my_address = my_address
        self.refs: dict[bytes, Ref] = {}
        # Borrowers known dead, oldest first: a registration made for one of
        # them by a third process can arrive after its death was handled.
        self._dead_borrowers: OrderedDict[bytes, None] = OrderedDict()
        self._dead_borrowers_remembered = dead_borrowers_remembered

    # ---- creating ------------------------------------------------------------------------------

    def own(self, object_id: bytes, contains: Iterable[tuple[bytes, bytes]] = (),
            local: int = 1, lineage: bytes = b"") -> list[Action]:
        """Start owning an object (put or a task return); `local` refs held."""
        ref = self.refs.get(object_id)
        if ref is None:
            ref = Ref(True, self.my_address)
            self.refs[object_id] = ref
        ref.local += local
        ref.lineage = lineage or ref.lineage
        actions: list[Action] = []
        if contains:
            self.set_contains(object_id, contains)
        return actions

    def own_returns(self, object_ids: list[bytes], lineage: bytes) -> None:
        """Start owning the returns of a task just submitted (one local ref each)."""
        refs = self.refs
        me = self.my_address
        for oid in object_ids:
            ref = refs.get(oid)
            if ref is None:
                ref = refs[oid] = Ref(True, me)
            ref.local += 1
            ref.lineage = lineage

    def set_contains(self, object_id: bytes, contains: Iterable[tuple[bytes, bytes]]) -> None:
        """The value of `object_id` (owned, or borrowed and cached here)
        holds these refs until the entry goes away."""
        ref = self.refs[object_id]
        new = tuple(contains)
        ref.contains = ref.contains + new
        for inner_id, inner_owner in new:
            inner = self._ensure(inner_id, inner_owner)
            inner.contained += 1

    def _ensure(self, object_id: bytes, owner: bytes) -> Ref:
        ref = self.refs.get(object_id)
        if ref is None:
            owned = owner == self.my_address
            ref = Ref(owned, owner)
            self.refs[object_id] = ref
        return ref

    def add_local(self, object_id: bytes, owner: bytes) -> bool:
        """An ObjectRef instance appeared. True if this created a borrowed
        entry nobody registered (the caller must register it)."""
        ref = self.refs.get(object_id)
        if ref is None:
            ref = self._ensure(object_id, owner)
            ref.local = 1
            return not ref.owned
        ref.local += 1
        return False

    def registered_for_us(self, object_id: bytes, owner: bytes, n: int = 1) -> None:
        """A sender registered this process as a borrower `n` times."""
        ref = self._ensure(object_id, owner)
        if not ref.owned:
            ref.registered += n

    def begin_self_registration(self, object_id: bytes) -> bool:
        """Register ourselves for a ref read from shared memory.

        Returns True when a +1 must be sent to the owner (the caller pins
        the container until the owner acknowledges)."""
        ref = self.refs.get(object_id)
        if ref is None or ref.owned or ref.registered > 0:
            return False
        ref.registered += 1
        return True

    def check_release(self, object_id: bytes) -> list[Action]:
        """Release an entry that may have been created without any holder."""
        ref = self.refs.get(object_id)
        return self._maybe_release(object_id, ref) if ref is not None else []

    # ---- sending refs ------------------------------------------------------------------------------

    def register_receiver(self, object_id: bytes, owner: bytes, receiver_id: bytes,
                          receiver_address: bytes, n: int = 1) -> list[Action]:
        """We send `object_id` to `receiver`: register it with the owner first."""
        if receiver_id == self.my_worker_id:
            self.registered_for_us(object_id, owner, n)
            return []
        ref = self.refs.get(object_id)
        if ref is not None and ref.owned:
            if receiver_id in self._dead_borrowers:
                # A push to a cached worker whose death was already handled
                # here: it will never unregister, so counting it would pin
                # the object for good (the task is retried elsewhere).
                return []
            if ref.borrowers is None:
                ref.borrowers = {}
            ref.borrowers[receiver_id] = ref.borrowers.get(receiver_id, 0) + n
            return []
        return [("delta", owner, object_id, receiver_address, n)]

    # ---- counting ------------------------------------------------------------------------------------

    def remove_local(self, object_id: bytes) -> list[Action]:
        ref = self.refs.get(object_id)
        if ref is None:
            return []
        ref.local -= 1
        return self._maybe_release(object_id, ref)

    def add_submitted(self, object_ids: Iterable[bytes]) -> None:
        for oid in object_ids:
            ref = self.refs.get(oid)
            if ref is not None:
                ref.submitted += 1

    def remove_submitted(self, object_ids: Iterable[bytes]) -> list[Action]:
        actions: list[Action] = []
        for oid in object_ids:
            ref = self.refs.get(oid)
            if ref is not None:
                ref.submitted -= 1
                actions.extend(self._maybe_release(oid, ref))
        return actions

    def borrower_delta(self, object_id: bytes, borrower_id: bytes, delta: int) -> list[Action]:
        """Owner side: a borrower was registered (+) or unregistered (-).

        A borrower that hands a ref back to its owner (returns it, say)
        registers the owner as a receiver; the owner counts its own holds
        locally and never unregisters itself, so that registration is
        dropped here or it would pin the object forever."""
        ref = self.refs.get(object_id)
        if ref is None or not ref.owned or borrower_id == self.my_worker_id:
            return []
        if borrower_id in self._dead_borrowers:
            return []  # it will never unregister: counting it would pin the object forever
        if ref.borrowers is None:
            ref.borrowers = {}
        count = ref.borrowers.get(borrower_id, 0) + delta
        if count == 0:
            del ref.borrowers[borrower_id]
        else:
            ref.borrowers[borrower_id] = count
        return self._maybe_release(object_id, ref)

    def borrower_died(self, borrower_id: bytes) -> list[Action]:
        """Owner side: a process died; what it borrowed is released, and
        registrations for it that arrive later are ignored."""
        self._dead_borrowers[borrower_id] = None
        self._dead_borrowers.move_to_end(borrower_id)
        while len(self._dead_borrowers) > self._dead_borrowers_remembered:
            self._dead_borrowers.popitem(last=False)
        actions: list[Action] = []
        for oid, ref in list(self.refs.items()):
            if ref.owned and ref.borrowers and borrower_id in ref.borrowers:
                del ref.borrowers[borrower_id]
                actions.extend(self._maybe_release(oid, ref))
        return actions

    def owner_died(self, owner: bytes) -> list[bytes]:
        """Object ids we borrowed from an owner that died."""
        return [oid for oid, ref in self.refs.items() if not ref.owned and ref.owner == owner]

    def to_lineage(self, object_ids: Iterable[bytes]) -> list[Action]:
        """A finished task is kept for reconstruction: its argument holds
        become lineage pins (metadata only)."""
        actions: list[Action] = []
        for oid in object_ids:
            ref = self.refs.get(oid)
            if ref is not None:
                ref.submitted -= 1
                ref.lineage_pins += 1
                actions.extend(self._maybe_release(oid, ref))
        return actions

    def release_lineage(self, object_ids: Iterable[bytes]) -> list[Action]:
        actions: list[Action] = []
        for oid in object_ids:
            ref = self.refs.get(oid)
            if ref is not None:
                ref.lineage_pins -= 1
                actions.extend(self._maybe_release(oid, ref))
        return actions

    def _maybe_release(self, object_id: bytes, ref: Ref) -> list[Action]:
        if ref.total() > 0:
            return []
        if ref.owned and ref.lineage_pins > 0:
            # keep the entry (for reconstruction) but let the value go
            if ref.value_freed:
                return []
            ref.value_freed = True
            return [("free_value", object_id, ref)]
        del self.refs[object_id]
        actions: list[Action] = []
        if ref.owned:
            actions.append(("free", object_id, ref))
        else:
            actions.append(("forget", object_id, ref))
            if ref.registered:
                actions.append(("delta", ref.owner, object_id, self.my_address, -ref.registered))
        # A value (owned, or a borrowed one cached here) holds its nested refs.
        for inner_id, _inner_owner in ref.contains:
            inner = self.refs.get(inner_id)
            if inner is not None:
                inner.contained -= 1
                actions.extend(self._maybe_release(inner_id, inner))
        return actions

    # ---- queries -----------------------------------------------------------------------------------

    def get(self, object_id: bytes) -> Ref | None:
        return self.refs.get(object_id)

    def owner_of(self, object_id: bytes) -> bytes | None:
        ref = self.refs.get(object_id)
        return ref.owner if ref is not None else None

    def is_owned(self, object_id: bytes) -> bool:
        ref = self.refs.get(object_id)
        return ref is not None and ref.owned

    def __len__(self) -> int:
        return len(self.refs)
