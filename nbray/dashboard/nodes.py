"""The dashboard's view of nodes, actors and jobs (dashboard process).

A node row combines three sources that change at different rates:

- the GCS node table (NODE channel): identity, alive or dead;
- the resource view (RESOURCE_VIEW channel, every ~200 ms): resources
  available and total, object store used, spilled and capacity;
- the raylet's ``GetNodeStats`` (polled while someone watches): which GPU
  each worker holds, the workers and the number of stored objects.

``TaskTable`` says which task runs on a worker, so GPU holders are shown as
the task or actor using the GPU. No I/O here.
"""

from __future__ import annotations

from typing import Any

from nbray.dashboard.tasks import TaskTable, encode
from nbray.protocol import gcs_pb2, raylet_pb2
from nbray.util import state as state_api


class NodeTable:
    def __init__(self) -> None:
        self._info: dict[str, gcs_pb2.NodeInfo] = {}
        self._resources: dict[str, gcs_pb2.NodeResources] = {}
        self._stats: dict[str, raylet_pb2.GetNodeStatsReply] = {}
        self._encoded: dict[str, str] = {}

    def node_ids(self) -> list[str]:
        return list(self._info)

    def alive(self) -> list[gcs_pb2.NodeInfo]:
        return [n for n in self._info.values() if n.state == gcs_pb2.NodeInfo.ALIVE]

    def set_info(self, info: gcs_pb2.NodeInfo) -> None:
        node_id = info.node_id.hex()
        self._info[node_id] = info
        if info.state != gcs_pb2.NodeInfo.ALIVE:
            self._resources.pop(node_id, None)
            self._stats.pop(node_id, None)

    def set_resources(self, view: gcs_pb2.ResourceView) -> None:
        for n in view.nodes:
            self._resources[n.node_id.hex()] = n

    def set_stats(self, node_id: str, stats: raylet_pb2.GetNodeStatsReply) -> None:
        if node_id in self._info:
            self._stats[node_id] = stats

    def rows(self, tasks: TaskTable, actors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [self._row(node_id, tasks, actors) for node_id in self._info]

    def changed_rows(self, tasks: TaskTable, actors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows that differ from the last call (for the event stream)."""
        changed = []
        for node_id in self._info:
            row = self._row(node_id, tasks, actors)
            text = encode(row)
            if self._encoded.get(node_id) != text:
                self._encoded[node_id] = text
                changed.append(row)
        return changed

    def _row(self, node_id: str, tasks: TaskTable, actors: dict[str, dict[str, Any]]) -> dict[str, Any]:
        info = self._info[node_id]
        alive = info.state == gcs_pb2.NodeInfo.ALIVE
        res = self._resources.get(node_id)
        stats = self._stats.get(node_id)
        total = dict(info.resources_total)
        available: dict[str, float] = {}
        if res is not None:
            total = dict(res.total) or total
            available = dict(res.available)
        elif stats is not None:
            available = dict(stats.available)
        if not alive:
            available = {}
        capacity = (res.object_store_bytes if res is not None and res.object_store_bytes else
                    stats.store_capacity_bytes if stats is not None else info.object_store_bytes)
        used = res.object_store_used_bytes if res is not None else (stats.store_used_bytes if stats else 0)
        spilled = res.object_store_spilled_bytes if res is not None else (stats.store_spilled_bytes if stats else 0)
        return {
            "node_id": node_id,
            "node_ip": info.node_ip,
            "node_name": info.node_name or info.hostname,
            "hostname": info.hostname,
            "is_head_node": info.is_head,
            "state": "ALIVE" if alive else "DEAD",
            "state_message": info.death_reason_message or None,
            "start_time_ms": info.start_time_ms,
            "end_time_ms": info.end_time_ms or None,
            "resources_total": total,
            "resources_available": available,
            "cpu": _usage(total, available, "CPU", alive),
            "gpu": _usage(total, available, "GPU", alive),
            "memory": _usage(total, available, "memory", alive),
            "gpus_in_use": _gpu_holders(stats, tasks, actors) if alive else [],
            "object_store": {
                "capacity_bytes": int(capacity),
                "used_bytes": int(used) if alive else 0,
                "spilled_bytes": int(spilled) if alive else 0,
                "num_objects": stats.num_objects if (stats is not None and alive) else None,
            },
            "num_workers": len(stats.workers) if (stats is not None and alive) else None,
            "pending_leases": res.pending if res is not None else 0,
        }


def _usage(total: dict[str, float], available: dict[str, float], name: str, alive: bool) -> dict[str, float]:
    t = float(total.get(name, 0.0))
    a = float(available.get(name, t if alive else 0.0))
    return {"total": t, "used": max(0.0, t - a) if alive else 0.0}


def _gpu_holders(stats: raylet_pb2.GetNodeStatsReply | None, tasks: TaskTable,
                 actors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if stats is None:
        return []
    workers = {w.worker_id: w for w in stats.workers}
    out = []
    for gpu_id, worker_id in sorted(stats.gpu_holders.items()):
        w = workers.get(worker_id)
        holder: dict[str, Any] = {"gpu_id": gpu_id, "worker_id": worker_id.hex(),
                                  "pid": w.pid if w is not None else None,
                                  "task_id": None, "task_name": None, "actor_id": None, "actor_class": None}
        if w is not None and w.actor_id:
            actor_id = w.actor_id.hex()
            holder["actor_id"] = actor_id
            actor = actors.get(actor_id)
            holder["actor_class"] = actor["class_name"] if actor else None
        task = tasks.running_task_of_worker(worker_id.hex())
        if task is not None:
            holder["task_id"] = task["task_id"]
            holder["task_name"] = task["name"]
        out.append(holder)
    return out


def actor_row(a: gcs_pb2.ActorInfo) -> dict[str, Any]:
    row = state_api.actor_row(a, detail=True)
    row["death_cause"] = a.death_cause.message or None
    return row


def job_row(j: gcs_pb2.JobInfo) -> dict[str, Any]:
    return {"job_id": j.job_id.hex(), "status": "SUCCEEDED" if j.is_dead else "RUNNING",
            "entrypoint": j.entrypoint, "start_time_ms": j.start_time_ms, "end_time_ms": j.end_time_ms or None,
            "driver_pid": j.driver_pid, "driver_ip": j.driver.host, "namespace": j.namespace}
