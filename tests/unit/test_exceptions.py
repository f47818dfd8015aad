"""Every public error survives pickling (errors cross processes and the
notebook client's connection) with its type, message and fields."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import nbray.exceptions as E

SAMPLES: dict[str, tuple[Any, ...]] = {
    "ConnectionLostError": ("the peer went away",),
    "RayTaskError": ("f", "Traceback (most recent call last): ...", ValueError("boom")),
    "RpcError": ("not_found", "no such actor"),
    "UnserializableException": ("Traceback: ...",),
    "TaskCancelledError": ("00ff",),
}


def _errors() -> list[type[BaseException]]:
    out = []
    for name in E.__all__:
        cls = getattr(E, name)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out.append(cls)
    return out


@pytest.mark.parametrize("cls", _errors(), ids=lambda c: c.__name__)
def test_errors_round_trip_through_pickle(cls: type[BaseException]) -> None:
    error = cls(*SAMPLES.get(cls.__name__, ()))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    for attr in ("task_id", "code", "message", "actor_id", "function_name", "cause"):
        if hasattr(error, attr):
            assert repr(getattr(back, attr)) == repr(getattr(error, attr)), attr


def test_a_remote_error_is_still_an_instance_of_its_cause_after_pickling() -> None:
    error = E.RayTaskError("f", "trace", KeyError("k")).as_instanceof_cause()
    back = pickle.loads(pickle.dumps(error)).as_instanceof_cause()
    assert isinstance(back, KeyError) and isinstance(back, E.RayTaskError)
