"""Task errors of any shape cross processes: exceptions whose constructor
takes other arguments than one message, none, keyword-only ones, or that
cannot be pickled or unpickled at all; and pickled functions keep their
file name whatever cloudpickle's code reduction does with it."""

from __future__ import annotations

import pickle
import threading
import types
from typing import Any

import pytest

from nbray.common.remote_traceback import capture
from nbray.common.serialization import dumps, dumps_exception, filename_keeping_reducer
from nbray.exceptions import RayTaskError, UnserializableException, _rebuild_task_error

# ---- exception shapes ---------------------------------------------------------------------------------


class TwoArgs(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class NoArgs(Exception):
    def __init__(self) -> None:
        super().__init__("always the same")
        self.extra = "kept"


class KeywordOnly(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__()
        self.code = code


class NeedsNew(Exception):
    def __new__(cls, code: int) -> NeedsNew:
        self = super().__new__(cls, code)
        self.code = code
        return self


class OddOSError(OSError):
    def __init__(self, path: str) -> None:
        super().__init__(2, "no such thing", path)
        self.path = path


class HoldsALock(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def _refuse_to_load() -> None:
    raise RuntimeError("this exception does not load here")


class FailsToLoad(Exception):
    def __reduce__(self) -> Any:
        return _refuse_to_load, ()


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: B036 - the test wants whatever was raised
        return caught


def _task_error(exc: BaseException) -> RayTaskError:
    exc = _raised(exc)
    return RayTaskError("work", "Traceback text\n", exc, remote_traceback=capture(exc))


ODD_SHAPES = [
    (lambda: TwoArgs(7, "bad"), {"code": 7, "detail": "bad"}, ("7: bad",)),
    (NoArgs, {"extra": "kept"}, ("always the same",)),
    (lambda: KeywordOnly(code=3), {"code": 3}, ()),
    (lambda: OddOSError("/x"), {"path": "/x", "errno": 2, "strerror": "no such thing"}, (2, "no such thing")),
]
SHAPE_IDS = ["two-args", "no-args", "keyword-only", "oserror-subclass"]


@pytest.mark.parametrize(("make", "attrs", "args"), ODD_SHAPES, ids=SHAPE_IDS)
def test_dumps_exception_rebuilds_odd_constructors(make: Any, attrs: dict[str, Any], args: tuple[Any, ...]) -> None:
    exc = make()
    with pytest.raises(TypeError):  # plain pickle calls __init__ with args and fails
        pickle.loads(pickle.dumps(exc))
    back = pickle.loads(dumps_exception(exc))
    assert type(back) is type(exc)
    assert back.args == args
    assert str(back) == str(exc)
    for name, value in attrs.items():
        assert getattr(back, name) == value


@pytest.mark.parametrize(("make", "attrs", "args"), ODD_SHAPES, ids=SHAPE_IDS)
def test_task_error_with_odd_cause_is_both_classes(make: Any, attrs: dict[str, Any], args: tuple[Any, ...]) -> None:
    cause = make()
    back = pickle.loads(dumps(_task_error(cause))).as_instanceof_cause()
    assert isinstance(back, RayTaskError) and isinstance(back, type(cause))
    assert type(back.cause) is type(cause)
    for name, value in attrs.items():
        assert getattr(back, name) == value  # looked up on the cause
        assert getattr(back.cause, name) == value
    assert back.args == args
    assert f"{type(cause).__name__}: task work() failed" in str(back)
    assert f"raise exc\n{__name__}.{type(cause).__name__}" in str(back)  # the remote frame and the exception line


def test_a_cause_class_with_its_own_new_still_gives_a_task_error() -> None:
    err = _task_error(NeedsNew(5))
    back = pickle.loads(dumps(err)).as_instanceof_cause()
    assert isinstance(back, RayTaskError)
    assert back.cause.code == 5


def test_a_cause_that_cannot_be_pickled_becomes_unserializable_with_the_traceback() -> None:
    back = pickle.loads(dumps(_task_error(HoldsALock())))
    assert isinstance(back.cause, UnserializableException)
    assert "HoldsALock could not be pickled" in back.cause.reason
    assert "raise exc" in back.cause.original_stack_trace
    assert "HoldsALock: holds a lock" in back.cause.original_stack_trace
    raised = back.as_instanceof_cause()
    assert isinstance(raised, UnserializableException) and isinstance(raised, RayTaskError)
    assert "HoldsALock could not be pickled" in str(raised)


def test_a_cause_that_cannot_be_unpickled_becomes_unserializable_with_the_traceback() -> None:
    back = pickle.loads(dumps(_task_error(FailsToLoad("x"))))
    assert isinstance(back.cause, UnserializableException)
    assert "could not be unpickled here: RuntimeError: this exception does not load here" in back.cause.reason
    assert "FailsToLoad: x" in back.cause.original_stack_trace


def test_the_traceback_is_rendered_by_the_reader() -> None:
    err = pickle.loads(dumps(_task_error(ValueError("boom"))))
    assert err.remote_traceback is not None
    assert 'test_exception_pickling.py", line' in err.traceback_str
    assert "    raise exc\n" in err.traceback_str  # the source line, read here
    err.traceback_str = "replaced\n"
    assert err.remote_traceback is None and "replaced" in str(err)


def test_task_errors_pickled_without_frames_still_load() -> None:
    # The eight arguments an error pickled before frames travelled carries.
    err = _rebuild_task_error("f", "trace text", ValueError("v"), None, 1, "1.2.3.4", None, None)
    assert err.remote_traceback is None and err.traceback_str == "trace text"
    assert isinstance(err.cause, ValueError) and err.pid == 1
    assert "trace text" in str(err.as_instanceof_cause())


# ---- code objects keep their file name ---------------------------------------------------------------


def _code_of_a_user_file() -> types.CodeType:
    namespace: dict[str, Any] = {}
    exec(compile("def f():\n    return 1\n", "/home/user/analysis.py", "exec"), namespace)
    return namespace["f"].__code__  # type: ignore[no-any-return]


def _rebuild_from(template: types.CodeType, filename: str) -> types.CodeType:
    return template.replace(co_filename=filename)


def _writes_dynamic_code_in_an_argument(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """Like cloudpickle 3.1: the written name is one of the constructor's arguments."""
    return _rebuild_from, (code, "<dynamic-code>")


def _keeps_the_name(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """Like cloudpickle 3.0."""
    return _rebuild_from, (code, code.co_filename)


def _rebuild_dynamic(template: types.CodeType) -> types.CodeType:
    return template.replace(co_filename="<dynamic-code>")


def _writes_dynamic_code_inside_the_rebuild(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """A reduction whose rewritten name appears in no argument."""
    return _rebuild_dynamic, (code,)


@pytest.mark.parametrize("reduce", [_writes_dynamic_code_in_an_argument, _keeps_the_name,
                                    _writes_dynamic_code_inside_the_rebuild])
def test_every_kind_of_code_reduction_keeps_the_file_name(reduce: Any) -> None:
    code = _code_of_a_user_file()
    assert reduce(code)[0](*reduce(code)[1]).co_filename in ("<dynamic-code>", code.co_filename)
    rebuild, args = filename_keeping_reducer(reduce)(code)
    back = rebuild(*args)
    assert back.co_filename == "/home/user/analysis.py"
    assert back.co_code == code.co_code


def test_a_name_in_an_argument_is_replaced_in_place() -> None:
    code = _code_of_a_user_file()
    assert filename_keeping_reducer(_keeps_the_name) is _keeps_the_name
    rebuild, args = filename_keeping_reducer(_writes_dynamic_code_in_an_argument)(code)
    assert rebuild is _rebuild_from and args == (code, "/home/user/analysis.py")


def test_functions_pickled_by_value_keep_their_file_and_lines() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile("def g():\n    x = 1\n    return x\n", "/home/user/script.py", "exec"), namespace)
    back = pickle.loads(dumps(namespace["g"]))
    assert back.__code__.co_filename == "/home/user/script.py"
    assert back.__code__.co_firstlineno == 1
