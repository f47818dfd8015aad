"""Ray 2.60 dashboard replies (recorded from a real head) translated into the panel's rows."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from nbray.jupyter.server_extension import ray_dashboard, ray_rows

DATA = pathlib.Path(__file__).parent / "data"
NODE_ID = "c4422b0bd42d321b389bde0bf3ec2f0cbfe03e702f0a60fda8113179"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_nodes_carry_cpu_memory_and_object_store_use() -> None:
    [node] = ray_rows.node_rows(load("ray_nodes.json"), load("ray_cluster_status.json"))
    assert node["node_id"] == NODE_ID and node["state"] == "ALIVE" and node["is_head_node"]
    assert node["cpu"] == {"total": 2.0, "used": 0.0}
    assert node["gpu"] == {"total": 0.0, "used": 0.0}
    assert node["memory"]["total"] == 17124956980.0
    assert node["object_store"]["capacity_bytes"] == 7339267276
    assert node["object_store"]["used_bytes"] == 200003        # the 200 kB object put by the driver
    assert not any(k.startswith("node:") for k in node["resources_total"])


def test_used_resources_come_from_cluster_status() -> None:
    status = load("ray_cluster_status.json")
    status["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"][NODE_ID]["CPU"] = [1.5, 2.0]
    [node] = ray_rows.node_rows(load("ray_nodes.json"), status)
    assert node["cpu"] == {"total": 2.0, "used": 1.5}
    assert node["resources_available"]["CPU"] == 0.5


def test_tasks_keep_parent_edges_and_drop_the_driver_as_parent() -> None:
    rows = {r["name"]: r for r in ray_rows.task_rows(load("ray_tasks.json"))}
    assert set(rows) == {"parent", "child", "Counter.inc", "probe_counter:Counter.__init__"}
    assert rows["child"]["parent_task_id"] == rows["parent"]["task_id"]
    assert rows["parent"]["parent_task_id"] is None          # submitted by the driver
    assert rows["Counter.inc"]["actor_id"] == "9d65616fc1c5955ba2c3fb0202000000"
    for r in rows.values():
        assert r["state"] == "FINISHED"
        assert r["arg_object_ids"] == []                      # Ray records no data edges
        assert r["creation_time_ms"] <= r["start_time_ms"] <= r["end_time_ms"]
        assert r["updated_ns"] >= r["end_time_ms"] * 1_000_000


def test_task_filters() -> None:
    rows = ray_rows.task_rows(load("ray_tasks.json"))
    assert [r["name"] for r in ray_rows.filter_tasks(rows, {"func": "child"})] == ["child"]
    assert ray_rows.filter_tasks(rows, {"state": ["RUNNING"]}) == []
    assert len(ray_rows.filter_tasks(rows, {"job_id": "02000000"})) == 4


def test_task_detail_has_the_state_events() -> None:
    raw = ray_rows.state_result(load("ray_tasks.json"))[0]
    detail = ray_rows.task_detail(ray_rows.task_row(raw), raw)
    assert [e["state"] for e in detail["events"]][-1] == "FINISHED"


def test_actors_and_the_cause_of_a_kill() -> None:
    [alive] = ray_rows.actor_rows(load("ray_actors.json"))
    assert (alive["class_name"], alive["state"], alive["name"], alive["death_cause"]) == \
        ("Counter", "ALIVE", "probe_counter", None)
    [dead] = ray_rows.actor_rows(load("ray_actors_killed.json"))
    assert dead["state"] == "DEAD" and "ray.kill" in dead["death_cause"]


def test_objects_and_jobs() -> None:
    [obj] = ray_rows.object_rows(load("ray_objects.json"), {"192.0.2.2": NODE_ID})
    assert obj["size_bytes"] == 200003 and obj["locations"][0]["node_id"] == NODE_ID
    assert obj["reference_types"] == ["LOCAL_REFERENCE"] and obj["call_site"] is None
    jobs = ray_rows.job_rows(load("ray_jobs.json"))
    assert [(j["job_id"], j["status"]) for j in jobs] == [("01000000", "SUCCEEDED"), ("02000000", "RUNNING")]
    assert jobs[1]["driver_pid"] == 30208


def test_summary_says_ray_and_no_data_edges() -> None:
    nodes = ray_rows.node_rows(load("ray_nodes.json"), load("ray_cluster_status.json"))
    tasks = ray_rows.task_rows(load("ray_tasks.json"))
    summary = ray_rows.cluster_summary(nodes, tasks, ray_rows.actor_rows(load("ray_actors.json")),
                                       ray_rows.job_rows(load("ray_jobs.json")), {"gcs_address": "h:1"})
    assert summary["backend"] == "ray" and summary["data_edges"] is False
    assert summary["tasks"] == {"total": 4, "by_state": {"FINISHED": 4}, "evicted": 0}
    assert summary["nodes"] == {"alive": 1, "dead": 0} and summary["gcs_address"] == "h:1"


def test_changed_rows_sends_each_change_once() -> None:
    seen: dict[str, str] = {}
    rows = [{"id": "a", "state": "RUNNING"}]
    assert ray_rows.changed_rows(seen, rows, "id", json.dumps) == rows
    assert ray_rows.changed_rows(seen, rows, "id", json.dumps) == []
    assert ray_rows.changed_rows(seen, [{"id": "a", "state": "FINISHED"}], "id", json.dumps)


def test_bad_replies_are_typed_errors() -> None:
    with pytest.raises(ray_rows.RayReplyError, match="failed: boom"):
        ray_rows.state_result({"result": False, "msg": "boom"})
    with pytest.raises(ray_rows.RayReplyError):
        ray_rows.state_result([])
    with pytest.raises(ray_rows.RayReplyError):
        ray_rows.job_rows({"jobs": []})


def test_settings_from_the_environment() -> None:
    s = ray_dashboard.resolve_settings("", "", "", {"RAY_ADDRESS": "http://10.0.0.5:8265", "RAY_AUTH_TOKEN": "t"})
    assert (s.dashboard_url, s.gcs_address) == ("http://10.0.0.5:8265", "10.0.0.5:6379")
    assert s.headers()["Authorization"] == "Bearer t"
    s = ray_dashboard.resolve_settings("", "", "", {"RAY_DASHBOARD_ADDRESS": "127.0.0.1:8265",
                                                    "RAY_ADDRESS": "127.0.0.1:6380"})
    assert (s.dashboard_url, s.gcs_address) == ("http://127.0.0.1:8265", "127.0.0.1:6380")
    assert "Authorization" not in s.headers()
    with pytest.raises(ray_dashboard.RayConfigError, match="RAY_DASHBOARD_ADDRESS"):
        ray_dashboard.resolve_settings("", "", "", {})
    with pytest.raises(ray_dashboard.RayConfigError):
        ray_dashboard.resolve_settings("http://h:1/some/path", "", "", {})


def test_kill_request_and_gcs_status_encoding() -> None:
    actor = bytes.fromhex("9d65616fc1c5955ba2c3fb0202000000")
    assert ray_dashboard.kill_request_bytes(actor) == b"\x0a\x10" + actor + b"\x10\x01\x18\x01"
    assert ray_dashboard.gcs_status_of_reply(b"") == (0, "")
    assert ray_dashboard.gcs_status_of_reply(b"\x0a\x07\x08\x05\x12\x03bad") == (5, "bad")
