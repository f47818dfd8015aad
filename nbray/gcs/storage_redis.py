"""The GCS tables in a Redis server (GCS process, and the launcher's pre-start check).

Each table is one Redis hash, ``nbray:<namespace>:<table>``, whose fields
are the table's keys; a cluster keeps every key under its namespace, so
clusters with different namespaces share a database without seeing each
other (two clusters on one namespace are told apart by the token
fingerprint in the meta table, and the second is refused). A batch is
one MULTI/EXEC transaction: Redis applies all of it or none of it.

Durability is the server's: with ``appendonly yes`` and ``appendfsync
everysec`` a commit survives a Redis crash but for the last second; the
GCS itself may be killed at any moment. Use an eviction policy of
``noeviction``: a Redis that evicts keys loses cluster state silently.

The ``redis`` package is imported when this module is, which happens
only for a ``redis://`` storage URI (storage_open.open_storage).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nbray.gcs.storage import (
    META_SCHEMA_VERSION,
    GcsStorage,
    GcsStorageError,
    RedisAddress,
    StorageCorruptedError,
    StorageUnavailableError,
    Table,
)

try:
    import redis
    import redis.backoff
    import redis.exceptions
    import redis.retry
except ImportError:  # reported when a redis:// storage is opened, with how to install it
    redis = None  # type: ignore[assignment]

KEY_PREFIX = "nbray"
# A command that fails on a broken connection is sent once more on a new one, at once (an
# idle connection the server closed); a server that cannot be reached fails the start at once.
CONNECTION_RETRIES = 1
# Fields fetched per HSCAN round trip when a table is read whole.
SCAN_PAGE_FIELDS = 1_000


def table_key(namespace: str, table: Table) -> str:
    """The Redis key of one table's hash."""
    return f"{KEY_PREFIX}:{namespace}:{table.value}"


def damaged_tables(types: dict[Table, str], meta_has_schema: bool) -> list[str]:
    """What is wrong with the keys of a namespace (empty when nothing).

    ``types`` is the Redis type of each table's key ("none" when absent).
    A table key that is not a hash, or tables present without the meta
    record that every write of a GCS starts with, mean the keys were
    changed by something else than a GCS.
    """
    problems = [f"{table.value} is a Redis {kind}, not a hash" for table, kind in types.items()
                if kind not in ("hash", "none")]
    present = [t for t, kind in types.items() if kind == "hash" and t is not Table.META]
    if present and not meta_has_schema:
        problems.append("tables " + ", ".join(t.value for t in present) + " exist without a schema version")
    return problems


class RedisStorage(GcsStorage):
    """The tables of one namespace of one Redis database."""

    def __init__(self, address: RedisAddress) -> None:
        super().__init__(address.describe())
        if redis is None:
            raise StorageUnavailableError(
                f"GCS storage {self.location} needs the redis package: pip install 'nbray[redis]'")
        self.address = address
        self._keys = {table: table_key(address.namespace, table) for table in Table}
        timeout_s = address.timeout_ms / 1000
        self._client: Any = redis.Redis(
            host=address.host, port=address.port, db=address.db, username=address.username,
            password=address.password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), CONNECTION_RETRIES))
        try:
            try:
                self._client.ping()
            except redis.exceptions.RedisError as exc:
                raise self._classify(exc, "cannot be reached") from None
            self._check_layout()
        except BaseException:
            self._client.close()
            raise

    def _check_layout(self) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for table in Table:
                pipe.type(self._keys[table])
            kinds = pipe.execute()
            types = {table: _text(kind) for table, kind in zip(Table, kinds, strict=True)}
            has_schema = types[Table.META] == "hash" and bool(
                self._client.hexists(self._keys[Table.META], META_SCHEMA_VERSION))
        except redis.exceptions.RedisError as exc:
            raise self._classify(exc, "cannot be reached") from None
        problems = damaged_tables(types, has_schema)
        if problems:
            raise StorageCorruptedError(
                f"GCS storage {self.location} is damaged ({'; '.join(problems)}); it was not changed. Restore "
                f"the keys {KEY_PREFIX}:{self.address.namespace}:* from a backup, or use another namespace "
                "(?namespace=NAME) to start the cluster with empty tables")

    def _classify(self, exc: Exception, what: str) -> GcsStorageError:
        if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("WRONGTYPE"):
            return StorageCorruptedError(f"GCS storage {self.location} is damaged: {exc}")
        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
            return StorageUnavailableError(f"GCS storage {self.location} refused the credentials: {exc}")
        return StorageUnavailableError(f"GCS storage {self.location} {what}: {exc}")

    def _read(self, table: Table, key: bytes) -> bytes | None:
        try:
            value = self._client.hget(self._keys[table], key)
        except redis.exceptions.RedisError as exc:
            raise self._classify(exc, "cannot be read") from None
        return bytes(value) if value is not None else None

    def _scan(self, table: Table) -> Iterator[tuple[bytes, bytes]]:
        try:
            # HSCAN rather than HGETALL: a large table does not block the server in one command.
            rows = dict(self._client.hscan_iter(self._keys[table], count=SCAN_PAGE_FIELDS))
        except redis.exceptions.RedisError as exc:
            raise self._classify(exc, "cannot be read") from None
        return ((bytes(k), bytes(v)) for k, v in sorted(rows.items()))

    def _write_batch(self, ops: list[tuple[Table, bytes, bytes | None]]) -> None:
        puts: dict[Table, dict[bytes, bytes]] = {}
        deletes: dict[Table, list[bytes]] = {}
        for table, key, value in ops:
            if value is None:
                deletes.setdefault(table, []).append(key)
            else:
                puts.setdefault(table, {})[key] = value
        try:
            pipe = self._client.pipeline(transaction=True)
            for table, mapping in puts.items():
                pipe.hset(self._keys[table], mapping=mapping)
            for table, keys in deletes.items():
                pipe.hdel(self._keys[table], *keys)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._classify(exc, "cannot be written") from None

    def close(self) -> None:
        self._client.close()


def _text(kind: bytes | str) -> str:
    return kind.decode() if isinstance(kind, bytes) else str(kind)
