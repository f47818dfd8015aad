"""The event stream's hub: replay on reconnect, resync when too late or too slow, batching."""

from __future__ import annotations

import asyncio

from nbray.dashboard.events import EventHub


def drain(queue: asyncio.Queue[bytes]) -> list[bytes]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_replay_resync_and_overflow() -> None:
    async def main() -> None:
        hub = EventHub(replay_events=3, max_queued=4, flush_interval_s=0.01, max_tasks_per_event=2)
        for i in range(5):
            hub.publish("nodes", {"i": i})
        # Resuming after event 3: events 4 and 5 are replayed.
        sub, resync = hub.subscribe(last_event_id=3)
        assert not resync
        frames = drain(sub.queue)
        assert [f.split(b"\n")[0] for f in frames] == [b"id: 4", b"id: 5"]
        # Too far behind (event 1 is gone) or from the future (another server): reload.
        assert hub.subscribe(last_event_id=1)[1]
        assert hub.subscribe(last_event_id=99)[1]
        # A reader that falls behind gets one resync event instead of an unbounded queue.
        slow, _ = hub.subscribe(last_event_id=None)
        for i in range(10):
            hub.publish("nodes", {"i": i})
        frames = drain(slow.queue)
        assert slow.overflowed and len(frames) == 1 and b"event: resync" in frames[0]

    asyncio.run(main())


def test_task_changes_are_merged_and_split_into_events() -> None:
    async def main() -> None:
        hub = EventHub(replay_events=10, max_queued=10, flush_interval_s=0.01, max_tasks_per_event=2)
        sub, _ = hub.subscribe(None)
        quiet, _ = hub.subscribe(None, want_tasks=False)
        hub.task_changed([{"task_id": "a", "state": "RUNNING"}, {"task_id": "b", "state": "RUNNING"}])
        hub.task_changed([{"task_id": "a", "state": "FINISHED"}, {"task_id": "c", "state": "RUNNING"}])
        await asyncio.sleep(0.05)
        frames = drain(sub.queue)
        assert len(frames) == 2  # three tasks, two per event
        body = b"".join(frames)
        assert body.count(b'"task_id":"a"') == 1 and b'"FINISHED"' in body
        assert drain(quiet.queue) == []

    asyncio.run(main())
