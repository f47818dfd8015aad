"""The internal key-value store of the GCS (in memory)."""

from __future__ import annotations


class KVStore:
    def __init__(self) -> None:
        self._data: dict[tuple[str, bytes], bytes] = {}

    def get(self, ns: str, key: bytes) -> bytes | None:
        return self._data.get((ns, key))

    def put(self, ns: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (ns, key)
        if k in self._data and not overwrite:
            return False
        added = k not in self._data
        self._data[k] = value
        return added

    def delete(self, ns: str, key: bytes, by_prefix: bool) -> int:
        if not by_prefix:
            return 1 if self._data.pop((ns, key), None) is not None else 0
        doomed = [k for k in self._data if k[0] == ns and k[1].startswith(key)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def keys(self, ns: str, prefix: bytes) -> list[bytes]:
        return [k[1] for k in self._data if k[0] == ns and k[1].startswith(prefix)]
