"""Where the GCS keeps the tables it must not forget (GCS process).

A storage backend holds byte values under byte keys, grouped in a few
tables. Writes are batched: ``put`` and ``delete`` only record the change,
``flush`` writes every change recorded since the last flush in one
transaction. The GCS flushes once per event-loop turn, before the replies
of that turn leave (they are corked until the end of the turn), so a reply
never tells a client about state the storage does not hold yet.

Backends: SQLite in WAL mode (the default; a file in the head's session
directory, nothing to install) and an in-memory one (no persistence, for
tests). A Redis backend only has to implement ``_read``, ``_scan``,
``_write_batch`` and ``close`` (a hash per table; a MULTI/EXEC pipeline
per batch).

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
import sqlite3
from collections.abc import Iterator

# Version of the layout of the tables below. Raise it when a table's
# encoding changes; a GCS refuses storage written with a newer version.
SCHEMA_VERSION = 1
# File name of the default SQLite storage inside the session directory.
DEFAULT_SQLITE_NAME = "gcs_storage.sqlite"


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


# Keys of the META table.
META_SCHEMA_VERSION = b"schema_version"
META_WRITER_VERSION = b"nbray_version"
META_CLUSTER_ID = b"cluster_id"
META_TOKEN_SHA256 = b"token_sha256"


# ---- pure helpers ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    kind: str  # "sqlite" or "memory"
    path: str = ""

    def describe(self) -> str:
        return f"sqlite:///{self.path.lstrip('/')}" if self.kind == "sqlite" else "memory://"


def parse_storage_uri(uri: str, session_dir: str) -> StorageLocation:
    """Where ``gcs_storage`` / ``--storage`` points.

    ``""`` is SQLite in the session directory; ``sqlite:///abs/path`` or a
    plain path is SQLite at that path (relative paths are taken from the
    current directory); ``memory://`` keeps nothing across restarts.
    Raises ValueError for any other scheme.
    """
    text = uri.strip()
    if not text:
        return StorageLocation("sqlite", os.path.join(os.path.abspath(session_dir), DEFAULT_SQLITE_NAME))
    if text == "memory://":
        return StorageLocation("memory")
    if text.startswith("sqlite://"):
        path = text[len("sqlite://"):]
        if not path.startswith("/"):
            raise ValueError(f"GCS storage {uri!r}: a SQLite URI needs an absolute path, "
                             "as in sqlite:///var/lib/nbray/gcs.sqlite")
        return StorageLocation("sqlite", os.path.normpath(path))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(f"GCS storage {uri!r}: the scheme {scheme!r} is not supported "
                         "(use sqlite:///PATH, a file path, or memory://)")
    return StorageLocation("sqlite", os.path.abspath(os.path.expanduser(text)))


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
        raw = self.get(Table.META, META_SCHEMA_VERSION)
        try:
            stored = int(raw) if raw is not None else None
        except ValueError:
            raise StorageCorruptedError(f"GCS storage {self.location}: schema version {raw!r} is not a number") from None
        writer = (self.get(Table.META, META_WRITER_VERSION) or b"").decode(errors="replace")
        check_schema_version(stored, SCHEMA_VERSION, self.location, writer)
        check_token(self.get(Table.META, META_TOKEN_SHA256), token, self.location)
        cluster_id = self.get(Table.META, META_CLUSTER_ID) or new_cluster_id
        self.put(Table.META, META_SCHEMA_VERSION, str(max(stored or 0, SCHEMA_VERSION)).encode())
        self.put(Table.META, META_WRITER_VERSION, nbray_version.encode())
        self.put(Table.META, META_TOKEN_SHA256, token_fingerprint(token))
        self.put(Table.META, META_CLUSTER_ID, cluster_id)
        self.flush()
        return cluster_id

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


def open_storage(uri: str, session_dir: str) -> GcsStorage:
    """The backend ``uri`` names (see ``parse_storage_uri``), opened and checked.

    Raises ValueError for a malformed URI and GcsStorageError when the
    storage cannot be used.
    """
    location = parse_storage_uri(uri, session_dir)
    if location.kind == "memory":
        return MemoryStorage()
    return SqliteStorage(location.path)


def verify_storage(uri: str, session_dir: str, token: bytes) -> None:
    """Open the storage and check its schema and identity, then let it go.

    Run before a head's processes start, so that a bad location fails the
    start at once with a message naming it, rather than as a GCS that exits.
    """
    location = parse_storage_uri(uri, session_dir)
    if location.kind == "memory":
        return
    with SqliteStorage(location.path) as storage:
        raw = storage.get(Table.META, META_SCHEMA_VERSION)
        stored = int(raw) if raw is not None and raw.isdigit() else None
        writer = (storage.get(Table.META, META_WRITER_VERSION) or b"").decode(errors="replace")
        check_schema_version(stored, SCHEMA_VERSION, storage.location, writer)
        check_token(storage.get(Table.META, META_TOKEN_SHA256), token, storage.location)
