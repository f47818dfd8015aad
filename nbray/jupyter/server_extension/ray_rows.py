"""Ray dashboard replies translated into the panel's rows (Jupyter server process).

The panel reads the row shapes of nbray's dashboard (``nbray/dashboard``);
a Ray 2.x head answers its state API (``/api/v0/...``), ``/api/cluster_status``
and ``/api/jobs/`` in its own shapes. These functions turn one into the
other, with no I/O, so they are tested on recorded replies.

Ray keeps no record of which object a task consumed, only which task
submitted it: task rows carry ``parent_task_id`` and no argument ids, so the
graph shows parent edges only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from nbray.dashboard.summary import sum_resources

# A driver's task id is 16 + 4 bytes of 0xff followed by the job id; such a
# parent is the notebook or script itself, not a task the panel can show.
DRIVER_TASK_PREFIX = "ff" * 20
OBJECT_STORE_USAGE_KEY = "objectStoreMemory"   # /api/cluster_status names it so
TERMINAL_TASK_STATES = frozenset({"FINISHED", "FAILED"})


class RayReplyError(ValueError):
    """A Ray dashboard reply does not have the shape of Ray 2.x's API."""


def reply_message(body: bytes | None) -> str:
    """The message of a Ray dashboard error reply (JSON ``msg``/``message``/``error``, or short text)."""
    text = (body or b"").decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, Mapping):
        for key in ("msg", "message", "error"):
            if data.get(key):
                return str(data[key])[:300]
    return text[:300]


def auth_refusal(dashboard_url: str, status: int, body: bytes | None, has_token: bool) -> str:
    """What the panel says when Ray's token authentication refuses a request."""
    why = reply_message(body)
    hint = ("the token in RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) is not the cluster's" if has_token else
            "the cluster uses token authentication: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) for the "
            "Jupyter server")
    return f"the Ray dashboard at {dashboard_url} refused the request ({status}{': ' + why if why else ''}); {hint}"


def state_result(reply: Any) -> list[dict[str, Any]]:
    """The rows of a ``/api/v0/<resource>`` reply.

    Raises RayReplyError when Ray reports a failure or the shape is unknown.
    """
    if not isinstance(reply, Mapping):
        raise RayReplyError(f"expected a JSON object from the state API, got {type(reply).__name__}")
    if reply.get("result") is not True:
        raise RayReplyError(f"the Ray state API failed: {reply.get('msg') or 'no message'}")
    try:
        rows = reply["data"]["result"]["result"]
    except (KeyError, TypeError):
        raise RayReplyError("the Ray state API reply has no data.result.result") from None
    if not isinstance(rows, list):
        raise RayReplyError("the Ray state API rows are not a list")
    return [r for r in rows if isinstance(r, dict)]


def usage_by_node(cluster_status: Any) -> dict[str, dict[str, list[float]]]:
    """``{node_id: {resource: [used, total]}}`` from ``/api/cluster_status``; empty when absent."""
    try:
        usage = cluster_status["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"]
    except (KeyError, TypeError):
        return {}
    return usage if isinstance(usage, dict) else {}


def _usage(total: Mapping[str, float], used: Mapping[str, list[float]], name: str,
           alive: bool) -> dict[str, float]:
    t = float(total.get(name, 0.0))
    pair = used.get(name)
    u = float(pair[0]) if alive and isinstance(pair, list) and pair else 0.0
    return {"total": t, "used": max(0.0, min(u, t)) if t else u}


def node_row(node: Mapping[str, Any], used: Mapping[str, list[float]]) -> dict[str, Any]:
    """One ``/api/v0/nodes`` row (with the node's usage from cluster status) as a panel node row."""
    alive = node.get("state") == "ALIVE"
    total = {str(k): float(v) for k, v in (node.get("resources_total") or {}).items()
             if not str(k).startswith("node:")}
    available: dict[str, float] = {}
    if alive:
        for name, value in total.items():
            pair = used.get(name)
            available[name] = value - float(pair[0]) if isinstance(pair, list) and pair else value
    store = used.get(OBJECT_STORE_USAGE_KEY)
    capacity = total.get("object_store_memory", 0.0)
    if isinstance(store, list) and len(store) > 1 and not capacity:
        capacity = float(store[1])
    return {
        "node_id": str(node.get("node_id", "")),
        "node_ip": str(node.get("node_ip", "")),
        "node_name": str(node.get("node_name") or node.get("node_ip") or ""),
        "hostname": str(node.get("node_name") or node.get("node_ip") or ""),
        "is_head_node": bool(node.get("is_head_node")),
        "state": "ALIVE" if alive else "DEAD",
        "state_message": node.get("state_message") or None,
        "start_time_ms": int(node.get("start_time_ms") or 0),
        "end_time_ms": int(node.get("end_time_ms") or 0) or None,
        "resources_total": total,
        "resources_available": available,
        "cpu": _usage(total, used, "CPU", alive),
        "gpu": _usage(total, used, "GPU", alive),
        "memory": _usage(total, used, "memory", alive),
        "gpus_in_use": [],
        "object_store": {
            "capacity_bytes": int(capacity),
            "used_bytes": int(store[0]) if alive and isinstance(store, list) and store else 0,
            "spilled_bytes": 0,
            "num_objects": None,
        },
        "num_workers": None,
        "pending_leases": 0,
    }


def node_rows(nodes_reply: Any, cluster_status: Any) -> list[dict[str, Any]]:
    usage = usage_by_node(cluster_status)
    return [node_row(n, usage.get(str(n.get("node_id")), {})) for n in state_result(nodes_reply)]


def actor_row(actor: Mapping[str, Any]) -> dict[str, Any]:
    death = actor.get("death_cause")
    message = None
    if isinstance(death, Mapping):
        # Ray nests the message one level down, under the kind of death.
        for value in death.values():
            if isinstance(value, Mapping) and value.get("error_message"):
                message = str(value["error_message"])
                break
    return {
        "actor_id": str(actor.get("actor_id", "")),
        "class_name": str(actor.get("class_name", "")),
        "state": str(actor.get("state", "DEAD")),
        "job_id": str(actor.get("job_id", "")),
        "name": str(actor.get("name") or ""),
        "node_id": actor.get("node_id") or None,
        "pid": actor.get("pid") or None,
        "ray_namespace": str(actor.get("ray_namespace") or ""),
        "death_cause": message,
        "is_detached": bool(actor.get("is_detached")),
        "required_resources": dict(actor.get("required_resources") or {}),
        "placement_group_id": actor.get("placement_group_id") or None,
        "repr_name": str(actor.get("repr_name") or ""),
        "num_restarts": int(actor.get("num_restarts") or 0),
        "max_restarts": None,
        "address": None,
    }


def actor_rows(reply: Any) -> list[dict[str, Any]]:
    return [actor_row(a) for a in state_result(reply)]


def _ms(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def task_row(task: Mapping[str, Any]) -> dict[str, Any]:
    """One ``/api/v0/tasks?detail=1`` row as a panel task row (parent edge only, no data edges)."""
    parent = task.get("parent_task_id") or None
    if parent is not None and str(parent).startswith(DRIVER_TASK_PREFIX):
        parent = None
    events = task.get("events") or []
    last_event = max((e.get("created_ms", 0) for e in events if isinstance(e, Mapping)), default=0)
    created = _ms(task.get("creation_time_ms"))
    start = _ms(task.get("start_time_ms"))
    end = _ms(task.get("end_time_ms"))
    updated_ms = max(int(last_event or 0), end or 0, start or 0, created or 0)
    return {
        "task_id": str(task.get("task_id", "")),
        "attempt_number": int(task.get("attempt_number") or 0),
        "name": str(task.get("name") or ""),
        "func_or_class_name": str(task.get("func_or_class_name") or ""),
        "type": str(task.get("type") or "NORMAL_TASK"),
        "state": str(task.get("state") or "NIL"),
        "job_id": str(task.get("job_id") or ""),
        "actor_id": task.get("actor_id") or None,
        "parent_task_id": parent,
        "node_id": task.get("node_id") or None,
        "worker_id": task.get("worker_id") or None,
        "worker_pid": task.get("worker_pid") or None,
        "arg_object_ids": [],
        "return_object_ids": [],
        "context_tag": None,
        "owner_address": None,
        "creation_time_ms": created,
        "start_time_ms": start,
        "end_time_ms": end,
        "error_type": task.get("error_type") or None,
        "error_message": task.get("error_message") or None,
        "updated_ns": int(updated_ms * 1_000_000),
    }


def task_rows(reply: Any) -> list[dict[str, Any]]:
    rows = [task_row(t) for t in state_result(reply)]
    rows.sort(key=lambda r: (r["creation_time_ms"] or 0, r["task_id"]))
    return rows


def task_detail(row: dict[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """The panel's task detail: the row plus Ray's state events."""
    out = dict(row)
    out["events"] = [{"state": str(e.get("state")), "time_ms": int(e.get("created_ms") or 0)}
                     for e in task.get("events") or [] if isinstance(e, Mapping)]
    out["error_traceback"] = None
    out["required_resources"] = dict(task.get("required_resources") or {})
    out["placement_group_id"] = task.get("placement_group_id") or None
    out["actor_repr_name"] = None
    out["owner_worker_id"] = None
    out["owner_node_id"] = None
    return out


def filter_tasks(rows: Iterable[dict[str, Any]], query: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The panel's task filters (job, states, function, node, actor), applied to translated rows."""
    out = []
    states = query.get("state")
    for r in rows:
        if "job_id" in query and r["job_id"] != query["job_id"]:
            continue
        if states and r["state"] not in states:
            continue
        if "func" in query and query["func"] not in r["func_or_class_name"]:
            continue
        if "node_id" in query and r["node_id"] != query["node_id"]:
            continue
        if "actor_id" in query and r["actor_id"] != query["actor_id"]:
            continue
        if "context_tag" in query:
            continue  # Ray tasks carry no nbray context tag
        out.append(r)
    return out


def object_rows(reply: Any, node_ids_by_ip: Mapping[str, str]) -> list[dict[str, Any]]:
    """``/api/v0/objects`` rows grouped by object id, largest first.

    Ray lists one row per reference holder; the panel shows one per object.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for o in state_result(reply):
        object_id = str(o.get("object_id", ""))
        node_id = node_ids_by_ip.get(str(o.get("ip", "")), "")
        row = by_id.get(object_id)
        if row is None:
            size = o.get("object_size")
            row = by_id[object_id] = {
                "object_id": object_id,
                "size_bytes": int(size) if isinstance(size, (int, float)) and size > 0 else 0,
                "owner": {"address": str(o.get("ip", "")), "pid": o.get("pid"), "node_id": node_id,
                          "type": o.get("type")},
                "locations": [{"node_id": node_id, "where": "memory", "primary": True}] if node_id else [],
                "reference_types": [],
                "task_status": o.get("task_status") or None,
                "call_site": None if o.get("call_site") in (None, "disabled") else str(o.get("call_site")),
            }
        ref = o.get("reference_type")
        if ref and ref not in row["reference_types"]:
            row["reference_types"].append(str(ref))
    return sorted(by_id.values(), key=lambda r: -r["size_bytes"])


def job_row(job: Mapping[str, Any]) -> dict[str, Any]:
    """One ``/api/jobs/`` entry (a driver or a submitted job) as a panel job row."""
    driver = job.get("driver_info") or {}
    pid = driver.get("pid") if isinstance(driver, Mapping) else None
    return {
        "job_id": str(job.get("job_id") or job.get("submission_id") or ""),
        "submission_id": job.get("submission_id") or None,
        "status": str(job.get("status") or "PENDING"),
        "entrypoint": str(job.get("entrypoint") or ""),
        "start_time_ms": int(job.get("start_time") or 0),
        "end_time_ms": int(job.get("end_time") or 0) or None,
        "driver_pid": int(pid) if isinstance(pid, (int, str)) and str(pid).isdigit() else 0,
        "driver_ip": str(driver.get("node_ip_address") or "") if isinstance(driver, Mapping) else "",
        "namespace": "",
    }


def job_rows(reply: Any) -> list[dict[str, Any]]:
    if not isinstance(reply, list):
        raise RayReplyError("expected a list of jobs from /api/jobs/")
    rows = [job_row(j) for j in reply if isinstance(j, Mapping)]
    return sorted(rows, key=lambda j: j["start_time_ms"])


def cluster_summary(nodes: list[dict[str, Any]], tasks: list[dict[str, Any]], actors: list[dict[str, Any]],
                    jobs: list[dict[str, Any]], info: Mapping[str, Any]) -> dict[str, Any]:
    """The panel's ``/api/cluster`` summary from translated rows; ``info`` names the cluster."""
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    total, available = sum_resources(alive)

    def count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r[key]] = out.get(r[key], 0) + 1
        return out

    summary = {
        "gcs_connected": True,
        "nodes": {"alive": len(alive), "dead": len(nodes) - len(alive)},
        "resources_total": total,
        "resources_available": available,
        "object_store": {key: sum(n["object_store"][key] for n in alive)
                         for key in ("capacity_bytes", "used_bytes", "spilled_bytes")},
        "tasks": {"total": len(tasks), "by_state": count(tasks, "state"), "evicted": 0},
        "actors": {"total": len(actors), "by_state": count(actors, "state")},
        "jobs": jobs,
        "context_tags": [],
        "backend": "ray",
        "data_edges": False,
    }
    summary.update(info)
    return summary


def changed_rows(previous: dict[str, str], rows: Iterable[dict[str, Any]], key: str,
                 encode: Any) -> list[dict[str, Any]]:
    """Rows whose encoding differs from the last poll; updates ``previous`` (id -> encoding)."""
    out = []
    for r in rows:
        text = encode(r)
        if previous.get(r[key]) != text:
            previous[r[key]] = text
            out.append(r)
    return out
