"""Remote tracebacks: captured as frames in one process, rendered in another
with the reader's sources and notebook cell names (pure logic, no cluster)."""

from __future__ import annotations

import os
import pickle
import sys
import traceback

import pytest

from nbray.common import remote_traceback as rt

HERE = os.path.abspath(__file__)


def _raise_value_error(x: int) -> None:
    y = x + 1
    raise ValueError(f"bad {y}")


def _raise_chained() -> None:
    try:
        _raise_value_error(1)
    except ValueError as exc:
        raise KeyError("outer") from exc


def _raise_during_handling() -> None:
    try:
        {}["missing"]
    except KeyError:
        _raise_value_error(2)


def _recurse(n: int) -> None:
    if n == 0:
        raise RecursionError("deep enough")
    _recurse(n - 1)


def _caught(fn: object, *args: object) -> BaseException:
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as exc:  # noqa: B036 - the test wants whatever was raised
        return exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize("raiser", [_raise_chained, _raise_during_handling, lambda: _recurse(12)],
                         ids=["cause", "context", "recursion"])
def test_render_matches_what_python_prints(raiser: object) -> None:
    exc = _caught(raiser)
    captured = rt.capture(exc)
    assert captured is not None
    assert rt.render(captured) == "".join(traceback.format_exception(exc))


def test_captured_frames_survive_pickling() -> None:
    captured = rt.capture(_caught(_raise_chained))
    assert pickle.loads(pickle.dumps(captured)) == captured


def test_frames_under_the_skipped_prefix_are_left_out() -> None:
    exc = _caught(_raise_value_error, 1)
    assert any(f.filename == HERE for e in rt.capture(exc) or () for f in e.frames)
    captured = rt.capture(exc, skip_prefix=os.path.dirname(HERE))
    assert captured is not None
    assert [f for e in captured for f in e.frames] == []
    assert rt.render(captured) == "ValueError: bad 2\n"


def _frame(filename: str, lineno: int, name: str = "f", line: str = "") -> rt.RemoteFrame:
    return rt.RemoteFrame(filename, lineno, name, line)


def _one(*frames: rt.RemoteFrame) -> rt.RemoteTraceback:
    return (rt.RemoteException(tuple(frames), "ValueError: boom\n"),)


def test_a_missing_source_line_is_filled_in_by_the_reader() -> None:
    tb = _one(_frame("/only/on/the/driver.py", 7, "work"))
    lookups: list[tuple[str, int]] = []

    def source_line(filename: str, lineno: int) -> str:
        lookups.append((filename, lineno))
        return "    total = compute(x)"

    text = rt.render(tb, source_line=source_line, cell_label=lambda _: None)
    assert lookups == [("/only/on/the/driver.py", 7)]
    assert text == ('Traceback (most recent call last):\n'
                    '  File "/only/on/the/driver.py", line 7, in work\n'
                    '    total = compute(x)\n'
                    'ValueError: boom\n')


def test_a_captured_source_line_is_kept() -> None:
    tb = _one(_frame("/w.py", 3, line="    raise ValueError('boom')"))
    text = rt.render(tb, source_line=lambda f, n: "    something else", cell_label=lambda _: None)
    assert "raise ValueError('boom')" in text and "something else" not in text


def test_without_any_source_only_the_location_is_shown() -> None:
    text = rt.render(_one(_frame("/gone.py", 3)), source_line=lambda f, n: "", cell_label=lambda _: None)
    assert text == 'Traceback (most recent call last):\n  File "/gone.py", line 3, in f\nValueError: boom\n'


def test_a_notebook_cell_is_named_like_ipython_names_it() -> None:
    cell = "/tmp/ipykernel_1/123456.py"
    tb = _one(_frame(cell, 3, "work"), _frame(cell, 1, "<module>"))
    text = rt.render(tb, source_line=lambda f, n: f"line {n} of the cell",
                     cell_label=lambda f: "In[5]" if f == cell else None)
    assert text == ("Traceback (most recent call last):\n"
                    "  Cell In[5], line 3, in work\n"
                    "    line 3 of the cell\n"
                    "  Cell In[5], line 1\n"
                    "    line 1 of the cell\n"
                    "ValueError: boom\n")


def test_repeated_frames_are_folded() -> None:
    frames = [_frame("/r.py", 2, "again", "again()")] * 6
    text = rt.render(_one(*frames), cell_label=lambda _: None)
    assert text.count("again()") == rt.REPEATED_FRAMES_SHOWN
    assert "[Previous line repeated 3 more times]" in text


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are new in Python 3.11")
def test_exception_groups_are_not_captured() -> None:
    group = BaseExceptionGroup("several", [ValueError("a"), KeyError("b")])  # noqa: F821
    assert rt.capture(group) is None


def test_outside_ipython_no_file_is_a_cell() -> None:
    if "IPython" in sys.modules:
        from IPython import get_ipython

        assert get_ipython() is None
    assert rt.notebook_cell_label(HERE) is None
