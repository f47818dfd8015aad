"""Dropped refs are drained by a timer that runs only while releases wait:
an idle process does not wake up on a period (nbray/worker/ownership.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nbray.common.config import Config
from nbray.worker.ownership import Ownership


class _Loop:
    def __init__(self) -> None:
        self.timers: list[Callable[[], None]] = []
        self.posted: list[Any] = []

    def in_loop_thread(self) -> bool:
        return True

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.timers.append(fn)

    def post(self, fn: Any, *args: Any) -> None:
        self.posted.append((fn, args))


class _Refs:
    def __init__(self) -> None:
        self.removed: list[bytes] = []

    def remove_local(self, object_id: bytes) -> list[Any]:
        self.removed.append(object_id)
        return []


def _owner() -> tuple[Ownership, _Loop, _Refs]:
    owner = Ownership()
    owner.config = Config()
    owner.lock = threading.Lock()
    loop, refs = _Loop(), _Refs()
    owner.loop = loop  # type: ignore[assignment]
    owner.refs = refs  # type: ignore[assignment]
    owner._shutdown = False
    owner._init_ownership()
    return owner, loop, refs


def _fire(loop: _Loop) -> None:
    due, loop.timers = loop.timers, []
    for fn in due:
        fn()


def test_idle_owner_stops_ticking_and_a_release_rearms_it() -> None:
    owner, loop, refs = _owner()
    owner._release_tick()  # the first tick, posted at start, finds nothing
    assert loop.timers == [], "an idle process must not re-arm the timer"
    owner.release_ref(b"a")
    owner.release_ref(b"b")
    assert len(loop.timers) == 1, "one timer for however many releases"
    _fire(loop)
    assert refs.removed == [b"a", b"b"]
    assert loop.timers == []


def test_a_release_queued_during_the_tick_keeps_the_timer_armed() -> None:
    owner, loop, refs = _owner()
    owner._release_tick()
    owner.release_ref(b"a")
    real_drain = owner._drain_releases

    def drain_then_queue() -> None:
        real_drain()
        owner.release_ref(b"late")  # dropped on another thread meanwhile

    owner._drain_releases = drain_then_queue  # type: ignore[method-assign]
    _fire(loop)
    owner._drain_releases = real_drain  # type: ignore[method-assign]
    assert len(loop.timers) == 1, "the late release must still be drained"
    _fire(loop)
    assert refs.removed == [b"a", b"late"] and loop.timers == []
