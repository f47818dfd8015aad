"""``nbray.get_runtime_context()``: what the calling code is running as."""

from __future__ import annotations

from typing import Any

from nbray.common import ids
from nbray.worker import context


class RuntimeContext:
    """Ids, resources and namespace of the current driver, task or actor."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def _ctx(self) -> context.TaskContext:
        return context.current()

    def get_job_id(self) -> str:
        return self._ctx().job_id.hex()

    def get_node_id(self) -> str:
        return str(self._core.node_id.hex())

    def get_task_id(self) -> str | None:
        ctx = self._ctx()
        if not self._core.is_worker:
            return None
        return ctx.task_id.hex()

    def get_task_name(self) -> str | None:
        return self._ctx().name if self._core.is_worker else None

    def get_task_function_name(self) -> str | None:
        return self._ctx().func_name if self._core.is_worker else None

    def get_actor_id(self) -> str | None:
        actor = self._core.actor_id
        return actor.hex() if actor else None

    def get_actor_name(self) -> str | None:
        spec = self._core.actor_spec
        return spec.actor_name if spec is not None and spec.actor_name else None

    def get_worker_id(self) -> str:
        return str(self._core.worker_id.hex())

    def get_placement_group_id(self) -> str | None:
        pg = self._ctx().placement_group_id
        return pg.hex() if pg else None

    def get_assigned_resources(self) -> dict[str, float]:
        ctx = self._ctx()
        out = {k: v for k, v in ctx.resources.items() if "_group_" not in k}
        for k, v in ctx.resources.items():
            if "_group_" in k and not k.startswith("bundle_group_"):
                base = k.split("_group_", 1)[0]
                out[base] = max(out.get(base, 0.0), v)
        return out

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        ids_ = self._ctx().resource_ids
        return {"GPU": list(ids_.get("GPU", []))}

    def get_resource_ids(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._ctx().resource_ids.items()}

    def get_node_labels(self) -> dict[str, str]:
        return {}

    def get_runtime_env_string(self) -> str:
        import json

        return json.dumps(self._ctx().runtime_env or {})

    @property
    def runtime_env(self) -> dict[str, Any]:
        return dict(self._ctx().runtime_env or {})

    @property
    def namespace(self) -> str:
        return self._ctx().namespace or str(self._core.namespace)

    @property
    def gcs_address(self) -> str:
        return str(self._core.gcs_address)

    def get_session_name(self) -> str:
        import os

        return os.path.basename(self._core.session_dir)

    def get_temp_dir(self) -> str:
        return str(self._core.session_dir)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        spec = self._core.actor_spec
        return bool(spec is not None and spec.attempt_number > 0)

    @property
    def current_actor(self) -> Any:
        from nbray.actor import handle_from_info
        from nbray.protocol import gcs_pb2

        if not self._core.actor_id:
            raise RuntimeError("current_actor is only available inside an actor")
        reply = self._core.gcs.call("GetActorInfo", gcs_pb2.GetActorInfoRequest(actor_id=self._core.actor_id))
        return handle_from_info(reply.actor)

    def is_canceled(self) -> bool:
        return self._ctx().cancelled

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        return self._ctx().capture_child_tasks

    # legacy id-object properties
    @property
    def job_id(self) -> ids.JobID:
        return ids.JobID(self._ctx().job_id)

    @property
    def node_id(self) -> ids.NodeID:
        return ids.NodeID(self._core.node_id)

    @property
    def task_id(self) -> ids.TaskID | None:
        return ids.TaskID(self._ctx().task_id) if self._core.is_worker else None

    @property
    def actor_id(self) -> ids.ActorID | None:
        return ids.ActorID(self._core.actor_id) if self._core.actor_id else None

    def get(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace}
        if self._core.is_worker:
            out["task_id"] = self.task_id
        if self._core.actor_id:
            out["actor_id"] = self.actor_id
        return out
