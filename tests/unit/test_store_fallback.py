"""Fallback allocation in the node's object store: objects that do not fit
in the arena live in files of their own, tracked and freed like the rest.
(The store is exercised directly: a real memfd arena and real files.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from nbray.object_store.fallback import FallbackAllocationError, FallbackFiles
from nbray.object_store.store import ObjectStore

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Any, clock: Clock) -> Iterator[ObjectStore]:
    s = ObjectStore(4 * MIB, str(tmp_path / "spill"), fallback_enabled=True, full_timeout_s=1.0, clock=clock)
    try:
        yield s
    finally:
        s.close()


def _create(store: ObjectStore, oid: bytes, size: int, client: object = "writer") -> list[tuple[Any, str]]:
    results: list[tuple[Any, str]] = []
    store.create(oid, size, owner=None, client=client, callback=lambda off, err: results.append((off, err)))
    return results


def _fill(store: ObjectStore, oid: bytes, byte: int) -> None:
    obj = store.get(oid)
    assert obj is not None
    view = store.view(obj)
    view[:] = bytes([byte]) * obj.size
    view.release()
    store.seal(oid)


def test_an_object_larger_than_the_store_gets_a_file_of_its_own(store: ObjectStore) -> None:
    oid = b"a" * 28
    assert _create(store, oid, 6 * MIB) == [(0, "")]
    path = store.fallback_path(oid)
    assert path.startswith(store.fallback_files.directory) and os.path.getsize(path) == 6 * MIB
    _fill(store, oid, 7)
    assert store.used_bytes == 0  # the arena is untouched
    assert (store.fallback_bytes, store.fallback_objects, store.fallback_objects_total) == (6 * MIB, 1, 1)
    obj = store.pin(oid, "reader")
    assert obj is not None and obj.where == "FALLBACK"
    with open(path, "rb") as f:  # what another process maps
        assert f.read(4) == b"\x07" * 4
    store.release(oid, "reader")
    assert store.free(oid)
    assert not os.path.exists(path)
    assert (store.fallback_bytes, store.fallback_objects, store.fallback_objects_total) == (0, 0, 1)


def test_a_pinned_fallback_object_outlives_free_until_released(store: ObjectStore) -> None:
    oid = b"b" * 28
    _create(store, oid, 5 * MIB)
    _fill(store, oid, 1)
    path = store.fallback_path(oid)
    assert store.pin(oid, "reader") is not None
    store.free(oid)
    assert os.path.exists(path)
    store.release(oid, "reader")
    assert not os.path.exists(path) and store.fallback_bytes == 0


def test_fallback_objects_are_never_spilled_and_arena_objects_still_are(store: ObjectStore) -> None:
    big = b"c" * 28
    _create(store, big, 5 * MIB)
    _fill(store, big, 2)
    for i in range(3):  # 3 x 2 MiB in a 4 MiB arena: the first spills
        oid = bytes([i]) * 28
        assert _create(store, oid, 2 * MIB) == [(store.get(oid).offset, "")]  # type: ignore[union-attr]
        _fill(store, oid, i)
    assert store.spilled_objects_total >= 1
    assert store.get(big).where == "FALLBACK"  # type: ignore[union-attr]
    assert not os.path.exists(os.path.join(store.spill_dir, big.hex()))


def test_an_allocation_blocked_by_pins_falls_back_after_the_full_timeout(store: ObjectStore,
                                                                          clock: Clock) -> None:
    first = b"d" * 28
    _create(store, first, 3 * MIB)
    _fill(store, first, 3)
    store.pin(first, "reader")  # cannot be spilled
    second = b"e" * 28
    results = _create(store, second, 2 * MIB)
    assert results == [] and store.has_pending()
    clock.now = 0.5
    store.expire_pending()
    assert results == []
    clock.now = 1.5
    store.expire_pending()
    assert results == [(0, "")] and store.get(second).where == "FALLBACK"  # type: ignore[union-attr]


def test_an_aborted_fallback_object_leaves_no_file(store: ObjectStore) -> None:
    oid = b"f" * 28
    _create(store, oid, 6 * MIB, client="gone")
    path = store.fallback_path(oid)
    store.release_client("gone")  # the writer disconnected before sealing
    assert store.get(oid) is None and not os.path.exists(path) and store.fallback_objects == 0


def test_close_removes_every_fallback_file(tmp_path: Any) -> None:
    s = ObjectStore(4 * MIB, str(tmp_path / "spill"), fallback_enabled=True)
    _create(s, b"g" * 28, 5 * MIB)
    directory = s.fallback_files.directory
    s.close()
    assert os.listdir(directory) == []


def test_without_fallback_an_object_larger_than_the_store_is_refused(tmp_path: Any) -> None:
    s = ObjectStore(4 * MIB, str(tmp_path / "spill"), fallback_enabled=False)
    try:
        [(offset, error)] = _create(s, b"h" * 28, 5 * MIB)
        assert offset is None and str(5 * MIB) in error and str(4 * MIB) in error
    finally:
        s.close()


def test_a_fallback_file_that_cannot_be_made_fails_the_create_with_the_reason(tmp_path: Any) -> None:
    blocker = tmp_path / "spill"
    blocker.write_text("a file where the directory should be")
    s = ObjectStore(4 * MIB, str(blocker), fallback_enabled=True)
    try:
        [(offset, error)] = _create(s, b"i" * 28, 5 * MIB)
        assert offset is None and "fallback file failed" in error
        assert s.fallback_objects == 0 and s.get(b"i" * 28) is None
    finally:
        s.close()


def test_fallback_files_reject_a_size_that_is_not_positive(tmp_path: Any) -> None:
    with pytest.raises(ValueError):
        FallbackFiles(str(tmp_path)).create(b"j" * 28, 0)


def test_fallback_files_raise_a_typed_error_when_the_directory_cannot_be_made(tmp_path: Any) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(FallbackAllocationError, match="cannot create"):
        FallbackFiles(str(tmp_path / "taken" / "fallback")).create(b"j" * 28, 10)
