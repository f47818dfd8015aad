"""The internal key-value store of the GCS (kept in memory, written through to storage)."""

from __future__ import annotations

from nbray.gcs.storage import GcsStorage, Table, kv_key, split_kv_key


class KVStore:
    def __init__(self, storage: GcsStorage | None = None) -> None:
        self._data: dict[tuple[str, bytes], bytes] = {}
        self._storage = storage
        if storage is not None:
            for stored, value in storage.scan(Table.KV).items():
                self._data[split_kv_key(stored)] = value

    def __len__(self) -> int:
        return len(self._data)

    def get(self, ns: str, key: bytes) -> bytes | None:
        return self._data.get((ns, key))

    def put(self, ns: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (ns, key)
        if k in self._data and not overwrite:
            return False
        added = k not in self._data
        self._data[k] = value
        if self._storage is not None:
            self._storage.put(Table.KV, kv_key(ns, key), value)
        return added

    def delete(self, ns: str, key: bytes, by_prefix: bool) -> int:
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
