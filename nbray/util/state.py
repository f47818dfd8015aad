"""The state API: tasks, actors, objects, nodes, jobs, placement groups.

Names and row fields follow ``ray.util.state``. Rows are snapshots built
from the GCS (task events, actor and node tables) and, for objects, from
every node's raylet and core workers. Task rows also carry nbray's data
edges: the objects each task consumed and produced.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from nbray.protocol import common_pb2, gcs_pb2, raylet_pb2
from nbray.rpc.blocking import BlockingClient

DEFAULT_LIMIT = 100
# Every row (the GCS caps each page at state_api_max_limit).
ALL_ROWS = 2**31 - 1
FORMATS = ("dicts", "arrow")
Filter = tuple[str, str, Any]

_STATE_NAMES = {v: k for k, v in gcs_pb2.TaskState.items()}
_TYPE_NAMES = {v: k for k, v in common_pb2.TaskType.items()}
_ERROR_NAMES = {v: k for k, v in common_pb2.ErrorType.items()}
_ACTOR_STATES = {v: k for k, v in gcs_pb2.ActorInfo.State.items()}
_PG_STATES = {v: k for k, v in gcs_pb2.PlacementGroupInfo.State.items()}
_PG_STRATEGIES = {v: k for k, v in gcs_pb2.PlacementGroupInfo.Strategy.items()}


class _Gcs:
    """GCS access for the state API: the driver's connection, or a one-off one."""

    def __init__(self, address: str | None) -> None:
        from nbray.object_ref import _core

        self._core = _core[0]
        self._client: BlockingClient | None = None
        self._token: bytes | None = None
        if self._core is None or address is not None:
            from nbray.node import session

            session_dir: str | None
            if address is None:
                found = session.find_current_cluster()
                if found is None:
                    raise ConnectionError("no nbray cluster found; pass address= or call nbray.init()")
                address, session_dir = found
            else:
                session_dir = session.session_for_address(address)
            token = session.find_token(session_dir)
            if token is None:
                raise ConnectionError(f"no cluster token for {address}; set NBRAY_AUTH_TOKEN")
            self._token = token
            self._client = BlockingClient(address, token)
            self._core = None
        else:
            self._token = self._core.token

    def call(self, name: str, request: Any = None, timeout_s: float | None = None) -> Any:
        if self._client is not None:
            return self._client.call(f"GcsService.{name}", request, timeout_s)
        assert self._core is not None
        return self._core.gcs.call(name, request, timeout_s)

    def peer(self, address: str) -> BlockingClient:
        assert self._token is not None
        return BlockingClient(address, self._token)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _filters(filters: Iterable[Filter] | None) -> list[gcs_pb2.StateFilter]:
    out = []
    for f in filters or ():
        if len(f) != 3:
            raise ValueError(f"a filter is (key, op, value), got {f!r}")
        key, op, value = f
        out.append(gcs_pb2.StateFilter(key=str(key), op=str(op), value=str(value)))
    return out


def _check_format(format: str | None) -> None:
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; use 'dicts' (the default) or 'arrow'")


def _rows(kind: str, rows: list[dict[str, Any]], detail: bool, format: str | None) -> Any:
    """Rows as asked: the dicts themselves, or a pyarrow Table typed by nbray.util.state_arrow."""
    if format != "arrow":
        return rows
    from nbray.util import state_arrow

    return state_arrow.rows_table(kind, rows, detail)


def _match(row: dict[str, Any], filters: Iterable[Filter] | None) -> bool:
    for key, op, value in filters or ():
        if op not in ("=", "!="):
            raise ValueError(f"unsupported filter operator {op!r}; use '=' or '!='")
        if key not in row:
            raise ValueError(f"cannot filter by {key!r}; fields are {', '.join(sorted(row))}")
        equal = str(row[key]).lower() == str(value).lower()
        if equal != (op == "="):
            return False
    return True


# ---- tasks --------------------------------------------------------------------------------------------


def task_row(t: gcs_pb2.TaskStateRow, detail: bool) -> dict[str, Any]:
    info = t.info
    row: dict[str, Any] = {
        "task_id": t.task_id.hex(),
        "attempt_number": t.attempt_number,
        "name": info.name,
        "state": _STATE_NAMES.get(t.state, "NIL"),
        "job_id": info.job_id.hex(),
        "actor_id": info.actor_id.hex() if info.actor_id else None,
        "type": _TYPE_NAMES.get(info.type, "NORMAL_TASK"),
        "func_or_class_name": info.func_or_class_name,
        "parent_task_id": info.parent_task_id.hex(),
        "node_id": t.node_id.hex() if t.node_id else None,
        "worker_id": t.worker_id.hex() if t.worker_id else None,
        "worker_pid": t.worker_pid or None,
        "error_type": _ERROR_NAMES.get(t.error.type) if t.error.type else None,
    }
    if detail:
        events = [{"state": _STATE_NAMES.get(s, "NIL"), "created_ms": ts // 1_000_000}
                  for s, ts in sorted(zip(t.states, t.state_ts_ns), key=lambda e: e[1])]
        times = {e["state"]: e["created_ms"] for e in events}
        start = times.get("RUNNING")
        end = times.get("FINISHED") or times.get("FAILED")
        row.update({
            "required_resources": dict(info.required_resources),
            "placement_group_id": info.placement_group_id.hex() if info.placement_group_id else None,
            "events": events,
            "creation_time_ms": events[0]["created_ms"] if events else None,
            "start_time_ms": start,
            "end_time_ms": end,
            "error_message": t.error.message or None,
            "error_traceback": t.error_traceback or None,
            "actor_repr_name": t.actor_repr_name or None,
            "language": "PYTHON",
            "arg_object_ids": [o.hex() for o in info.arg_object_ids],
            "return_object_ids": [o.hex() for o in info.return_object_ids],
            "context_tag": info.context_tag or None,
            "owner_address": f"{info.caller.host}:{info.caller.port}" if info.caller.port else None,
        })
    return row


def read_task_rows(address: str | None = None, filters: list[Filter] | None = None, limit: int = ALL_ROWS,
                   timeout: float = 30) -> list[gcs_pb2.TaskStateRow]:
    """The newest `limit` task attempts as the GCS keeps them, oldest first (page by page)."""
    gcs = _Gcs(address)
    deadline = time.monotonic() + timeout
    found: list[gcs_pb2.TaskStateRow] = []
    try:
        cursor = 0
        while len(found) < limit:
            request = gcs_pb2.GetTaskEventsRequest(filters=_filters(filters), limit=min(limit - len(found), ALL_ROWS),
                                                   newest_first=True, cursor=cursor)
            reply = gcs.call("GetTaskEvents", request, max(0.001, deadline - time.monotonic()))
            found.extend(reply.tasks)
            cursor = reply.next_cursor
            if not cursor:
                break
    finally:
        gcs.close()
    found.reverse()
    return found


def list_tasks(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
               timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False, format: str | None = None) -> Any:
    """One row per task attempt (Ray's list_tasks): the newest `limit` attempts, oldest first.

    Reads page by page, so any limit up to what the GCS keeps
    (``task_events_max_tasks_in_gcs``) is honoured. ``format="arrow"``
    returns a pyarrow Table (one typed column per field) built straight from
    the GCS's rows. Raises RpcError (``invalid_argument``) for a filter the
    GCS cannot apply, ConnectionError when no cluster is reachable,
    ValueError for an unknown format.
    """
    _check_format(format)
    found = read_task_rows(address, filters, limit, timeout)
    if format == "arrow":
        from nbray.util import state_arrow

        return state_arrow.tasks_table(found, detail)
    return [task_row(t, detail) for t in found]


def get_task(task_id: str, address: str | None = None) -> dict[str, Any] | None:
    """The latest attempt of a task, with details; None if the GCS has no record of it."""
    rows = list_tasks(address, filters=[("task_id", "=", task_id)], detail=True, limit=1000)
    return max(rows, key=lambda r: r["attempt_number"]) if rows else None


def summarize_tasks(address: str | None = None) -> dict[str, Any]:
    rows = list_tasks(address, limit=100_000)
    summary: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r["func_or_class_name"] or r["name"]
        entry = summary.setdefault(key, {"func_or_class_name": key, "type": r["type"], "state_counts": {}})
        entry["state_counts"][r["state"]] = entry["state_counts"].get(r["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_tasks": len(rows),
                        "summary_by": "func_name"}}


# ---- actors -------------------------------------------------------------------------------------------


def actor_row(a: gcs_pb2.ActorInfo, detail: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "actor_id": a.actor_id.hex(),
        "class_name": a.class_name,
        "state": _ACTOR_STATES.get(a.state, "DEAD"),
        "job_id": a.job_id.hex(),
        "name": a.name,
        "node_id": a.node_id.hex() if a.node_id else None,
        "pid": a.pid or None,
        "ray_namespace": a.namespace,
    }
    if detail:
        row.update({
            "death_cause": {"message": a.death_cause.message} if a.death_cause.message else None,
            "is_detached": a.is_detached,
            "required_resources": dict(a.required_resources),
            "placement_group_id": a.placement_group_id.hex() if a.placement_group_id else None,
            "repr_name": a.repr_name,
            "num_restarts": a.num_restarts,
            "max_restarts": a.max_restarts,
            "address": f"{a.address.host}:{a.address.port}" if a.address.port else None,
        })
    return row


def list_actors(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False, format: str | None = None) -> Any:
    _check_format(format)
    gcs = _Gcs(address)
    try:
        reply = gcs.call("GetAllActorInfo", gcs_pb2.GetAllActorInfoRequest(), timeout)
    finally:
        gcs.close()
    rows = [actor_row(a, True) for a in reply.actors]
    rows = [r for r in rows if _match(r, filters)][:limit]
    if not detail:
        keys = ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace")
        rows = [{k: r[k] for k in keys} for r in rows]
    return _rows("actors", rows, detail, format)


def get_actor(actor_id: str, address: str | None = None) -> dict[str, Any] | None:
    rows = list_actors(address, filters=[("actor_id", "=", actor_id)], detail=True)
    return rows[0] if rows else None


def summarize_actors(address: str | None = None) -> dict[str, Any]:
    rows = list_actors(address, limit=100_000)
    summary: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = summary.setdefault(r["class_name"], {"class_name": r["class_name"], "state_counts": {}})
        entry["state_counts"][r["state"]] = entry["state_counts"].get(r["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows)}}


# ---- nodes, jobs, placement groups ----------------------------------------------------------------------


def node_row(n: gcs_pb2.NodeInfo, detail: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "node_id": n.node_id.hex(),
        "node_ip": n.node_ip,
        "is_head_node": n.is_head,
        "state": "ALIVE" if n.state == gcs_pb2.NodeInfo.ALIVE else "DEAD",
        "state_message": n.death_reason_message or None,
        "node_name": n.node_name,
        "resources_total": dict(n.resources_total),
        "labels": dict(n.labels),
    }
    if detail:
        row.update({"start_time_ms": n.start_time_ms, "end_time_ms": n.end_time_ms or None,
                    "raylet_port": n.raylet_port, "object_store_bytes": n.object_store_bytes})
    return row


def list_nodes(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
               timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False, format: str | None = None) -> Any:
    _check_format(format)
    gcs = _Gcs(address)
    try:
        reply = gcs.call("GetAllNodeInfo", None, timeout)
    finally:
        gcs.close()
    rows = [node_row(n, detail) for n in reply.nodes]
    return _rows("nodes", [r for r in rows if _match(r, filters)][:limit], detail, format)


def get_node(node_id: str, address: str | None = None) -> dict[str, Any] | None:
    rows = list_nodes(address, filters=[("node_id", "=", node_id)], detail=True)
    return rows[0] if rows else None


def list_jobs(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
              timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False, format: str | None = None) -> Any:
    _check_format(format)
    gcs = _Gcs(address)
    try:
        reply = gcs.call("GetAllJobInfo", None, timeout)
    finally:
        gcs.close()
    rows = [{
        "job_id": j.job_id.hex(), "type": "DRIVER", "status": "SUCCEEDED" if j.is_dead else "RUNNING",
        "entrypoint": j.entrypoint, "start_time": j.start_time_ms, "end_time": j.end_time_ms or None,
        "driver_info": {"pid": j.driver_pid, "node_ip_address": j.driver.host}, "namespace": j.namespace,
    } for j in reply.jobs]
    return _rows("jobs", [r for r in rows if _match(r, filters)][:limit], detail, format)


def placement_group_row(pg: gcs_pb2.PlacementGroupInfo, detail: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "placement_group_id": pg.placement_group_id.hex(),
        "name": pg.name,
        "creator_job_id": pg.creator_job_id.hex(),
        "state": _PG_STATES.get(pg.state, "PENDING"),
        "is_detached": pg.is_detached,
    }
    if detail:
        row["bundles"] = [{"bundle_id": i, "unit_resources": dict(b.amounts),
                           "node_id": pg.bundle_node_ids[i].hex() if i < len(pg.bundle_node_ids) else None}
                          for i, b in enumerate(pg.bundles)]
        row["strategy"] = _PG_STRATEGIES.get(pg.strategy, "PACK")
        row["stats"] = {"scheduling_state": pg.pending_reason or "FINISHED"}
    return row


def list_placement_groups(address: str | None = None, filters: list[Filter] | None = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = 30, detail: bool = False,
                          raise_on_missing_output: bool = True, _explain: bool = False, format: str | None = None) -> Any:
    _check_format(format)
    gcs = _Gcs(address)
    try:
        reply = gcs.call("GetAllPlacementGroup", None, timeout)
    finally:
        gcs.close()
    rows = [placement_group_row(p, detail) for p in reply.placement_groups]
    return _rows("placement_groups", [r for r in rows if _match(r, filters)][:limit], detail, format)


# ---- objects and workers ----------------------------------------------------------------------------------


def _node_stats(gcs: _Gcs, include_objects: bool, include_workers: bool) -> list[tuple[Any, Any]]:
    nodes = gcs.call("GetAllNodeInfo").nodes
    out = []
    for n in nodes:
        if n.state != gcs_pb2.NodeInfo.ALIVE:
            continue
        try:
            with gcs.peer(f"{n.node_ip}:{n.raylet_port}") as raylet:
                stats = raylet.call("RayletService.GetNodeStats", raylet_pb2.GetNodeStatsRequest(
                    include_objects=include_objects, include_workers=include_workers))
        except (ConnectionError, OSError, TimeoutError):
            continue
        out.append((n, stats))
    return out


def list_objects(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False, format: str | None = None) -> Any:
    """References held by every driver and worker, with sizes (Ray's list_objects)."""
    _check_format(format)
    gcs = _Gcs(address)
    rows: list[dict[str, Any]] = []
    try:
        for node, stats in _node_stats(gcs, include_objects=True, include_workers=True):
            in_store = {o.object_id: o for o in stats.objects}
            for w in stats.workers:
                if not w.address.port:
                    continue
                try:
                    with gcs.peer(f"{w.address.host}:{w.address.port}") as peer:
                        cw = peer.call("CoreWorkerService.GetCoreWorkerStats", common_pb2.Empty(), 5.0)
                except (ConnectionError, OSError, TimeoutError):
                    continue
                for r in cw.refs:
                    stored = in_store.get(r.object_id)
                    rows.append({
                        "object_id": r.object_id.hex(),
                        "object_size": r.size or (stored.data_size if stored is not None else 0),
                        "task_status": r.task_status,
                        "attempt_number": 0,
                        "reference_type": r.reference_type,
                        "call_site": r.call_site or "disabled",
                        "type": "DRIVER" if w.worker_type == "driver" else "WORKER",
                        "pid": w.pid,
                        "ip": node.node_ip,
                        "node_id": node.node_id.hex(),
                        "worker_id": w.worker_id.hex(),
                        "owner_worker_id": r.owner.worker_id.hex(),
                        "owned": r.owned,
                        "in_plasma": r.in_plasma,
                        "where": stored.where if stored is not None else ("INLINE" if not r.in_plasma else ""),
                    })
    finally:
        gcs.close()
    return _rows("objects", [r for r in rows if _match(r, filters)][:limit], detail, format)


def summarize_objects(address: str | None = None) -> dict[str, Any]:
    rows = list_objects(address, limit=100_000)
    total = sum(r["object_size"] for r in rows if r["owned"])
    return {"cluster": {"total_objects": len(rows), "total_size_mb": total / 2**20}}


def list_workers(address: str | None = None, filters: list[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = 30, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False, format: str | None = None) -> Any:
    _check_format(format)
    gcs = _Gcs(address)
    try:
        rows = []
        for node, stats in _node_stats(gcs, include_objects=False, include_workers=True):
            for w in stats.workers:
                rows.append({"worker_id": w.worker_id.hex(), "is_alive": True,
                             "worker_type": "DRIVER" if w.worker_type == "driver" else "WORKER",
                             "node_id": node.node_id.hex(), "ip": node.node_ip, "pid": w.pid,
                             "job_id": w.job_id.hex() if w.job_id else None,
                             "actor_id": w.actor_id.hex() if w.actor_id else None,
                             "is_idle": w.is_idle, "resources": dict(w.resources)})
    finally:
        gcs.close()
    return _rows("workers", [r for r in rows if _match(r, filters)][:limit], detail, format)


# ---- timeline -----------------------------------------------------------------------------------------------


def timeline_events(address: str | None = None) -> list[dict[str, Any]]:
    """Chrome trace events of every task attempt the GCS keeps (see nbray.util.timeline)."""
    from nbray.util.timeline import trace_events

    return trace_events(read_task_rows(address))


class StateApiClient:
    """Object form of the functions above (Ray's StateApiClient)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def list(self, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        fn = {"tasks": list_tasks, "actors": list_actors, "objects": list_objects, "nodes": list_nodes,
              "jobs": list_jobs, "placement_groups": list_placement_groups, "workers": list_workers}[resource]
        return fn(self.address, **kwargs)

