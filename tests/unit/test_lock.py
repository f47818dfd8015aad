"""The lock check that CI runs after installing (scripts/check_lock.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
assert _spec is not None and _spec.loader is not None
check_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_lock)


def test_names_are_compared_in_canonical_form() -> None:
    locked = check_lock.parse_pins("# header\nJupyter_Core==5.9.1\nzope.interface==7.0  # note\n")
    assert locked == {"jupyter-core": "5.9.1", "zope-interface": "7.0"}
    assert check_lock.differences(locked, {"jupyter-core": "5.9.1", "zope-interface": "7.0"}) == []


def test_every_kind_of_drift_is_reported() -> None:
    locked = {"a": "1.0", "b": "2.0", "gone": "3.0"}
    have = {"a": "1.0", "b": "2.1", "extra": "0.1"}
    problems = check_lock.differences(locked, have)
    assert problems == [
        "b is 2.1, the lock says 2.0",
        "extra==0.1 is installed but not in the lock",
        "gone==3.0 is in the lock but not installed",
    ]


def test_a_line_without_a_pin_is_refused() -> None:
    with pytest.raises(ValueError, match="name==version"):
        check_lock.parse_pins("numpy>=1.24\n")

