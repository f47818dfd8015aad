"""Where the GCS keeps the tables it must not forget (GCS process).

A storage backend holds byte values under byte keys, grouped in a few
tables. Writes are batched: ``put`` and ``delete`` only record the change,
``flush`` writes every change recorded since the last flush in one
transaction. The GCS flushes once per event-loop turn, before the replies
of that turn leave (they are corked until the end of the turn), so a reply
never tells a client about state the storage does not hold yet.

Backends: SQLite in WAL mode (the default; a file kept by the head, see
nbray/node/head_state.py, nothing to install), Redis (storage_redis.py: a
hash per table, a MULTI/EXEC pipeline per batch; needs the ``redis``
package) and an in-memory one (no persistence, for tests). A backend
implements ``_read``, ``_scan``, ``_write_batch`` and ``close``.

Error tree (all are ``RuntimeError``s, so ``nbray start`` prints them)::

    GcsStorageError
    ├── StorageUnavailableError   the location cannot be opened or written
    ├── StorageSchemaError        written by a newer nbray
    ├── StorageCorruptedError     the file is damaged; never reset silently
    └── StorageIdentityError      the storage belongs to a cluster with another token
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator

# Version of the layout of the tables below. Raise it when a table's
# encoding changes; a GCS refuses storage written with a newer version.
SCHEMA_VERSION = 1
# File name of the default SQLite storage (in the head's state or session directory).
DEFAULT_SQLITE_NAME = "gcs_storage.sqlite"
# Redis URIs: the port, database, namespace and socket timeout when the URI omits them.
REDIS_DEFAULT_PORT = 6379
REDIS_DEFAULT_NAMESPACE = "default"
REDIS_DEFAULT_TIMEOUT_MS = 5_000
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class GcsStorageError(RuntimeError):
    """The GCS storage cannot be used."""


class StorageUnavailableError(GcsStorageError):
    """The storage location cannot be opened, created or written."""


class StorageSchemaError(GcsStorageError):
    """The storage was written by a newer nbray, with a schema this one does not know."""


class StorageCorruptedError(GcsStorageError):
    """The storage file is damaged."""


class StorageIdentityError(GcsStorageError):
    """The storage holds another cluster (its token differs from this one's)."""


class Table(enum.Enum):
    """The tables of the GCS storage (values are the names stored)."""

    META = "meta"
    NODE = "node"
    JOB = "job"
    ACTOR = "actor"
    PLACEMENT_GROUP = "placement_group"
    KV = "kv"
    # Totals of metric series (nbray/gcs/metrics.py), so counters survive a restart.
    METRICS = "metrics"


# Keys of the META table.
META_SCHEMA_VERSION = b"schema_version"
META_WRITER_VERSION = b"nbray_version"
META_CLUSTER_ID = b"cluster_id"
META_TOKEN_SHA256 = b"token_sha256"


# ---- pure helpers ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedisAddress:
    """Where a Redis storage lives, and the namespace that keeps this cluster's keys apart."""

    host: str
    port: int = REDIS_DEFAULT_PORT
    db: int = 0
    namespace: str = REDIS_DEFAULT_NAMESPACE
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    timeout_ms: int = REDIS_DEFAULT_TIMEOUT_MS

    def describe(self) -> str:
        """The URI without its credentials (it goes into messages and logs)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.namespace == REDIS_DEFAULT_NAMESPACE else f"?namespace={self.namespace}"
        return f"redis://{host}:{self.port}/{self.db}{suffix}"


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    kind: str  # "sqlite", "redis" or "memory"
    path: str = ""
    redis: RedisAddress | None = None

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.path.lstrip('/')}"
        if self.kind == "redis" and self.redis is not None:
            return self.redis.describe()
        return "memory://"


def parse_storage_uri(uri: str, session_dir: str) -> StorageLocation:
    """Where ``gcs_storage`` / ``--storage`` points.

    ``""`` is SQLite in the session directory; ``sqlite:///abs/path`` or a
    plain path is SQLite at that path (relative paths are taken from the
    current directory); ``redis://HOST[:PORT][/DB]`` is a Redis server
    (see ``parse_redis_uri``); ``memory://`` keeps nothing across restarts.
    Raises ValueError for any other scheme.
    """
    text = uri.strip()
    if not text:
        return StorageLocation("sqlite", os.path.join(os.path.abspath(session_dir), DEFAULT_SQLITE_NAME))
    if text == "memory://":
        return StorageLocation("memory")
    if text.startswith("redis://"):
        return StorageLocation("redis", redis=parse_redis_uri(text))
    if text.startswith("sqlite://"):
        path = text[len("sqlite://"):]
        if not path.startswith("/"):
            raise ValueError(f"GCS storage {uri!r}: a SQLite URI needs an absolute path, "
                             "as in sqlite:///var/lib/nbray/gcs.sqlite")
        return StorageLocation("sqlite", os.path.normpath(path))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(f"GCS storage {uri!r}: the scheme {scheme!r} is not supported "
                         "(use sqlite:///PATH, a file path, redis://HOST:PORT/DB, or memory://)")
    return StorageLocation("sqlite", os.path.abspath(os.path.expanduser(text)))


def parse_redis_uri(uri: str) -> RedisAddress:
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?namespace=NAME&timeout_ms=N]``.

    The namespace (default ``default``) prefixes every key, so clusters with
    different namespaces can share one database. Raises ValueError naming
    what is wrong.
    """
    parts = urllib.parse.urlsplit(uri.strip())
    if parts.scheme != "redis":
        raise ValueError(f"GCS storage {_redact(uri)!r}: not a redis:// URI")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"GCS storage {_redact(uri)!r}: {exc}") from None
    if not host:
        raise ValueError(f"GCS storage {_redact(uri)!r}: a Redis URI needs a host, as in redis://127.0.0.1:6379/0")
    if port is None:
        port = REDIS_DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValueError(f"GCS storage {_redact(uri)!r}: port {port} is out of range")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"GCS storage {_redact(uri)!r}: the database must be a number (redis://HOST:PORT/0), "
                         f"got {path!r}")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - {"namespace", "timeout_ms"})
    if unknown:
        raise ValueError(f"GCS storage {_redact(uri)!r}: unknown parameter(s) {unknown} "
                         "(known: namespace, timeout_ms)")
    namespace = query.get("namespace", [REDIS_DEFAULT_NAMESPACE])[-1]
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(f"GCS storage {_redact(uri)!r}: the namespace must be 1 to 64 letters, digits, "
                         f"'_', '.' or '-', got {namespace!r}")
    timeout_text = query.get("timeout_ms", [str(REDIS_DEFAULT_TIMEOUT_MS)])[-1]
    if not timeout_text.isdigit() or int(timeout_text) <= 0:
        raise ValueError(f"GCS storage {_redact(uri)!r}: timeout_ms must be a whole number of milliseconds "
                         f"above 0, got {timeout_text!r}")
    return RedisAddress(host=host, port=port, db=int(path or 0), namespace=namespace,
                        username=urllib.parse.unquote(parts.username) if parts.username else None,
                        password=urllib.parse.unquote(parts.password) if parts.password else None,
                        timeout_ms=int(timeout_text))


def _redact(uri: str) -> str:
    """``uri`` with any password replaced, for error messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", uri)


def check_schema_version(stored: int | None, supported: int, location: str, writer: str = "") -> None:
    """Refuse storage written with a newer schema; older or new storage is fine."""
    if stored is not None and stored > supported:
        by = f" by nbray {writer}" if writer else ""
        raise StorageSchemaError(
            f"GCS storage {location} was written{by} with schema version {stored}; this nbray "
            f"reads schema version {supported} at most. Start the head with that nbray version "
            "or point --storage at another location.")


def token_fingerprint(token: bytes) -> bytes:
    """What the storage remembers of the cluster token: its SHA-256, not the token."""
    return hashlib.sha256(b"nbray-cluster-token\0" + token).hexdigest().encode()


def check_token(stored: bytes | None, token: bytes, location: str) -> None:
    if stored is not None and stored != token_fingerprint(token):
        raise StorageIdentityError(
            f"GCS storage {location} belongs to a cluster with another auth token; restart the head "
            "with that cluster's token (set NBRAY_AUTH_TOKEN to it), or use another --storage")


def kv_key(ns: str, key: bytes) -> bytes:
    """One storage key for an internal-KV entry: the namespace's length, the namespace, the key."""
    raw = ns.encode()
    return len(raw).to_bytes(4, "big") + raw + key


def split_kv_key(stored: bytes) -> tuple[str, bytes]:
    """Inverse of ``kv_key``; ValueError for a key it did not make."""
    if len(stored) < 4:
        raise ValueError(f"internal-KV storage key too short: {stored!r}")
    n = int.from_bytes(stored[:4], "big")
    if 4 + n > len(stored):
        raise ValueError(f"internal-KV storage key names a namespace longer than itself: {stored!r}")
    return stored[4:4 + n].decode(), stored[4 + n:]


# ---- the interface ----------------------------------------------------------------------------------------


class GcsStorage(abc.ABC):
    """Tables of bytes; ``put``/``delete`` are batched until ``flush``."""

    def __init__(self, location: str) -> None:
        self.location = location
        # The last change of each key since the last flush (None: deleted).
        self._batch: dict[tuple[Table, bytes], bytes | None] = {}

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        self._batch[(table, key)] = value

    def delete(self, table: Table, key: bytes) -> None:
        self._batch[(table, key)] = None

    def has_pending(self) -> bool:
        return bool(self._batch)

    def flush(self) -> int:
        """Write the pending changes in one transaction; returns how many.

        Raises StorageUnavailableError when they cannot be written (they
        stay pending).
        """
        if not self._batch:
            return 0
        ops = [(table, key, value) for (table, key), value in self._batch.items()]
        self._write_batch(ops)
        self._batch.clear()
        return len(ops)

    def get(self, table: Table, key: bytes) -> bytes | None:
        if (table, key) in self._batch:
            return self._batch[(table, key)]
        return self._read(table, key)

    def scan(self, table: Table) -> dict[bytes, bytes]:
        """Every key and value of ``table``, pending changes included."""
        out = dict(self._scan(table))
        for (t, key), value in self._batch.items():
            if t is table:
                if value is None:
                    out.pop(key, None)
                else:
                    out[key] = value
        return out

    def open_identity(self, token: bytes, new_cluster_id: bytes, nbray_version: str) -> bytes:
        """Check the schema and token of this storage, record ours; returns the cluster id.

        A new storage takes ``new_cluster_id``; one written before keeps its own.
        """
        stored = self.check_identity(token)
        cluster_id = self.get(Table.META, META_CLUSTER_ID) or new_cluster_id
        self.put(Table.META, META_SCHEMA_VERSION, str(max(stored or 0, SCHEMA_VERSION)).encode())
        self.put(Table.META, META_WRITER_VERSION, nbray_version.encode())
        self.put(Table.META, META_TOKEN_SHA256, token_fingerprint(token))
        self.put(Table.META, META_CLUSTER_ID, cluster_id)
        self.flush()
        return cluster_id

    def check_identity(self, token: bytes) -> int | None:
        """Refuse a newer schema or another cluster's token; returns the stored schema version.

        Changes nothing. Raises StorageSchemaError, StorageIdentityError, or
        StorageCorruptedError when the version is not a number.
        """
        raw = self.get(Table.META, META_SCHEMA_VERSION)
        try:
            stored = int(raw) if raw is not None else None
        except ValueError:
            raise StorageCorruptedError(f"GCS storage {self.location}: schema version {raw!r} is not a number") from None
        writer = (self.get(Table.META, META_WRITER_VERSION) or b"").decode(errors="replace")
        check_schema_version(stored, SCHEMA_VERSION, self.location, writer)
        check_token(self.get(Table.META, META_TOKEN_SHA256), token, self.location)
        return stored

    @abc.abstractmethod
    def _read(self, table: Table, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def _scan(self, table: Table) -> Iterator[tuple[bytes, bytes]]: ...

    @abc.abstractmethod
    def _write_batch(self, ops: list[tuple[Table, bytes, bytes | None]]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> GcsStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryStorage(GcsStorage):
    """Keeps the tables in this process only: nothing survives a restart."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self._tables: dict[Table, dict[bytes, bytes]] = {t: {} for t in Table}

    def _read(self, table: Table, key: bytes) -> bytes | None:
        return self._tables[table].get(key)

    def _scan(self, table: Table) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._tables[table].items()))

    def _write_batch(self, ops: list[tuple[Table, bytes, bytes | None]]) -> None:
        for table, key, value in ops:
            if value is None:
                self._tables[table].pop(key, None)
            else:
                self._tables[table][key] = value

    def close(self) -> None:
        pass


_CREATE = ("CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, "
           "PRIMARY KEY (tbl, key)) WITHOUT ROWID")
_CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class SqliteStorage(GcsStorage):
    """One SQLite file in WAL mode with ``synchronous=NORMAL``.

    A commit survives the GCS process being killed (it is in the WAL before
    ``flush`` returns); the last commits before a power loss may not. A lock
    file next to the database keeps a second GCS from using it at once.
    """

    def __init__(self, path: str, *, busy_timeout_ms: int = 5_000) -> None:
        super().__init__(f"sqlite:///{path.lstrip('/')}")
        self.path = path
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StorageUnavailableError(f"GCS storage {self.location}: the directory {directory} does not exist")
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        self._lock_fd = self._take_lock(path + ".lock")
        try:
            if not existed:
                # The tables hold the cluster's state: readable by this user only
                # (SQLite gives its -wal and -shm files the same mode).
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._conn = self._connect(existed, busy_timeout_ms)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _take_lock(self, lock_path: str) -> int:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StorageUnavailableError(f"GCS storage {self.location} cannot be written: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageUnavailableError(
                f"GCS storage {self.location} is in use by another GCS (it holds {lock_path}); stop that "
                "head first, or point --storage elsewhere") from None
        return fd

    def _connect(self, existed: bool, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            if not os.access(self.path, os.W_OK):
                raise StorageUnavailableError(f"GCS storage {self.location} cannot be written (permission denied)")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._classify(exc, "cannot be opened") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if existed:
                rows = conn.execute("PRAGMA quick_check").fetchall()
                if rows != [("ok",)]:
                    detail = "; ".join(str(r[0]) for r in rows[:3])
                    raise StorageCorruptedError(
                        f"GCS storage {self.location} is corrupted ({detail}); it was not changed. Restore it "
                        "from a copy, or move it away to start the cluster with empty tables")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageUnavailableError(f"GCS storage {self.location} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_CREATE)
        except GcsStorageError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._classify(exc, "cannot be opened") from None
        return conn

    def _classify(self, exc: sqlite3.Error, what: str) -> GcsStorageError:
        name = getattr(exc, "sqlite_errorname", "")
        if name in _CORRUPT_CODES or (not name and type(exc) is sqlite3.DatabaseError):
            return StorageCorruptedError(
                f"GCS storage {self.location} is not a valid nbray storage file ({exc}); it was not changed. "
                "Restore it from a copy, or move it away to start the cluster with empty tables")
        return StorageUnavailableError(f"GCS storage {self.location} {what}: {exc}")

    def _read(self, table: Table, key: bytes) -> bytes | None:
        try:
            row = self._conn.execute("SELECT value FROM records WHERE tbl = ? AND key = ?",
                                     (table.value, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._classify(exc, "cannot be read") from None
        return bytes(row[0]) if row is not None else None

    def _scan(self, table: Table) -> Iterator[tuple[bytes, bytes]]:
        try:
            rows = self._conn.execute("SELECT key, value FROM records WHERE tbl = ? ORDER BY key",
                                      (table.value,)).fetchall()
        except sqlite3.Error as exc:
            raise self._classify(exc, "cannot be read") from None
        return ((bytes(k), bytes(v)) for k, v in rows)

    def _write_batch(self, ops: list[tuple[Table, bytes, bytes | None]]) -> None:
        puts = [(t.value, k, v) for t, k, v in ops if v is not None]
        deletes = [(t.value, k) for t, k, v in ops if v is None]
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if puts:
                    conn.executemany("INSERT OR REPLACE INTO records (tbl, key, value) VALUES (?, ?, ?)", puts)
                if deletes:
                    conn.executemany("DELETE FROM records WHERE tbl = ? AND key = ?", deletes)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._classify(exc, "cannot be written") from None

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        os.close(self._lock_fd)
        self._lock_fd = -1
