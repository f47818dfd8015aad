"""Reference-counted deletion of runtime_env packages: the GCS-side index and its decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbray.gcs.kv import KVStore
from nbray.protocol import gcs_pb2
from nbray.runtime_env import package_refs, packaging, resolve
from nbray.runtime_env.package_refs import PackageCollector

NS = packaging.KV_NAMESPACE


class Timers:
    """Scheduled calls, run by the test when it says time has passed."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.pending.append((delay_s, fn))

    def run(self) -> None:
        due, self.pending = self.pending, []
        for _, fn in due:
            fn()


def store(kv: KVStore, data: bytes, collector: PackageCollector | None = None) -> str:
    uri = packaging.uri_of(data)
    for req in packaging.kv_put_requests(uri, data, chunk_bytes=4):
        kv.put(req.ns, req.key, req.value, True)
        if collector is not None:
            collector.on_kv_put(req.ns, req.key)
    return uri


def stored(kv: KVStore, uri: str) -> bool:
    h = packaging.hash_of_uri(uri)
    return bool(kv.keys(NS, package_refs.package_prefix(h)))


def put_ref(kv: KVStore, collector: PackageCollector, uri: str, job: bytes) -> None:
    key = package_refs.ref_key(packaging.hash_of_uri(uri), package_refs.job_holder(job))
    kv.put(NS, key, b"", True)
    collector.on_kv_put(NS, key)


def make() -> tuple[KVStore, Timers, PackageCollector]:
    kv, timers = KVStore(), Timers()
    return kv, timers, PackageCollector(kv, timers.later, grace_s=0.5, unreferenced_s=60)


def test_ref_keys_round_trip_and_other_keys_are_not_refs() -> None:
    key = package_refs.ref_key("ab" * 16, package_refs.job_holder(b"\x00\x00\x00\x07"))
    assert package_refs.parse_ref_key(key) == ("ab" * 16, "job:00000007")
    assert package_refs.parse_ref_key(b"pkg:abc:meta") is None
    assert package_refs.parse_ref_key(b"ref:") is None
    assert package_refs.stored_hash(b"pkg:abc:meta") == "abc"
    assert package_refs.stored_hash(b"pkg:abc:0") is None


def test_the_last_holder_ending_deletes_the_package_after_the_grace_period() -> None:
    kv, timers, collector = make()
    put_ref(kv, collector, uri := packaging.uri_of(b"payload-1"), b"\x00\x00\x00\x01")
    put_ref(kv, collector, uri, b"\x00\x00\x00\x02")
    store(kv, b"payload-1", collector)
    assert timers.pending == []  # held: no deletion planned
    assert collector.release(package_refs.job_holder(b"\x00\x00\x00\x01")) == []
    timers.run()
    assert stored(kv, uri)
    h = packaging.hash_of_uri(uri)
    assert collector.release(package_refs.job_holder(b"\x00\x00\x00\x02")) == [h]
    assert [d for d, _ in timers.pending] == [0.5]
    assert stored(kv, uri)  # not before the grace period
    timers.run()
    assert not stored(kv, uri)
    assert kv.keys(NS, b"ref:") == []


def test_a_holder_that_comes_during_the_grace_period_keeps_the_package() -> None:
    kv, timers, collector = make()
    uri = packaging.uri_of(b"payload-2")
    put_ref(kv, collector, uri, b"\x00\x00\x00\x01")
    store(kv, b"payload-2", collector)
    collector.release(package_refs.job_holder(b"\x00\x00\x00\x01"))
    put_ref(kv, collector, uri, b"\x00\x00\x00\x03")
    timers.run()
    assert stored(kv, uri)


def test_a_package_nobody_ever_holds_is_deleted_after_the_unreferenced_delay() -> None:
    kv, timers, collector = make()
    uri = store(kv, b"orphan", collector)
    assert [d for d, _ in timers.pending] == [60]
    timers.run()
    assert not stored(kv, uri)


def test_detached_actors_hold_their_packages_until_they_die() -> None:
    kv, timers, collector = make()
    uri = store(kv, b"for-an-actor", collector)
    env_vars = resolve.encode({"working_dir": uri, "env_vars": {"A": "1"}})
    holder = package_refs.actor_holder(b"\x01" * 16)
    collector.hold(holder, resolve.uris_in_env_vars(env_vars))
    timers.run()  # the unreferenced check finds a holder
    assert stored(kv, uri)
    collector.release(holder)
    timers.run()
    assert not stored(kv, uri)


def test_the_index_is_rebuilt_from_the_kv_after_a_restart() -> None:
    kv, timers, collector = make()
    held = packaging.uri_of(b"held")
    put_ref(kv, collector, held, b"\x00\x00\x00\x01")
    store(kv, b"held", collector)
    orphan = store(kv, b"orphan-2", collector)
    restarted_timers = Timers()
    restarted = PackageCollector(kv, restarted_timers.later, grace_s=0.5, unreferenced_s=60)
    restarted_timers.run()
    assert stored(kv, held) and not stored(kv, orphan)
    restarted.release(package_refs.job_holder(b"\x00\x00\x00\x01"))
    restarted_timers.run()
    assert not stored(kv, held)


def test_uris_in_env_vars_ignores_what_is_not_a_package() -> None:
    env = resolve.encode({"working_dir": packaging.uri_of(b"a"), "py_modules": [packaging.uri_of(b"b")],
                          "pip": {"packages": ["x"]}})
    assert resolve.uris_in_env_vars(env) == [packaging.uri_of(b"a"), packaging.uri_of(b"b")]
    assert resolve.uris_in_env_vars({}) == []
    assert resolve.uris_in_env_vars({resolve.RUNTIME_ENV_VAR: "not json"}) == []


class RecordingGcs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def call(self, name: str, request: Any) -> Any:
        self.calls.append((name, request))
        return gcs_pb2.KVGetReply(found=False) if name == "KVGet" else gcs_pb2.KVPutReply(added=True)


def test_a_job_writes_its_reference_before_it_looks_for_the_package_and_once_per_connection() -> None:
    gcs = RecordingGcs()
    uri = packaging.uri_of(b"data")
    package_refs.hold(gcs, [uri], b"\x00\x00\x00\x05")
    packaging.store_package(gcs, uri, b"data")
    names = [(n, r.key) for n, r in gcs.calls]
    h = packaging.hash_of_uri(uri)
    assert names[0] == ("KVPut", package_refs.ref_key(h, "job:00000005"))
    assert names[1][0] == "KVGet"
    before = len(gcs.calls)
    package_refs.hold(gcs, [uri], b"\x00\x00\x00\x05")
    packaging.store_package(gcs, uri, b"data")
    assert len(gcs.calls) == before  # remembered for this connection
    package_refs.hold(gcs, [uri], b"\x00\x00\x00\x06")  # a new job looks again: it may have been collected
    packaging.store_package(gcs, uri, b"data")
    assert [n for n, _ in gcs.calls[before:]] == ["KVPut", "KVGet", "KVPut", "KVPut"]
