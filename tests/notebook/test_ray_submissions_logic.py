"""The Ray backend's per-cell task tracking, interrupt cancelling and Ray Client
output parsing: the pure parts (no Ray, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from nbray.jupyter.backends.base import LogBatch
from nbray.jupyter.backends.ray_client_logs import ClientLogTap, parse_client_text
from nbray.jupyter.backends.ray_submissions import CellTasks, SubmissionHook, TrackedTask, cancel_tasks, tracked


class Ref:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class Generator:
    def __init__(self) -> None:
        self.done_ref = Ref("done")

    def completed(self) -> Ref:
        return self.done_ref


def test_a_cell_holds_only_its_own_submissions() -> None:
    cells = CellTasks(ready=lambda refs: [])
    cells.begin("cell-1")
    cells.add(TrackedTask(Ref("a"), actor_call=False))
    cells.begin("cell-1")  # the same cell tagged again (the output router re-attaching) keeps them
    cells.add(TrackedTask(Ref("b"), actor_call=True))
    cells.begin("cell-2")
    cells.add(TrackedTask(Ref("c"), actor_call=False))
    assert [t.ref.name for t in cells.take()] == ["c"]
    assert cells.take() == []


def test_finished_tasks_are_let_go_in_batches() -> None:
    finished: set[str] = set()
    asked: list[int] = []

    def ready(refs: list[Any]) -> list[Any]:
        asked.append(len(refs))
        return [r for r in refs if r.name in finished]

    cells = CellTasks(ready=ready, prune_at=4)
    cells.begin("cell")
    for i in range(3):
        cells.add(TrackedTask(Ref(str(i)), actor_call=False))
    assert asked == []  # under the threshold nothing is asked
    finished.update({"0", "1"})
    cells.add(TrackedTask(Ref("3"), actor_call=False))
    assert asked == [4]
    assert [t.ref.name for t in cells.tasks] == ["2", "3"]
    # the next prune waits for twice what was left (amortised), but never below the threshold
    for i in range(4, 6):
        cells.add(TrackedTask(Ref(str(i)), actor_call=False))
    assert asked == [4, 4]


def test_a_cell_holds_at_most_max_held_refs() -> None:
    cells = CellTasks(ready=lambda refs: [], prune_at=10**9, max_held=3)
    cells.begin("cell")
    for i in range(5):
        cells.add(TrackedTask(Ref(str(i)), actor_call=False))
    assert [t.ref.name for t in cells.take()] == ["2", "3", "4"]


def test_what_is_held_of_a_submission() -> None:
    first, second = Ref("first"), Ref("second")
    assert tracked([first, second], False, Generator).ref is first  # num_returns=2
    assert tracked([], False, Generator) is None
    assert tracked(None, False, Generator) is None  # num_returns=0
    gen = Generator()
    task = tracked(gen, True, Generator)
    assert task is not None and task.ref is gen and task.probe is gen.done_ref and task.actor_call
    plain = tracked(first, False, Generator)
    assert plain is not None and plain.probe is first


class FakeRemoteFunction:
    def _remote(self, *args: Any, **kwargs: Any) -> Any:
        return ("submitted", args, kwargs)


class FakeActorMethod:
    def _remote(self, *args: Any, **kwargs: Any) -> Any:
        return "actor call"


def test_the_hook_records_each_submission_and_passes_everything_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SubmissionHook, "_targets", lambda self: [(FakeRemoteFunction, False), (FakeActorMethod, True)])
    original = FakeRemoteFunction.__dict__["_remote"]
    recorded: list[tuple[Any, bool]] = []
    hook = SubmissionHook(ray=None, record=lambda returned, actor_call: recorded.append((returned, actor_call)))
    hook.install()
    hook.install()  # once only
    try:
        assert FakeRemoteFunction()._remote(1, num_cpus=2) == ("submitted", (1,), {"num_cpus": 2})
        assert FakeActorMethod()._remote() == "actor call"
        assert recorded == [(("submitted", (1,), {"num_cpus": 2}), False), ("actor call", True)]
        assert FakeRemoteFunction._remote.__name__ == "_remote"
    finally:
        hook.uninstall()
    assert FakeRemoteFunction.__dict__["_remote"] is original
    FakeRemoteFunction()._remote()
    assert len(recorded) == 2


def test_uninstall_leaves_a_wrapper_installed_after_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SubmissionHook, "_targets", lambda self: [(FakeRemoteFunction, False)])
    original = FakeRemoteFunction.__dict__["_remote"]
    hook = SubmissionHook(ray=None, record=lambda returned, actor_call: None)
    hook.install()

    def theirs(self: Any, *args: Any, **kwargs: Any) -> Any:
        return "theirs"

    FakeRemoteFunction._remote = theirs  # type: ignore[method-assign]
    try:
        hook.uninstall()
        assert FakeRemoteFunction.__dict__["_remote"] is theirs
    finally:
        FakeRemoteFunction._remote = original  # type: ignore[method-assign]


class FakeRay:
    """Records cancels; `stops_gently` finish on the first cancel, `gone` refuse (refs dropped)."""

    class exceptions:
        class RayError(Exception):
            pass

    def __init__(self, stops_gently: set[str], gone: set[str]) -> None:
        self.stops_gently = stops_gently
        self.gone = gone
        self.cancels: list[tuple[str, bool]] = []
        self.waits: list[tuple[int, float]] = []

    def cancel(self, ref: Ref, force: bool = False) -> None:
        if ref.name in self.gone:
            raise TypeError("No owner found for object.")
        self.cancels.append((ref.name, force))

    def wait(self, refs: list[Ref], num_returns: int, timeout: float, fetch_local: bool) -> tuple[list[Ref], list[Ref]]:
        self.waits.append((num_returns, timeout))
        ready = [r for r in refs if r.name in self.stops_gently]
        return ready, [r for r in refs if r not in ready]


def test_an_interrupt_asks_every_task_then_forces_the_stubborn_ones() -> None:
    ray = FakeRay(stops_gently={"gentle"}, gone={"gone"})
    tasks = [TrackedTask(Ref("gentle"), False), TrackedTask(Ref("stubborn"), False),
             TrackedTask(Ref("actor call"), True), TrackedTask(Ref("gone"), False)]
    forced = cancel_tasks(ray, tasks, grace_s=3.0)
    assert [t.ref.name for t in forced] == ["stubborn"]
    assert ray.cancels == [("gentle", False), ("stubborn", False), ("actor call", False), ("stubborn", True)]
    assert ray.waits == [(3, 3.0)]  # one wait for the grace period, over the tasks that were asked


def test_an_interrupt_with_nothing_to_cancel_does_not_wait() -> None:
    ray = FakeRay(stops_gently=set(), gone={"gone"})
    assert cancel_tasks(ray, [TrackedTask(Ref("gone"), False)], grace_s=3.0) == []
    assert ray.waits == []


def test_ray_client_lines_lose_rays_prefix_into_the_entry() -> None:
    msg = ("\x1b[36m(shout pid=4242)\x1b[0m task line 7\n"
           "\x1b[36m(Talker pid=17, ip=10.0.0.2)\x1b[0m from the actor\n"
           "a line of the driver itself\n")
    entries = parse_client_text(msg, is_err=True, tag="cell-3")
    assert [(e.text, e.task_name, e.pid, e.node_ip, e.is_err, e.context_tag) for e in entries] == [
        ("task line 7\n", "shout", 4242, "", True, "cell-3"),
        ("from the actor\n", "Talker", 17, "10.0.0.2", True, "cell-3"),
        ("a line of the driver itself\n", "", 0, "", True, "cell-3")]


class FakeLogClient:
    def __init__(self) -> None:
        self.printed: list[tuple[int, str]] = []

    def stdstream(self, level: int, msg: str) -> None:
        self.printed.append((level, msg))


def test_the_client_tap_hands_text_to_the_cell_running_or_lets_ray_print_it() -> None:
    log_client = FakeLogClient()
    ray_print = log_client.stdstream
    handlers: list[Any] = [None]
    batches: list[LogBatch] = []
    tap = ClientLogTap(log_client, current_tag=lambda: "cell-9", handler=lambda: handlers[0])
    tap.install()
    log_client.stdstream(-1, "(f pid=1) before the notebook attached\n")
    handlers[0] = batches.append
    log_client.stdstream(-2, "(f pid=1) oops\n")
    tap.uninstall()
    assert log_client.stdstream == ray_print
    assert log_client.printed == [(-1, "(f pid=1) before the notebook attached\n")]
    [batch] = batches
    assert [(e.text, e.is_err, e.context_tag) for e in batch.entries] == [("oops\n", True, "cell-9")]
