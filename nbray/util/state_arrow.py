"""State API rows as pyarrow Tables (``list_*(..., format="arrow")``).

Task rows, which can number in the hundred thousands, go straight from the
GCS's protobuf rows into one typed column each, with no dict per row. The
other listings are small (nodes, actors, jobs, ...) and are converted from
their dict rows with a fixed schema, so a column has the same type whatever
the rows hold (an all-None column is still ``string``, not ``null``).
Times stay integers in milliseconds, named ``*_ms`` as in the dict rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from nbray.protocol import common_pb2, gcs_pb2

_STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
_TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
_ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}

_STR = pa.string()
_I64 = pa.int64()
_RESOURCES = pa.map_(pa.string(), pa.float64())
_EVENTS = pa.list_(pa.struct([("state", _STR), ("created_ms", _I64)]))
_IDS = pa.list_(_STR)

Row = gcs_pb2.TaskStateRow


def _hex_or_none(b: bytes) -> str | None:
    return b.hex() if b else None


def _times(t: Row) -> dict[str, int]:
    # The latest time of each state, as the dict rows' start/end times.
    out: dict[str, int] = {}
    for s, ts in sorted(zip(t.states, t.state_ts_ns), key=lambda e: e[1]):
        out[_STATE_NAMES.get(s, "NIL")] = ts // 1_000_000
    return out


# name, type, value of a row: the columns of list_tasks (as task_row in nbray.util.state)
_TASK_COLUMNS: list[tuple[str, pa.DataType, Callable[[Row], Any]]] = [
    ("task_id", _STR, lambda t: t.task_id.hex()),
    ("attempt_number", pa.int32(), lambda t: t.attempt_number),
    ("name", _STR, lambda t: t.info.name),
    ("state", _STR, lambda t: _STATE_NAMES.get(t.state, "NIL")),
    ("job_id", _STR, lambda t: t.info.job_id.hex()),
    ("actor_id", _STR, lambda t: _hex_or_none(t.info.actor_id)),
    ("type", _STR, lambda t: _TYPE_NAMES.get(t.info.type, "NORMAL_TASK")),
    ("func_or_class_name", _STR, lambda t: t.info.func_or_class_name),
    ("parent_task_id", _STR, lambda t: t.info.parent_task_id.hex()),
    ("node_id", _STR, lambda t: _hex_or_none(t.node_id)),
    ("worker_id", _STR, lambda t: _hex_or_none(t.worker_id)),
    ("worker_pid", pa.int32(), lambda t: t.worker_pid or None),
    ("error_type", _STR, lambda t: _ERROR_NAMES.get(t.error.type) if t.error.type else None),
]

_TASK_DETAIL_COLUMNS: list[tuple[str, pa.DataType, Callable[[Row], Any]]] = [
    ("required_resources", _RESOURCES, lambda t: list(t.info.required_resources.items())),
    ("placement_group_id", _STR, lambda t: _hex_or_none(t.info.placement_group_id)),
    ("events", _EVENTS, lambda t: [{"state": _STATE_NAMES.get(s, "NIL"), "created_ms": ts // 1_000_000}
                                   for s, ts in sorted(zip(t.states, t.state_ts_ns), key=lambda e: e[1])]),
    ("creation_time_ms", _I64, lambda t: min(t.state_ts_ns) // 1_000_000 if t.state_ts_ns else None),
    ("start_time_ms", _I64, lambda t: None),  # filled from _times, see tasks_table
    ("end_time_ms", _I64, lambda t: None),
    ("error_message", _STR, lambda t: t.error.message or None),
    ("error_traceback", _STR, lambda t: t.error_traceback or None),
    ("actor_repr_name", _STR, lambda t: t.actor_repr_name or None),
    ("language", _STR, lambda t: "PYTHON"),
    ("arg_object_ids", _IDS, lambda t: [o.hex() for o in t.info.arg_object_ids]),
    ("return_object_ids", _IDS, lambda t: [o.hex() for o in t.info.return_object_ids]),
    ("context_tag", _STR, lambda t: t.info.context_tag or None),
    ("owner_address", _STR, lambda t: f"{t.info.caller.host}:{t.info.caller.port}" if t.info.caller.port else None),
]


def tasks_table(rows: Sequence[Row], detail: bool) -> pa.Table:
    """One column per field of list_tasks, filled column by column from the GCS's rows."""
    columns = _TASK_COLUMNS + (_TASK_DETAIL_COLUMNS if detail else [])
    times = [_times(t) for t in rows] if detail else []
    arrays = []
    for name, typ, get in columns:
        if name == "start_time_ms":
            values = [x.get("RUNNING") for x in times]
        elif name == "end_time_ms":
            values = [x.get("FINISHED") or x.get("FAILED") for x in times]
        else:
            values = [get(t) for t in rows]
        arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(name, typ) for name, typ, _ in columns]))


def _fields(*pairs: tuple[str, pa.DataType]) -> list[tuple[str, pa.DataType]]:
    return list(pairs)


# kind -> (fields of the plain rows, fields added with detail=True)
SCHEMAS: dict[str, tuple[list[tuple[str, pa.DataType]], list[tuple[str, pa.DataType]]]] = {
    "actors": (
        _fields(("actor_id", _STR), ("class_name", _STR), ("state", _STR), ("job_id", _STR), ("name", _STR),
                ("node_id", _STR), ("pid", _I64), ("ray_namespace", _STR)),
        _fields(("death_cause", pa.struct([("message", _STR)])), ("is_detached", pa.bool_()),
                ("required_resources", _RESOURCES), ("placement_group_id", _STR), ("repr_name", _STR),
                ("num_restarts", _I64), ("max_restarts", _I64), ("address", _STR)),
    ),
    "nodes": (
        _fields(("node_id", _STR), ("node_ip", _STR), ("is_head_node", pa.bool_()), ("state", _STR),
                ("state_message", _STR), ("node_name", _STR), ("resources_total", _RESOURCES),
                ("labels", pa.map_(_STR, _STR))),
        _fields(("start_time_ms", _I64), ("end_time_ms", _I64), ("raylet_port", pa.int32()),
                ("object_store_bytes", _I64)),
    ),
    "jobs": (
        _fields(("job_id", _STR), ("type", _STR), ("status", _STR), ("entrypoint", _STR), ("start_time", _I64),
                ("end_time", _I64), ("driver_info", pa.struct([("pid", _I64), ("node_ip_address", _STR)])),
                ("namespace", _STR)),
        [],
    ),
    "placement_groups": (
        _fields(("placement_group_id", _STR), ("name", _STR), ("creator_job_id", _STR), ("state", _STR),
                ("is_detached", pa.bool_())),
        _fields(("bundles", pa.list_(pa.struct([("bundle_id", _I64), ("unit_resources", _RESOURCES),
                                                ("node_id", _STR)]))),
                ("strategy", _STR), ("stats", pa.struct([("scheduling_state", _STR)]))),
    ),
    "objects": (
        _fields(("object_id", _STR), ("object_size", _I64), ("task_status", _STR), ("attempt_number", _I64),
                ("reference_type", _STR), ("call_site", _STR), ("type", _STR), ("pid", _I64), ("ip", _STR),
                ("node_id", _STR), ("worker_id", _STR), ("owner_worker_id", _STR), ("owned", pa.bool_()),
                ("in_plasma", pa.bool_()), ("where", _STR)),
        [],
    ),
    "workers": (
        _fields(("worker_id", _STR), ("is_alive", pa.bool_()), ("worker_type", _STR), ("node_id", _STR),
                ("ip", _STR), ("pid", _I64), ("job_id", _STR), ("actor_id", _STR), ("is_idle", pa.bool_()),
                ("resources", _RESOURCES)),
        [],
    ),
}


def _map_value(value: Any) -> Any:
    return list(value.items()) if isinstance(value, dict) else value


def rows_table(kind: str, rows: list[dict[str, Any]], detail: bool) -> pa.Table:
    """A listing's dict rows as a Table with the kind's fixed schema."""
    plain, extra = SCHEMAS[kind]
    fields = plain + (extra if detail else [])
    arrays = []
    for name, typ in fields:
        values = [r.get(name) for r in rows]
        if pa.types.is_map(typ):
            values = [_map_value(v) for v in values]
        elif pa.types.is_list(typ) and pa.types.is_struct(typ.value_type):
            values = [[{k: _map_value(x) for k, x in item.items()} for item in v] if v is not None else None
                      for v in values]
        arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
