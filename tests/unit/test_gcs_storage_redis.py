"""The Redis backend of the GCS storage, against a real redis-server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis

from nbray.gcs import storage as st
from nbray.gcs import storage_redis
from nbray.gcs.storage_open import open_storage, verify_storage
from nbray.gcs.storage_redis import RedisStorage, damaged_tables, table_key
from tests.redis_server import free_port, redis_server

pytestmark = pytest.mark.timeout(60)

TOKEN = b"t" * 32


@pytest.fixture(scope="module")
def redis_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as uri:
        yield uri


@pytest.fixture
def client(redis_uri: str) -> Iterator[redis.Redis]:
    address = st.parse_redis_uri(redis_uri)
    c = redis.Redis(host=address.host, port=address.port, db=address.db)
    try:
        yield c
    finally:
        c.close()


def fresh_namespace() -> str:
    return f"t{os.urandom(6).hex()}"


def open_ns(uri: str, namespace: str) -> RedisStorage:
    storage = open_storage(f"{uri}?namespace={namespace}", "/nonexistent")
    assert isinstance(storage, RedisStorage)
    return storage


# ---- pure helpers -------------------------------------------------------------------------------


def test_parse_redis_uri_forms_and_errors() -> None:
    a = st.parse_redis_uri("redis://10.0.0.5")
    assert (a.host, a.port, a.db, a.namespace, a.password) == ("10.0.0.5", 6379, 0, "default", None)
    b = st.parse_redis_uri("redis://:s%40cret@h:7000/3?namespace=prod-1&timeout_ms=250")
    assert (b.host, b.port, b.db, b.namespace, b.password, b.timeout_ms) == ("h", 7000, 3, "prod-1", "s@cret", 250)
    assert "s@cret" not in b.describe() and "s@cret" not in repr(b)
    assert b.describe() == "redis://h:7000/3?namespace=prod-1"
    for bad, match in [("redis://", "needs a host"), ("redis://h:70000", "out of range"),
                       ("redis://h/zero", "must be a number"), ("redis://h?db=1", "unknown parameter"),
                       ("redis://h?namespace=a:b", "namespace"), ("redis://h?timeout_ms=0", "timeout_ms"),
                       ("redis://:pw@h:x", "redis://:\\*\\*\\*@h:x")]:
        with pytest.raises(ValueError, match=match):
            st.parse_redis_uri(bad)


def test_damaged_tables_names_what_is_wrong() -> None:
    none = {t: "none" for t in st.Table}
    assert damaged_tables(none, meta_has_schema=False) == []
    ok = none | {st.Table.META: "hash", st.Table.ACTOR: "hash"}
    assert damaged_tables(ok, meta_has_schema=True) == []
    assert damaged_tables(none | {st.Table.KV: "string"}, True) == ["kv is a Redis string, not a hash"]
    orphan = damaged_tables(none | {st.Table.NODE: "hash"}, meta_has_schema=False)
    assert orphan == ["tables node exist without a schema version"]


# ---- against a server -------------------------------------------------------------------------------


def test_round_trip_survives_reopen_and_stays_under_its_namespace(redis_uri: str, client: redis.Redis) -> None:
    ns = fresh_namespace()
    with open_ns(redis_uri, ns) as s:
        cluster_id = s.open_identity(TOKEN, b"C" * 16, "0.1")
        s.put(st.Table.KV, b"\x00bin\xff", b"v\x00")
        s.put(st.Table.ACTOR, b"a1", b"actor")
        s.flush()
    with open_ns(redis_uri, ns) as again:
        assert again.open_identity(TOKEN, b"other" * 4, "0.1") == cluster_id
        assert again.get(st.Table.KV, b"\x00bin\xff") == b"v\x00"
        assert again.scan(st.Table.ACTOR) == {b"a1": b"actor"}
    keys = {k.decode() for k in client.scan_iter(match=f"nbray:{ns}:*")}
    assert keys == {table_key(ns, t) for t in (st.Table.META, st.Table.KV, st.Table.ACTOR)}


def test_two_clusters_share_a_database_through_namespaces(redis_uri: str) -> None:
    ns_a, ns_b = fresh_namespace(), fresh_namespace()
    with open_ns(redis_uri, ns_a) as a, open_ns(redis_uri, ns_b) as b:
        a.open_identity(TOKEN, b"A" * 16, "0.1")
        b.open_identity(b"u" * 32, b"B" * 16, "0.1")  # another cluster, another token
        a.put(st.Table.KV, b"k", b"from-a")
        a.flush()
        assert b.get(st.Table.KV, b"k") is None and b.scan(st.Table.KV) == {}
    with open_ns(redis_uri, ns_a) as same_ns, pytest.raises(st.StorageIdentityError, match=ns_a):
        same_ns.open_identity(b"u" * 32, b"X" * 16, "0.1")  # cluster b's token on a's namespace


def test_each_flush_is_one_multi_exec_transaction(redis_uri: str, client: redis.Redis) -> None:
    def execs() -> int:
        return int(client.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))

    with open_ns(redis_uri, fresh_namespace()) as s:
        s.put(st.Table.KV, b"gone", b"x")
        s.flush()
        before = execs()
        for i in range(20):
            s.put(st.Table.KV, b"k%d" % i, b"v")
        s.put(st.Table.NODE, b"n", b"node")
        s.delete(st.Table.KV, b"gone")
        assert s.flush() == 22
        assert execs() == before + 1
        assert len(s.scan(st.Table.KV)) == 20 and s.get(st.Table.KV, b"gone") is None


def test_newer_schema_is_refused_naming_both_versions(redis_uri: str, client: redis.Redis) -> None:
    ns = fresh_namespace()
    client.hset(table_key(ns, st.Table.META), mapping={st.META_SCHEMA_VERSION: b"99",
                                                       st.META_WRITER_VERSION: b"9.9"})
    with open_ns(redis_uri, ns) as s, pytest.raises(st.StorageSchemaError, match="version 99.*version 1 at most"):
        s.open_identity(TOKEN, b"C" * 16, "0.1")
    with pytest.raises(st.StorageSchemaError, match="nbray 9.9"):
        verify_storage(f"{redis_uri}?namespace={ns}", "/nonexistent", TOKEN)


def test_verify_refuses_another_token_without_writing(redis_uri: str, client: redis.Redis) -> None:
    ns = fresh_namespace()
    with open_ns(redis_uri, ns) as s:
        s.open_identity(TOKEN, b"C" * 16, "0.1")
    before = client.hgetall(table_key(ns, st.Table.META))
    with pytest.raises(st.StorageIdentityError):
        verify_storage(f"{redis_uri}?namespace={ns}", "/nonexistent", b"u" * 32)
    verify_storage(f"{redis_uri}?namespace={ns}", "/nonexistent", TOKEN)
    assert client.hgetall(table_key(ns, st.Table.META)) == before


def test_damaged_keys_are_reported_untouched(redis_uri: str, client: redis.Redis) -> None:
    ns = fresh_namespace()
    client.set(table_key(ns, st.Table.ACTOR), b"not a hash")
    with pytest.raises(st.StorageCorruptedError, match="actor is a Redis string"):
        open_ns(redis_uri, ns)
    assert client.get(table_key(ns, st.Table.ACTOR)) == b"not a hash"
    orphan = fresh_namespace()
    client.hset(table_key(orphan, st.Table.NODE), b"n", b"x")
    with pytest.raises(st.StorageCorruptedError, match="without a schema version"):
        open_ns(redis_uri, orphan)
    bad_version = fresh_namespace()
    client.hset(table_key(bad_version, st.Table.META), st.META_SCHEMA_VERSION, b"one")
    with open_ns(redis_uri, bad_version) as s, pytest.raises(st.StorageCorruptedError, match="not a number"):
        s.open_identity(TOKEN, b"C" * 16, "0.1")


def test_unreachable_server_is_refused_at_once_naming_it() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(st.StorageUnavailableError, match=f"redis://127.0.0.1:{port}/0 cannot be reached"):
        verify_storage(f"redis://127.0.0.1:{port}/0", "/nonexistent", TOKEN)
    assert time.monotonic() - started < 3


def test_server_gone_mid_run_keeps_the_batch_pending(tmp_path: os.PathLike) -> None:
    with redis_server(str(tmp_path)) as uri:
        s = open_ns(uri, fresh_namespace())
    try:
        s.put(st.Table.KV, b"k", b"v")
        with pytest.raises(st.StorageUnavailableError, match="cannot be written"):
            s.flush()
        assert s.has_pending() and s.get(st.Table.KV, b"k") == b"v"
    finally:
        s.close()


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_redis, "redis", None)
    with pytest.raises(st.StorageUnavailableError, match=r"pip install 'nbray\[redis\]'"):
        open_storage("redis://127.0.0.1:1/0", "/nonexistent")
