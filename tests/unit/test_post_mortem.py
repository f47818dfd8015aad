"""The pure parts of post-mortem debugging: the owner's bounded record of failed
tasks (nbray.worker.failed_tasks) and rebuilding the call (nbray.jupyter.debug)."""

from __future__ import annotations

from typing import Any

import pytest

from nbray.common.serialization import deserialize, loads_function, serialize
from nbray.jupyter import debug
from nbray.jupyter.debug import CannotDebug
from nbray.protocol import common_pb2
from nbray.worker import failed_tasks
from nbray.worker.failed_tasks import FailedTaskLog, RefArgument


def _spec(task_id: bytes, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
          ref_args: list[tuple[int, str, bytes, bytes | None]] = (),  # type: ignore[assignment]
          actor: bool = False) -> common_pb2.TaskSpec:
    spec = common_pb2.TaskSpec(task_id=task_id, name="f", args_pickle=serialize((args, kwargs or {})).to_bytes(),
                               type=common_pb2.ACTOR_TASK if actor else common_pb2.NORMAL_TASK)
    for position, keyword, oid, inline in ref_args:
        ra = spec.ref_args.add(position=position, keyword=keyword)
        ra.ref.object_id = oid
        if inline is not None:
            ra.has_inline_value = True
            ra.inline_value.data = inline
    return spec


def test_the_log_keeps_the_last_tasks_and_finds_them_by_prefix() -> None:
    log = FailedTaskLog(max_tasks=3)
    for i in range(5):
        log.add(failed_tasks.record_of(_spec(bytes([i]) * 24), b"body"))
    assert [t.task_id[0] for t in log.all()] == [2, 3, 4]
    latest = log.latest()
    assert latest is not None and latest.task_id == bytes([4]) * 24
    assert log.find((bytes([3]) * 24).hex()[:8]) is log.all()[1]
    assert log.find((bytes([0]) * 24).hex()) is None  # forgotten
    assert log.find("") is None


def test_large_arguments_are_dropped_with_the_reason() -> None:
    spec = _spec(b"\x01" * 24, args=(b"x" * 5000,), ref_args=[(1, "", b"\x02" * 28, serialize(3).to_bytes())])
    kept = failed_tasks.record_of(spec, b"body", max_argument_bytes=10_000)
    assert kept.args_pickle is not None and kept.args_dropped_reason == ""
    dropped = failed_tasks.record_of(spec, b"body", max_argument_bytes=1000)
    assert dropped.args_pickle is None and all(r.inline_value is None for r in dropped.ref_args)
    assert "more than the 1000 bytes" in dropped.args_dropped_reason
    with pytest.raises(CannotDebug, match="cannot re-run f: the arguments took"):
        debug.rebuild_call(dropped, loads_function, deserialize, lambda ref: None)


def _body(fn: Any) -> bytes:
    from nbray.common.serialization import dumps_function_with_modules

    return dumps_function_with_modules(fn)[0]


def add(a: int, b: int, *, c: int = 0) -> int:
    return a + b + c


def test_rebuild_places_inline_fetched_and_keyword_arguments() -> None:
    spec = _spec(b"\x01" * 24, args=(None, None), kwargs={"c": None},
                 ref_args=[(0, "", b"\x0a" * 28, serialize(1).to_bytes()), (1, "", b"\x0b" * 28, None),
                           (-1, "c", b"\x0c" * 28, None)])
    record = failed_tasks.record_of(spec, _body(add))
    fetched = {b"\x0b" * 28: 20, b"\x0c" * 28: 300}
    fn, args, kwargs = debug.rebuild_call(record, loads_function, deserialize,
                                          lambda ref: fetched[ref.object_id])
    assert fn(*args, **kwargs) == 321


def test_every_gone_argument_is_named() -> None:
    spec = _spec(b"\x01" * 24, args=(None, None), kwargs={"c": None},
                 ref_args=[(0, "", b"\x0a" * 28, None), (1, "", b"\x0b" * 28, serialize(2).to_bytes()),
                           (-1, "c", b"\x0c" * 28, None)])
    record = failed_tasks.record_of(spec, _body(add))

    def fetch(ref: RefArgument) -> Any:
        raise debug._Gone("is gone: freed")

    with pytest.raises(CannotDebug) as info:
        debug.rebuild_call(record, loads_function, deserialize, fetch)
    text = str(info.value)
    assert "argument 0 (ObjectRef 0a0a" in text and "keyword argument 'c' (ObjectRef 0c0c" in text
    assert "argument 1 " not in text  # inlined: still there


@pytest.mark.parametrize("line, expected", [("debug", None), ("debug ABCDEF12", "abcdef12"), ("  debug  0a1b ", "0a1b")])
def test_parse_line(line: str, expected: str | None) -> None:
    assert debug.parse_line(line) == expected


@pytest.mark.parametrize("line", ["debug a b", "debug --help", "debug xyz!", "debug ab"])
def test_parse_line_refuses(line: str) -> None:
    with pytest.raises(CannotDebug):
        debug.parse_line(line)


def test_choose_explains_what_it_cannot_debug() -> None:
    log = FailedTaskLog()
    with pytest.raises(CannotDebug, match="has failed"):
        debug.choose(log, None)
    log.add(failed_tasks.record_of(_spec(b"\x05" * 24, actor=True), b""))
    with pytest.raises(CannotDebug, match="actor method"):
        debug.choose(log, None)
    with pytest.raises(CannotDebug, match="no failed task 0606"):
        debug.choose(log, "0606")
    assert debug.hint_line(b"\x05" * 24, is_latest=True).endswith("%nbray debug")
    assert debug.hint_line(b"\x05" * 24, is_latest=False).endswith("%nbray debug " + "05" * 24)
