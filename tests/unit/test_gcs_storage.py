"""GCS storage: the backend interface, SQLite round trips, and refusing bad storage."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator

import pytest

from nbray.gcs import storage as st
from nbray.gcs.kv import KVStore
from nbray.gcs.persistence import (
    TableWriter,
    decode_actor_record,
    encode_actor_record,
    load_tables,
    next_job_number,
)
from nbray.gcs.storage_open import open_storage, verify_storage
from nbray.protocol import common_pb2, gcs_pb2
from tests.redis_server import redis_server

TOKEN = b"t" * 32


@pytest.fixture(scope="module")
def redis_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as uri:
        yield uri


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: os.PathLike) -> Iterator[st.GcsStorage]:
    if request.param == "memory":
        s: st.GcsStorage = st.MemoryStorage()
    elif request.param == "sqlite":
        s = st.SqliteStorage(os.path.join(tmp_path, "gcs.sqlite"))
    else:  # a namespace of its own per test: the server is shared by the module
        uri = f"{request.getfixturevalue('redis_uri')}?namespace=t{os.urandom(6).hex()}"
        s = open_storage(uri, str(tmp_path))
    try:
        yield s
    finally:
        s.close()


# ---- pure helpers -------------------------------------------------------------------------------


def test_parse_storage_uri_forms(tmp_path: os.PathLike) -> None:
    session = str(tmp_path)
    default = st.parse_storage_uri("", session)
    assert default == st.StorageLocation("sqlite", os.path.join(session, st.DEFAULT_SQLITE_NAME))
    assert st.parse_storage_uri("sqlite:///var/x/gcs.db", session) == st.StorageLocation("sqlite", "/var/x/gcs.db")
    assert st.parse_storage_uri("/a/b.db", session).path == "/a/b.db"
    assert st.parse_storage_uri("rel.db", session).path == os.path.abspath("rel.db")
    assert st.parse_storage_uri("memory://", session).kind == "memory"
    with pytest.raises(ValueError, match="absolute path"):
        st.parse_storage_uri("sqlite://relative.db", session)
    assert st.parse_storage_uri("redis://host:6379", session).kind == "redis"
    with pytest.raises(ValueError, match="'postgres' is not supported"):
        st.parse_storage_uri("postgres://host:5432", session)


def test_kv_key_round_trip_keeps_namespaces_apart() -> None:
    for ns, key in [("", b""), ("fun", b"abc"), ("a\x00b", b"\x00\xff"), ("ns", b"ns")]:
        assert st.split_kv_key(st.kv_key(ns, key)) == (ns, key)
    assert st.kv_key("ab", b"c") != st.kv_key("a", b"bc")
    with pytest.raises(ValueError):
        st.split_kv_key(b"\x00\x00")
    with pytest.raises(ValueError):
        st.split_kv_key(b"\x00\x00\x00\x09abc")


def test_schema_version_check_refuses_newer_only() -> None:
    st.check_schema_version(None, 1, "loc")
    st.check_schema_version(1, 1, "loc")
    st.check_schema_version(0, 1, "loc")
    with pytest.raises(st.StorageSchemaError) as err:
        st.check_schema_version(7, 1, "sqlite:///x.db", writer="9.9")
    text = str(err.value)
    assert "schema version 7" in text and "schema version 1" in text
    assert "9.9" in text and "sqlite:///x.db" in text


def test_token_fingerprint_is_not_the_token_and_checks() -> None:
    fp = st.token_fingerprint(TOKEN)
    assert TOKEN not in fp and len(fp) == 64
    st.check_token(None, TOKEN, "loc")
    st.check_token(fp, TOKEN, "loc")
    with pytest.raises(st.StorageIdentityError, match="another auth token"):
        st.check_token(fp, b"other", "loc")


def test_actor_record_round_trip_and_damage() -> None:
    info = gcs_pb2.ActorInfo(actor_id=b"A" * 16, name="svc", namespace="ns", state=gcs_pb2.ActorInfo.ALIVE)
    info.address.worker_id = b"W" * 16
    spec = common_pb2.TaskSpec(actor_id=b"A" * 16)
    data = encode_actor_record(info, spec, detached=True)
    got_info, got_spec, detached = decode_actor_record(data)
    assert got_info == info and got_spec == spec and detached
    assert decode_actor_record(encode_actor_record(info, spec, detached=False))[2] is False
    for bad in (b"", data[:-1], data + b"x", b"\xff\xff\xff\xff" + data[4:]):
        with pytest.raises(ValueError):
            decode_actor_record(bad)


def test_next_job_number() -> None:
    assert next_job_number([]) == 1
    jobs = [gcs_pb2.JobInfo(job_id=(n).to_bytes(4, "big")) for n in (3, 1, 7)]
    assert next_job_number(jobs) == 8


# ---- the interface, on every backend -----------------------------------------------------------------


def test_batched_writes_visible_before_and_after_flush(backend: st.GcsStorage) -> None:
    backend.put(st.Table.KV, b"k1", b"v1")
    backend.put(st.Table.KV, b"k2", b"v2")
    backend.put(st.Table.JOB, b"k1", b"job")
    assert backend.has_pending()
    assert backend.get(st.Table.KV, b"k1") == b"v1"  # read through the pending batch
    assert backend.flush() == 3
    assert not backend.has_pending() and backend.flush() == 0
    backend.delete(st.Table.KV, b"k1")
    backend.put(st.Table.KV, b"k2", b"v2b")
    assert backend.scan(st.Table.KV) == {b"k2": b"v2b"}
    backend.flush()
    assert backend.get(st.Table.KV, b"k1") is None
    assert backend.scan(st.Table.KV) == {b"k2": b"v2b"}
    assert backend.scan(st.Table.JOB) == {b"k1": b"job"}  # tables are apart


def test_last_change_of_a_key_in_a_batch_wins(backend: st.GcsStorage) -> None:
    backend.put(st.Table.PLACEMENT_GROUP, b"pg", b"created")
    backend.put(st.Table.PLACEMENT_GROUP, b"pg", b"removed")
    backend.put(st.Table.ACTOR, b"gone", b"x")
    backend.delete(st.Table.ACTOR, b"gone")
    assert backend.flush() == 2
    assert backend.scan(st.Table.PLACEMENT_GROUP) == {b"pg": b"removed"}
    assert backend.scan(st.Table.ACTOR) == {}


def test_identity_keeps_cluster_id_and_refuses_other_token(backend: st.GcsStorage) -> None:
    first = backend.open_identity(TOKEN, b"C1" * 8, "0.1")
    assert first == b"C1" * 8
    assert backend.open_identity(TOKEN, b"C2" * 8, "0.1") == first  # a restart keeps the id
    with pytest.raises(st.StorageIdentityError):
        backend.open_identity(b"x" * 32, b"C3" * 8, "0.1")


def test_kv_store_writes_through_and_reloads(backend: st.GcsStorage) -> None:
    kv = KVStore(backend)
    assert kv.put("ns", b"a", b"1", overwrite=False)
    assert not kv.put("ns", b"a", b"2", overwrite=False)
    kv.put("ns", b"ab", b"3", overwrite=True)
    kv.put("other", b"a", b"4", overwrite=True)
    kv.put("ns", b"zz", b"5", overwrite=True)
    backend.flush()
    assert kv.delete("ns", b"a", by_prefix=True) == 2
    backend.flush()
    again = KVStore(backend)
    assert again.get("ns", b"zz") == b"5" and again.get("other", b"a") == b"4"
    assert again.get("ns", b"a") is None and again.get("ns", b"ab") is None
    assert sorted(again.keys("ns", b"")) == [b"zz"]


def test_table_writer_stores_published_records(backend: st.GcsStorage) -> None:
    spec = common_pb2.TaskSpec(actor_id=b"A" * 16)
    writer = TableWriter(backend, lambda actor_id: (spec, True) if actor_id == b"A" * 16 else None)
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.ACTOR, actor=gcs_pb2.ActorInfo(actor_id=b"A" * 16)))
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.ACTOR, actor=gcs_pb2.ActorInfo(actor_id=b"B" * 16)))
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=gcs_pb2.NodeInfo(node_id=b"N")))
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.JOB, job=gcs_pb2.JobInfo(job_id=b"\0\0\0\1")))
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.PLACEMENT_GROUP,
                                           placement_group=gcs_pb2.PlacementGroupInfo(placement_group_id=b"P")))
    writer.on_published(gcs_pb2.PubMessage(channel=gcs_pb2.LOGS))  # not a table: ignored
    backend.flush()
    loaded = load_tables(backend)
    assert loaded.counts() == {"nodes": 1, "jobs": 1, "actors": 1, "placement_groups": 1}
    assert loaded.actors[0][0].actor_id == b"A" * 16 and loaded.actors[0][2] is True
    writer.forget_placement_group(b"P")
    backend.flush()
    assert load_tables(backend).placement_groups == []


# ---- SQLite specifics -------------------------------------------------------------------------------------


def test_sqlite_survives_reopen_in_wal_mode(tmp_path: os.PathLike) -> None:
    path = os.path.join(tmp_path, "gcs.sqlite")
    with st.SqliteStorage(path) as s:
        s.open_identity(TOKEN, b"C" * 16, "0.1")
        s.put(st.Table.KV, st.kv_key("ns", b"k"), b"v")
        s.flush()
    assert os.stat(path).st_mode & 0o777 == 0o600
    with st.SqliteStorage(path) as s:
        assert s.get(st.Table.KV, st.kv_key("ns", b"k")) == b"v"
        assert s.open_identity(TOKEN, b"D" * 16, "0.1") == b"C" * 16
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_sqlite_second_opener_is_refused_while_the_first_holds_it(tmp_path: os.PathLike) -> None:
    path = os.path.join(tmp_path, "gcs.sqlite")
    with st.SqliteStorage(path), pytest.raises(st.StorageUnavailableError, match="in use by another GCS"):
        st.SqliteStorage(path)
    st.SqliteStorage(path).close()  # free again once closed


def test_sqlite_unusable_directory_is_named(tmp_path: os.PathLike) -> None:
    not_a_dir = os.path.join(tmp_path, "file")
    open(not_a_dir, "w").close()
    for path in (os.path.join(tmp_path, "missing", "gcs.sqlite"), os.path.join(not_a_dir, "gcs.sqlite")):
        with pytest.raises(st.StorageUnavailableError) as err:
            open_storage(path, str(tmp_path))
        assert os.path.dirname(path) in str(err.value)


def test_sqlite_newer_schema_is_refused_with_both_versions(tmp_path: os.PathLike) -> None:
    path = os.path.join(tmp_path, "gcs.sqlite")
    with st.SqliteStorage(path) as s:
        s.put(st.Table.META, st.META_SCHEMA_VERSION, str(st.SCHEMA_VERSION + 1).encode())
        s.put(st.Table.META, st.META_WRITER_VERSION, b"99.0")
        s.flush()
    with st.SqliteStorage(path) as s, pytest.raises(st.StorageSchemaError) as err:
        s.open_identity(TOKEN, b"C" * 16, "0.1")
    text = str(err.value)
    assert f"schema version {st.SCHEMA_VERSION + 1}" in text and f"schema version {st.SCHEMA_VERSION}" in text
    assert "99.0" in text and path.lstrip("/") in text
    with pytest.raises(st.StorageSchemaError):
        verify_storage(path, str(tmp_path), TOKEN)


def test_sqlite_file_that_is_not_a_database_is_reported_untouched(tmp_path: os.PathLike) -> None:
    path = os.path.join(tmp_path, "gcs.sqlite")
    garbage = b"this is not sqlite at all\n" * 400
    with open(path, "wb") as f:
        f.write(garbage)
    with pytest.raises(st.StorageCorruptedError, match="not a valid nbray storage file"):
        st.SqliteStorage(path)
    with open(path, "rb") as f:
        assert f.read() == garbage  # never reset


def test_sqlite_damaged_pages_are_detected(tmp_path: os.PathLike) -> None:
    path = os.path.join(tmp_path, "gcs.sqlite")
    with st.SqliteStorage(path) as s:
        for i in range(2000):
            s.put(st.Table.KV, st.kv_key("ns", b"key%05d" % i), b"v" * 200)
        s.flush()
    conn = sqlite3.connect(path)  # fold the WAL into the main file, then damage it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(st.StorageCorruptedError), st.SqliteStorage(path) as s:
        load_tables(s)
        KVStore(s)
    with open(path, "rb") as f:
        assert f.read() == before


def test_damaged_record_is_reported_with_its_table(backend: st.GcsStorage) -> None:
    backend.put(st.Table.ACTOR, b"\x01\x02", b"garbage")
    backend.flush()
    with pytest.raises(st.StorageCorruptedError, match="actor record 0102"):
        load_tables(backend)
