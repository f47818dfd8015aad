"""The internal key-value store of the GCS (kept in memory, written through to storage)."""

from __future__ import annotations

import collections

from nbray.gcs.storage import GcsStorage, Table, kv_key, split_kv_key

# Replies remembered for resent puts and deletes (by request id), oldest
# forgotten first: a resend comes within a call's deadline, long before
# this many other writes.
REMEMBERED_REQUESTS = 10_000


class KVStore:
    def __init__(self, storage: GcsStorage | None = None) -> None:
        self._data: dict[tuple[str, bytes], bytes] = {}
        self._storage = storage
        self._answered: collections.OrderedDict[bytes, bool | int] = collections.OrderedDict()
        if storage is not None:
            for stored, value in storage.scan(Table.KV).items():
                self._data[split_kv_key(stored)] = value

    def __len__(self) -> int:
        return len(self._data)

    def get(self, ns: str, key: bytes) -> bytes | None:
        return self._data.get((ns, key))

    def _remember(self, request_id: bytes, answer: bool | int) -> None:
        if request_id:
            self._answered[request_id] = answer
            while len(self._answered) > REMEMBERED_REQUESTS:
                self._answered.popitem(last=False)

    def put(self, ns: str, key: bytes, value: bytes, overwrite: bool, request_id: bytes = b"") -> bool:
        """True when the key was added. A resend (same non-empty
        `request_id`) changes nothing and gets the first answer."""
        if request_id and request_id in self._answered:
            return bool(self._answered[request_id])
        added = self._put(ns, key, value, overwrite)
        self._remember(request_id, added)
        return added

    def _put(self, ns: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (ns, key)
        if k in self._data and not overwrite:
            return False
        added = k not in self._data
        self._data[k] = value
        if self._storage is not None:
            self._storage.put(Table.KV, kv_key(ns, key), value)
        return added

    def delete(self, ns: str, key: bytes, by_prefix: bool, request_id: bytes = b"") -> int:
        """Number of keys deleted. A resend (same non-empty `request_id`)
        gets the first answer (a later put of the key is not undone)."""
        if request_id and request_id in self._answered:
            return int(self._answered[request_id])
        deleted = self._delete(ns, key, by_prefix)
        self._remember(request_id, deleted)
        return deleted

    def _delete(self, ns: str, key: bytes, by_prefix: bool) -> int:
        if not by_prefix:
            doomed = [(ns, key)] if (ns, key) in self._data else []
        else:
            doomed = [k for k in self._data if k[0] == ns and k[1].startswith(key)]
        for k in doomed:
            del self._data[k]
            if self._storage is not None:
                self._storage.delete(Table.KV, kv_key(*k))
        return len(doomed)

    def keys(self, ns: str, prefix: bytes) -> list[bytes]:
        return [k[1] for k in self._data if k[0] == ns and k[1].startswith(prefix)]
