"""nbray.timeline / `nbray timeline` (Chrome trace events) and the state API's Arrow tables, on a real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pyarrow as pa
import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util import state

pytestmark = pytest.mark.timeout(180)


@nbray.remote
def square(x: list[int]) -> list[int]:
    return [v * v for v in x]


@nbray.remote(max_retries=0)
def explode() -> None:
    raise ValueError("timeline failure")


@nbray.remote
class Keeper:
    def ping(self) -> str:
        return "pong"


def _check_trace_event(e: dict[str, Any]) -> None:
    """The Trace Event Format's complete event ("X"): required fields and their types."""
    assert e["ph"] == "X"
    assert isinstance(e["name"], str) and e["name"]
    assert isinstance(e["cat"], str)
    assert isinstance(e["ts"], (int, float)) and e["ts"] > 0
    assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
    assert isinstance(e["pid"], (int, str)) and isinstance(e["tid"], (int, str))
    assert isinstance(e.get("args", {}), dict)
    json.dumps(e)  # plain JSON values only


@pytest.fixture(scope="module")
def workload(shared_cluster: Any) -> dict[str, Any]:
    data = nbray.put(list(range(10)))
    ok = [square.remote(data) for _ in range(4)]
    assert nbray.get(ok)[0] == [v * v for v in range(10)]
    bad = explode.remote()
    with pytest.raises(ValueError):
        nbray.get(bad)
    keeper = Keeper.remote()
    assert nbray.get(keeper.ping.remote()) == "pong"
    job = nbray.get_runtime_context().get_job_id()
    ids = {r.task_id().hex() for r in [*ok, bad]}

    def ended() -> list[dict[str, Any]] | None:
        rows = [r for r in state.list_tasks(limit=10_000, detail=True, filters=[("job_id", "=", job)])]
        # the owner may report the end before the worker's report with the start arrives
        mine = [r for r in rows if r["task_id"] in ids and r["state"] in ("FINISHED", "FAILED")
                and r["start_time_ms"] is not None and r["end_time_ms"] is not None]
        return rows if len(mine) == len(ids) else None

    rows = wait_for_condition(ended, timeout=30, message="the workload's attempts never all ended")
    return {"data": data, "ids": ids, "bad": bad.task_id().hex(), "job": job, "rows": rows}


def test_timeline_events_match_the_state_api(workload: dict[str, Any]) -> None:
    events = nbray.timeline()
    assert isinstance(events, list) and events
    for e in events:
        _check_trace_event(e)
    rows = {(r["task_id"], r["attempt_number"]): r for r in workload["rows"]}
    by_attempt = {(e["args"]["task_id"], e["args"]["attempt_number"]): e for e in events}
    assert len(by_attempt) == len(events)  # one event per attempt
    ran_and_ended = {k for k, r in rows.items()
                     if r["state"] in ("FINISHED", "FAILED") and r["start_time_ms"] is not None}
    assert workload["ids"] <= {k[0] for k in ran_and_ended}
    ended_events = {k for k, e in by_attempt.items() if e["args"]["state"] in ("FINISHED", "FAILED")}
    assert ran_and_ended <= ended_events
    for key in ran_and_ended:
        e, r = by_attempt[key], rows[key]
        # the state API shows the same nanosecond times truncated to milliseconds
        assert 0 <= e["ts"] / 1000 - r["start_time_ms"] < 1
        assert 0 <= (e["ts"] + e["dur"]) / 1000 - r["end_time_ms"] < 1.001
        assert e["pid"].startswith("node ") and r["node_id"].startswith(e["pid"][5:])
        assert e["tid"] == f"worker {r['worker_pid']}"
        assert e["name"] == r["name"] and e["args"]["func_or_class_name"] == r["func_or_class_name"]
    squares = [e for e in events if e["args"]["task_id"] in workload["ids"] and e["args"]["task_id"] != workload["bad"]]
    assert len(squares) == 4
    assert all(e["args"]["arg_object_ids"] == [workload["data"].hex()] and not e["args"]["failed"] for e in squares)
    (failed,) = [e for e in events if e["args"]["task_id"] == workload["bad"]]
    assert failed["args"]["failed"] is True and failed["args"]["state"] == "FAILED"
    assert failed["cname"] == "terrible" and "timeline failure" in (failed["args"]["error_message"] or "")
    assert any(e["cat"] == "actor_creation_task" for e in events)


def test_timeline_file_and_missing_directory(workload: dict[str, Any], tmp_path: Any) -> None:
    path = tmp_path / "trace.json"
    assert nbray.timeline(str(path)) is None
    written = json.loads(path.read_text())
    assert {e["args"]["task_id"] for e in written} >= workload["ids"]
    missing = tmp_path / "no-such-dir" / "trace.json"
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        nbray.timeline(str(missing))
    assert not missing.parent.exists()


def test_timeline_cli(workload: dict[str, Any], shared_cluster: Any, tmp_path: Any) -> None:
    path = tmp_path / "cli.json"
    cmd = [sys.executable, "-m", "nbray.scripts.cli", "timeline", "--address", shared_cluster.address]
    out = subprocess.run([*cmd, "-o", str(path)], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert {e["args"]["task_id"] for e in json.loads(path.read_text())} >= workload["ids"]
    bad = subprocess.run([*cmd, "-o", str(tmp_path / "absent" / "t.json")], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ))
    assert bad.returncode != 0 and "absent" in bad.stderr and "does not exist" in bad.stderr


def test_list_tasks_as_arrow(workload: dict[str, Any]) -> None:
    filters = [("job_id", "=", workload["job"])]
    dicts = state.list_tasks(limit=10_000, detail=True, filters=filters)
    table = state.list_tasks(limit=10_000, detail=True, filters=filters, format="arrow")
    assert isinstance(table, pa.Table) and table.num_rows == len(dicts)
    schema = table.schema
    assert schema.field("attempt_number").type == pa.int32()
    assert schema.field("start_time_ms").type == pa.int64()
    assert schema.field("arg_object_ids").type == pa.list_(pa.string())
    assert pa.types.is_map(schema.field("required_resources").type)
    assert table.column_names == list(dicts[0])
    as_rows = table.to_pylist()
    for d, a in zip(dicts, as_rows):
        a["required_resources"] = dict(a["required_resources"])
        # end states may have arrived between the two reads; compare the stable ones
        if d["state"] in ("FINISHED", "FAILED"):
            assert a == d
    plain = state.list_tasks(limit=10_000, filters=filters, format="arrow")
    assert plain.column_names == list(state.list_tasks(limit=1, filters=filters)[0])
    with pytest.raises(ValueError, match="unknown format"):
        state.list_tasks(format="parquet")


@pytest.mark.parametrize("kind", ["actors", "nodes", "jobs", "placement_groups", "objects", "workers"])
def test_other_listings_as_arrow(workload: dict[str, Any], kind: str) -> None:
    fn = getattr(state, f"list_{kind}")
    for detail in (False, True):
        dicts = fn(detail=detail, limit=1000)
        table = fn(detail=detail, limit=1000, format="arrow")
        assert isinstance(table, pa.Table)
        assert table.num_rows == len(dicts) or kind in ("objects", "workers")  # these change between reads
        if dicts:
            assert set(table.column_names) == set(dicts[0])
    if kind == "nodes":
        table = fn(format="arrow")
        (cpu,) = [dict(r)["CPU"] for r in table.column("resources_total").to_pylist()]
        assert cpu == 2.0
    if kind == "actors":
        table = fn(format="arrow", detail=True)
        assert "Keeper" in table.column("class_name").to_pylist()
        assert table.schema.field("pid").type == pa.int64()
