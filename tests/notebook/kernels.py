"""Helpers to run notebooks and drive kernels in tests (nbclient, jupyter_client)."""

from __future__ import annotations

import contextlib
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager, start_new_kernel
from nbclient import NotebookClient

KERNEL_TIMEOUT_S = 60


# ---- executing whole notebooks ----------------------------------------------------------------------


@dataclass
class NamedCell:
    name: str
    source: str
    raises: bool = False


def build_notebook(cells: list[NamedCell]) -> Any:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for cell in cells:
        metadata: dict[str, Any] = {"name": cell.name}
        if cell.raises:
            metadata["tags"] = ["raises-exception"]
        nb.cells.append(nbformat.v4.new_code_cell(cell.source, metadata=metadata))
    return nb


def execute(nb: Any, env: dict[str, str] | None = None, timeout_s: int = 120, cwd: str | None = None,
            address: str | None = None) -> Any:
    """Run every cell; on a cell timeout, say what the cluster at `address` was doing."""
    from nbclient.exceptions import CellTimeoutError

    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": cwd or os.getcwd()}})
    try:
        client.execute(env=dict(os.environ, **(env or {})))
    except CellTimeoutError as exc:
        raise AssertionError(f"{exc}\n\ncluster state:\n{cluster_state(address)}") from None
    return nb


def cluster_state(address: str | None) -> str:
    """Actors, unfinished tasks and resource use, for failure messages."""
    if not address or "://" in address:
        return "(unknown)"
    from nbray.util.state import list_actors, list_tasks

    try:
        actors = [(a["class_name"], a["state"], a["required_resources"]) for a in list_actors(address, detail=True)]
        tasks = [(t["name"], t["state"], t["required_resources"]) for t in list_tasks(address, detail=True, limit=1000)
                 if t["state"] not in ("FINISHED", "FAILED")]
    except Exception as exc:  # the state itself is only a hint
        return f"(could not read: {exc!r})"
    return f"actors: {actors}\nunfinished tasks: {tasks}"


class ExecutedNotebook:
    """Lookups by cell name on an executed notebook."""

    def __init__(self, nb: Any) -> None:
        self.nb = nb
        self.cells = {c.metadata.get("name"): c for c in nb.cells if c.cell_type == "code"}

    def outputs(self, name: str) -> list[Any]:
        return list(self.cells[name].outputs)

    def stream(self, name: str, stream: str = "stdout") -> str:
        return "".join(o.text for o in self.outputs(name) if o.output_type == "stream" and o.name == stream)

    def result(self, name: str) -> dict[str, Any]:
        results = [o for o in self.outputs(name) if o.output_type == "execute_result"]
        assert results, f"cell {name!r} has no result; outputs: {self.outputs(name)}"
        return dict(results[-1].data)

    def displays(self, name: str) -> list[dict[str, Any]]:
        return [dict(o.data) for o in self.outputs(name) if o.output_type == "display_data"]

    def error(self, name: str) -> Any:
        errors = [o for o in self.outputs(name) if o.output_type == "error"]
        assert errors, f"cell {name!r} raised nothing; outputs: {self.outputs(name)}"
        return errors[-1]

    def widget_states(self) -> dict[str, dict[str, Any]]:
        """model id -> {"model_name": ..., "state": {...}} as saved with the notebook."""
        state = self.nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        return dict(state.get("state", {}))

    def widget(self, model_id: str) -> dict[str, Any]:
        return self.widget_states()[model_id]

    def widget_of(self, name: str, output: str = "execute_result") -> dict[str, Any]:
        for o in self.outputs(name):
            if o.output_type == output and "application/vnd.jupyter.widget-view+json" in o.data:
                return self.widget(o.data["application/vnd.jupyter.widget-view+json"]["model_id"])
        raise AssertionError(f"cell {name!r} shows no widget in its {output}")

    def children(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.widget(ref.removeprefix("IPY_MODEL_")) for ref in model["state"].get("children", [])]

    def descendants(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for child in self.children(model):
            out.append(child)
            out.extend(self.descendants(child))
        return out


# ---- a live kernel, message by message ---------------------------------------------------------------------


class LiveKernel:
    """A kernel driven through jupyter_client, for tests that act while a cell runs."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.km: KernelManager
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=dict(os.environ, **(env or {})),
                                            startup_timeout=KERNEL_TIMEOUT_S)

    def submit(self, code: str) -> str:
        return str(self.kc.execute(code))

    def next_iopub(self, timeout_s: float) -> dict[str, Any]:
        return dict(self.kc.get_iopub_msg(timeout=timeout_s))

    def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """IOPub messages up to and including the first matching `predicate`."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching IOPub message in {timeout_s} s; got {[m['msg_type'] for m in seen]}")
            try:
                msg = self.next_iopub(remaining)
            except queue.Empty:
                continue
            seen.append(msg)
            if predicate(msg):
                return seen

    def wait_idle(self, msg_id: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        return self.wait_for(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                             and m["content"]["execution_state"] == "idle", timeout_s)

    def reply(self, msg_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        while True:
            msg = self.kc.get_shell_msg(timeout=timeout_s)
            if msg["parent_header"].get("msg_id") == msg_id:
                return dict(msg["content"])

    def run(self, code: str, timeout_s: float = 60.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Execute `code`; (reply content, IOPub messages of this cell)."""
        msg_id = self.submit(code)
        messages = [m for m in self.wait_idle(msg_id, timeout_s) if m["parent_header"].get("msg_id") == msg_id]
        return self.reply(msg_id, timeout_s), messages

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextlib.contextmanager
def connected_kernel(address: str, env: dict[str, str] | None = None) -> Iterator[LiveKernel]:
    """A live kernel with the extension loaded and ``%nbray init ADDRESS`` run; shut down after."""
    k = LiveKernel(env=env)
    try:
        reply, _ = k.run(f"%load_ext nbray\nimport nbray\n%nbray init {address}")
        assert reply["status"] == "ok", reply
        yield k
    finally:
        k.shutdown()


def stream_text(messages: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)
