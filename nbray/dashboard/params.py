"""Validation of query parameters and path ids (dashboard process).

Each route declares the parameters it takes; anything else is refused
with 400, as are repeated parameters and values of the wrong shape. Ids
must be lowercase or uppercase hex of the exact length of their kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nbray.common import ids
from nbray.dashboard.security import RequestRefused
from nbray.protocol import gcs_pb2

TASK_STATES = frozenset(gcs_pb2.TaskState.keys())
MAX_TEXT_CHARS = 200
_HEX = re.compile(r"[0-9a-fA-F]*")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")

Validator = Callable[[str], Any]


def hex_id(num_bytes: int, what: str) -> Validator:
    def check(value: str) -> str:
        if len(value) != 2 * num_bytes or not _HEX.fullmatch(value):
            raise RequestRefused(400, f"{what} must be {2 * num_bytes} hex characters")
        return value.lower()
    return check


task_id = hex_id(ids.TASK_ID_SIZE, "a task id")
actor_id = hex_id(ids.ACTOR_ID_SIZE, "an actor id")
node_id = hex_id(ids.UNIQUE_ID_SIZE, "a node id")
job_id = hex_id(ids.JOB_ID_SIZE, "a job id")


def int_in(lo: int, hi: int) -> Validator:
    def check(value: str) -> int:
        if not value.isdigit() or len(value) > 9:
            raise RequestRefused(400, f"expected a whole number from {lo} to {hi}")
        n = int(value)
        if not lo <= n <= hi:
            raise RequestRefused(400, f"expected a whole number from {lo} to {hi}")
        return n
    return check


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise RequestRefused(400, "expected true or false")


def text(value: str) -> str:
    if len(value) > MAX_TEXT_CHARS or not _TEXT.fullmatch(value):
        raise RequestRefused(400, f"expected text of at most {MAX_TEXT_CHARS} printable characters")
    return value


def states(value: str) -> frozenset[str]:
    names = frozenset(s.strip().upper() for s in value.split(",") if s.strip())
    unknown = names - TASK_STATES
    if not names or unknown:
        raise RequestRefused(400, f"unknown task state(s) {', '.join(sorted(unknown)) or value!r}; "
                                  f"known: {', '.join(sorted(TASK_STATES))}")
    return names


def one_of(*choices: str) -> Validator:
    def check(value: str) -> str:
        if value not in choices:
            raise RequestRefused(400, f"expected one of {', '.join(choices)}")
        return value
    return check


def parse_query(arguments: Mapping[str, Sequence[bytes]], spec: Mapping[str, Validator]) -> dict[str, Any]:
    """Validated parameters by name; 400 for unknown, repeated or bad ones."""
    out: dict[str, Any] = {}
    for name, values in arguments.items():
        validator = spec.get(name)
        if validator is None:
            allowed = ", ".join(sorted(spec)) or "none"
            raise RequestRefused(400, f"unknown query parameter {name[:40]!r}; allowed: {allowed}")
        if len(values) != 1:
            raise RequestRefused(400, f"query parameter {name!r} given more than once")
        try:
            raw = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise RequestRefused(400, f"query parameter {name!r} is not UTF-8") from None
        out[name] = validator(raw)
    return out


# ---- the parameters of each route -------------------------------------------------------------------------

TASKS_QUERY: dict[str, Validator] = {
    "job_id": job_id, "state": states, "func": text, "node_id": node_id, "context_tag": text,
    "actor_id": actor_id, "offset": int_in(0, 10_000_000), "limit": int_in(1, 100_000),
    "detail": boolean, "attempts": boolean,
}
OBJECTS_QUERY: dict[str, Validator] = {"node_id": node_id, "limit": int_in(1, 10_000)}
ACTORS_QUERY: dict[str, Validator] = {"job_id": job_id, "state": text, "limit": int_in(1, 100_000)}
CANCEL_QUERY: dict[str, Validator] = {"force": boolean, "recursive": boolean}
EVENTS_QUERY: dict[str, Validator] = {"tasks": boolean}
NO_QUERY: dict[str, Validator] = {}
