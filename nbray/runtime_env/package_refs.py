"""Who uses which runtime_env package, and deleting packages nobody uses.

Two halves. Drivers, workers and clients (``hold``): before a process
stores or uses a package for its job it writes a reference entry
``ref:<hash>:job:<job id hex>`` into the package namespace of the GCS
internal KV. The GCS (``PackageCollector``): it keeps an index of those
entries, adds entries of its own for detached actors (which outlive their
job: a Jobs API supervisor is one), and drops a holder's entries when the
holder ends (its job finishes, or the actor dies for good). A package whose
last holder went away is deleted after ``runtime_env_package_grace_ms``;
one stored but never held (``upload_package``, a Jobs API upload whose
supervisor never started) after ``runtime_env_unreferenced_package_ms``.
Each deletion is decided again when its timer fires, so a holder that
came meanwhile keeps the package.

Writing the reference before looking whether the package is stored is
what makes this safe: a package a process found stored has a holder from
that moment on, so no running job's new worker misses its package.

The reference entries live in the KV, so they survive a GCS restart with
the packages they protect.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from nbray.protocol import gcs_pb2
from nbray.runtime_env import packaging

REF_PREFIX = b"ref:"
_PKG_PREFIX = b"pkg:"
_META_SUFFIX = b":meta"


# ---- names ---------------------------------------------------------------------------------------


def job_holder(job_id: bytes) -> str:
    return "job:" + job_id.hex()


def actor_holder(actor_id: bytes) -> str:
    return "actor:" + actor_id.hex()


def ref_key(content_hash: str, holder: str) -> bytes:
    return f"ref:{content_hash}:{holder}".encode()


def parse_ref_key(key: bytes) -> tuple[str, str] | None:
    """(content hash, holder) of a reference entry; None for any other key."""
    if not key.startswith(REF_PREFIX):
        return None
    parts = key[len(REF_PREFIX):].decode(errors="replace").split(":", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def stored_hash(key: bytes) -> str | None:
    """The content hash of a package whose completion entry this key is."""
    if key.startswith(_PKG_PREFIX) and key.endswith(_META_SUFFIX):
        return key[len(_PKG_PREFIX):-len(_META_SUFFIX)].decode(errors="replace")
    return None


def package_prefix(content_hash: str) -> bytes:
    """Every KV key of one package (its chunks and completion entry) starts with this."""
    return f"pkg:{content_hash}:".encode()


def hashes_of(uris: Iterable[str]) -> list[str]:
    """Content hashes of the URIs that name packages; others are skipped."""
    out = []
    for uri in uris:
        try:
            out.append(packaging.hash_of_uri(uri))
        except packaging.PackageError:
            continue
    return out


# ---- the using side ------------------------------------------------------------------------------

_held_lock = threading.Lock()
# Per GCS connection object: (hash, holder) already written. Weak, so a
# later connection that reuses the same id() starts empty.
_held: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


_not_holding = threading.local()


@contextlib.contextmanager
def not_held_by_this_job() -> Iterator[None]:
    """On this thread, use packages without making the current job hold them.

    For a long-lived driver that only hands packages on: the dashboard
    creates each Jobs API supervisor (a detached actor, which holds the
    packages itself); were its own job to hold them, they would stay as
    long as the dashboard runs."""
    before = getattr(_not_holding, "on", False)
    _not_holding.on = True
    try:
        yield
    finally:
        _not_holding.on = before


def hold(gcs: Any, uris: Iterable[str], job_id: bytes) -> None:
    """Write the job's reference entries for these packages (once per
    connection). Call before storing or using them."""
    if not job_id or getattr(_not_holding, "on", False):
        return
    holder = job_holder(job_id)
    for h in hashes_of(uris):
        with _held_lock:
            try:
                seen = _held.setdefault(gcs, set())
            except TypeError:  # not weakly referable: write every time
                seen = set()
            if (h, holder) in seen:
                continue
        gcs.call("KVPut", gcs_pb2.KVPutRequest(ns=packaging.KV_NAMESPACE, key=ref_key(h, holder), value=b"",
                                               overwrite=True))
        packaging.forget_stored(gcs, h)
        with _held_lock:
            seen.add((h, holder))


# ---- the GCS side --------------------------------------------------------------------------------


class PackageKV(Protocol):
    """What the collector needs of the KV store (the GCS's KVStore has it)."""

    def keys(self, ns: str, prefix: bytes) -> list[bytes]: ...
    def put(self, ns: str, key: bytes, value: bytes, overwrite: bool) -> bool: ...
    def delete(self, ns: str, key: bytes, by_prefix: bool) -> int: ...


def unheld(holders_by_hash: dict[str, set[str]], candidates: Iterable[str]) -> list[str]:
    """Of the candidate hashes, those no holder references (sorted)."""
    return sorted({h for h in candidates if not holders_by_hash.get(h)})


class PackageCollector:
    """The GCS's index of package references, and the deletions it decides.

    Runs on the GCS's loop thread. ``later(delay_s, fn)`` schedules on that loop.
    """

    def __init__(self, kv: PackageKV, later: Callable[[float, Callable[[], None]], Any], *, grace_s: float,
                 unreferenced_s: float) -> None:
        self._kv = kv
        self._later = later
        self.grace_s = grace_s
        self.unreferenced_s = unreferenced_s
        self.holders: dict[str, set[str]] = {}     # hash -> holders
        self.held: dict[str, set[str]] = {}        # holder -> hashes
        for key in kv.keys(packaging.KV_NAMESPACE, REF_PREFIX):
            parsed = parse_ref_key(key)
            if parsed is not None:
                self._index(*parsed)
        # Stored before a restart and held by nobody now: give them the unreferenced delay again.
        stored = [h for h in map(stored_hash, kv.keys(packaging.KV_NAMESPACE, _PKG_PREFIX)) if h]
        for h in unheld(self.holders, stored):
            self._check_later(h, self.unreferenced_s)

    def _index(self, content_hash: str, holder: str) -> None:
        self.holders.setdefault(content_hash, set()).add(holder)
        self.held.setdefault(holder, set()).add(content_hash)

    def _check_later(self, content_hash: str, delay_s: float) -> None:
        self._later(max(0.0, delay_s), functools.partial(self._collect_later, content_hash))

    def on_kv_put(self, ns: str, key: bytes) -> None:
        """Watch the KV writes: reference entries join the index; a newly
        stored package is deleted later unless someone holds it by then."""
        if ns != packaging.KV_NAMESPACE:
            return
        parsed = parse_ref_key(key)
        if parsed is not None:
            self._index(*parsed)
            return
        h = stored_hash(key)
        if h is not None and not self.holders.get(h):
            self._check_later(h, self.unreferenced_s)

    def hold(self, holder: str, uris: Iterable[str]) -> None:
        """References made by the GCS itself (detached actors)."""
        for h in hashes_of(uris):
            if holder not in self.holders.get(h, ()):
                self._kv.put(packaging.KV_NAMESPACE, ref_key(h, holder), b"", True)
                self._index(h, holder)

    def release(self, holder: str) -> list[str]:
        """The holder ended: drop its references. Returns the hashes now held
        by nobody (each deleted after the grace period unless held again)."""
        hashes = self.held.pop(holder, set())
        for h in hashes:
            self._kv.delete(packaging.KV_NAMESPACE, ref_key(h, holder), False)
            left = self.holders.get(h)
            if left is not None:
                left.discard(holder)
                if not left:
                    del self.holders[h]
        free = unheld(self.holders, hashes)
        for h in free:
            self._check_later(h, self.grace_s)
        return free

    def _collect_later(self, content_hash: str) -> None:
        self.collect(content_hash)

    def collect(self, content_hash: str) -> bool:
        """Delete the package if nobody holds it now; True when it was deleted."""
        if self.holders.get(content_hash):
            return False
        return self._kv.delete(packaging.KV_NAMESPACE, package_prefix(content_hash), True) > 0
