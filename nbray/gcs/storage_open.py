"""Opening the GCS storage a URI names (``storage.parse_storage_uri``).

Kept apart from ``storage`` so that the Redis backend, which builds on
``storage``, is imported only here and only for a ``redis://`` URI.
"""

from __future__ import annotations

from nbray.gcs.storage import GcsStorage, MemoryStorage, SqliteStorage, parse_storage_uri


def open_storage(uri: str, session_dir: str) -> GcsStorage:
    """The backend ``uri`` names (see ``parse_storage_uri``), opened and checked.

    Raises ValueError for a malformed URI and GcsStorageError when the
    storage cannot be used (StorageUnavailableError also when a redis://
    URI is given and the ``redis`` package is missing).
    """
    location = parse_storage_uri(uri, session_dir)
    if location.kind == "memory":
        return MemoryStorage()
    if location.kind == "redis":
        assert location.redis is not None
        # Imported here: the redis package is needed only by clusters that use it.
        from nbray.gcs.storage_redis import RedisStorage

        return RedisStorage(location.redis)
    return SqliteStorage(location.path)


def verify_storage(uri: str, session_dir: str, token: bytes) -> None:
    """Open the storage and check its schema and identity, then let it go.

    Run before a head's processes start, so that a bad location fails the
    start at once with a message naming it, rather than as a GCS that exits.
    """
    if parse_storage_uri(uri, session_dir).kind == "memory":
        return
    with open_storage(uri, session_dir) as storage:
        storage.check_identity(token)
