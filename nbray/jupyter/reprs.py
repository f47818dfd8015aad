"""Rich representations of nbray objects in notebooks.

Runs in the driver (notebook kernel). HTML tables for ``ObjectRef``,
``ObjectRefGenerator`` and actor handles (state, size, owner, node), and
for the context ``nbray.init()`` returns; in a notebook kernel with
ipywidgets the context also shows as a widget (``context_mimebundle``,
called from ``RayContext._repr_mimebundle_``). Outside notebooks only
plain text is offered.
"""

from __future__ import annotations

import html
from typing import Any

_STYLE = ("font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; "
          "border-collapse: collapse;")


def in_notebook() -> bool:
    """True in a Jupyter kernel (a frontend that renders HTML and widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _table(title: str, rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><td style='padding:2px 8px;text-align:left;font-weight:600'>{html.escape(str(k))}</td>"
        f"<td style='padding:2px 8px;text-align:left'>{v}</td></tr>"
        for k, v in rows)
    return (f"<div class='nbray-repr'><div style='font-weight:700;margin-bottom:4px'>{html.escape(title)}</div>"
            f"<table style='{_STYLE}'>{body}</table></div>")


# ---- the cluster context -------------------------------------------------------------------------------


def context_html(summary: dict[str, Any]) -> str:
    rows = []
    for key, value in summary.items():
        if key == "Dashboard" and value:
            value = f"<a href='{html.escape(str(value))}' target='_blank'>{html.escape(str(value))}</a>"
        else:
            value = html.escape(str(value))
        rows.append((key, value))
    return _table("nbray cluster", rows)


def context_mimebundle(context: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """MIME bundle of a ``RayContext``: a widget (summary table and a
    Disconnect button) plus HTML in notebooks; plain text elsewhere."""
    text = repr(context)
    if not in_notebook():
        return {"text/plain": text}
    summary = context._summary()
    page = context_html(summary)
    try:
        widget = context_widget(context, page)
    except ImportError:
        return {"text/plain": text, "text/html": page}
    bundle = dict(widget._repr_mimebundle_() or {})
    bundle["text/plain"] = text
    bundle["text/html"] = page
    return bundle


def context_widget(context: Any, page: str | None = None) -> Any:
    import ipywidgets as w

    table = w.HTML(page if page is not None else context_html(context._summary()))
    button = w.Button(description="Disconnect", icon="plug", tooltip="nbray.shutdown()",
                      layout=w.Layout(width="auto"))

    def disconnect(_: Any) -> None:
        context.disconnect()
        button.disabled = True
        button.description = "Disconnected"

    button.on_click(disconnect)
    return w.VBox([table, button])


# ---- objects ----------------------------------------------------------------------------------------------


def _object_state(ref: Any) -> dict[str, str]:
    """state, size, owner and node of `ref`, from this process's view."""
    from nbray.object_ref import _core

    core = _core[0]
    out = {"state": "unknown"}
    if core is not None and hasattr(core, "object_info"):
        return _client_object_state(core, ref)
    if core is None or not hasattr(core, "memory_store"):
        return _state_by_wait(ref)
    entry = core.memory_store.get(ref.binary())
    owned = core.refs.is_owned(ref.binary())
    out["owner"] = "this process" if owned else _owner_text(ref)
    if entry is None:
        out["state"] = "pending"
        return out
    out["size"] = f"{entry.size:,} bytes"
    if entry.is_error:
        out["state"] = "failed"
    elif entry.in_plasma:
        out["state"] = "ready (shared memory)"
        out["node"] = entry.node_id.hex()[:12] if entry.node_id else ""
    else:
        out["state"] = "ready (inline)"
        out["node"] = core.node_id.hex()[:12] + " (owner)"
    return out


def _client_object_state(core: Any, ref: Any) -> dict[str, str]:
    """Client mode: the owner is this notebook's session on the cluster."""
    try:
        info = core.object_info(ref.binary())
    except Exception:
        return {"state": "unknown"}
    owned = ref.owner_address() == core.address_bytes
    out = {"state": info.state, "owner": "this notebook's session" if owned else _owner_text(ref)}
    if info.state == "pending":
        return out
    out["size"] = f"{info.size:,} bytes"
    if info.state == "ready":
        out["state"] = "ready (shared memory)" if info.in_shared_memory else "ready (inline)"
    out["node"] = info.node_id.hex()[:12]
    return out


def _owner_text(ref: Any) -> str:
    try:
        from nbray.protocol import common_pb2

        addr = common_pb2.Address()
        addr.ParseFromString(ref.owner_address())
        return f"worker {addr.worker_id.hex()[:8]} at {addr.host}:{addr.port}"
    except Exception:
        return "another process"


def _state_by_wait(ref: Any) -> dict[str, str]:
    import nbray

    if not nbray.is_initialized():
        return {"state": "unknown (not connected)"}
    try:
        ready, _ = nbray.wait([ref], timeout=0, fetch_local=False)
    except Exception:
        return {"state": "unknown"}
    return {"state": "ready" if ready else "pending"}


def ref_failed(ref: Any) -> bool:
    """True when the ready `ref` holds an error (without fetching big values)."""
    from nbray.object_ref import _core

    core = _core[0]
    if core is not None and hasattr(core, "memory_store"):
        entry = core.memory_store.get(ref.binary())
        if entry is not None:
            return bool(entry.is_error)
    import nbray
    from nbray.exceptions import RayError

    try:
        nbray.get(ref, timeout=0)
        return False
    except RayError:
        return True


def object_ref_html(ref: Any) -> str:
    info = _object_state(ref)
    rows = [("id", html.escape(ref.hex())), ("task", html.escape(ref.task_id().hex()))]
    rows += [(key, html.escape(value)) for key, value in info.items() if value]
    return _table("ObjectRef", rows)


def generator_html(gen: Any) -> str:
    done = gen.is_finished()
    return _table("ObjectRefGenerator", [("task", html.escape(gen._task_id.hex())),
                                         ("items taken", str(gen._next_index)),
                                         ("next item ready", "yes" if gen.next_ready() else "no"),
                                         ("finished", "yes" if done else "no")])


def actor_html(handle: Any) -> str:
    actor_hex = handle._actor_id.hex()
    rows: list[tuple[str, Any]] = [("class", html.escape(handle._class_name)), ("id", html.escape(actor_hex))]
    row = _actor_row(actor_hex)
    if row is not None:
        rows.append(("state", html.escape(str(row.get("state")))))
        if row.get("name"):
            rows.append(("name", html.escape(str(row["name"]))))
        if row.get("node_id"):
            rows.append(("node", html.escape(str(row["node_id"])[:12])))
        if row.get("pid"):
            rows.append(("pid", str(row["pid"])))
        if row.get("repr_name"):
            rows.append(("repr", html.escape(str(row["repr_name"]))))
    else:
        rows.append(("state", html.escape(_local_actor_state(handle))))
    return _table(f"Actor {handle._class_name}", rows)


def _actor_row(actor_hex: str) -> dict[str, Any] | None:
    import nbray

    if not nbray.is_initialized():
        return None
    try:
        from nbray.util.state import get_actor

        return get_actor(actor_hex)
    except Exception:
        return None


def _local_actor_state(handle: Any) -> str:
    from nbray.object_ref import _core

    core = _core[0]
    if core is not None and hasattr(core, "actor_submitter"):
        st = core.actor_submitter.state_of(handle._actor_id)
        if st is not None and st.known:
            from nbray.protocol import gcs_pb2

            return str(gcs_pb2.ActorInfo.State.Name(st.state))
    return "unknown"


def register() -> None:
    """Give the runtime's reference types their notebook HTML (the runtime
    core looks renderers up instead of importing this module)."""
    from nbray import object_ref

    object_ref.html_renderers.setdefault("ObjectRef", object_ref_html)
    object_ref.html_renderers.setdefault("ObjectRefGenerator", generator_html)
