"""HTML representations of nbray objects in notebooks."""

from __future__ import annotations

import html
from typing import Any

_STYLE = ("font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; "
          "border-collapse: collapse;")


def _table(title: str, rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><td style='padding:2px 8px;text-align:left;font-weight:600'>{html.escape(str(k))}</td>"
        f"<td style='padding:2px 8px;text-align:left'>{v}</td></tr>"
        for k, v in rows)
    return (f"<div class='nbray-repr'><div style='font-weight:700;margin-bottom:4px'>{html.escape(title)}</div>"
            f"<table style='{_STYLE}'>{body}</table></div>")


def context_html(summary: dict[str, Any]) -> str:
    rows = []
    for key, value in summary.items():
        if key == "Dashboard" and value:
            value = f"<a href='{html.escape(str(value))}' target='_blank'>{html.escape(str(value))}</a>"
        else:
            value = html.escape(str(value))
        rows.append((key, value))
    return _table("nbray cluster", rows)


def _object_state(ref: Any) -> tuple[str, str, str]:
    from nbray.object_ref import _core

    core = _core[0]
    if core is None:
        return "unknown", "", ""
    entry = core.memory_store.get(ref.binary())
    owner = "this process" if core.refs.is_owned(ref.binary()) else "another process"
    if entry is None:
        return "pending", "", owner
    if entry.is_error:
        return "failed", str(entry.size), owner
    where = f"shared memory ({entry.node_id.hex()[:8]})" if entry.in_plasma else "inline"
    return f"ready, {where}", str(entry.size), owner


def object_ref_html(ref: Any) -> str:
    state, size, owner = _object_state(ref)
    rows = [("id", html.escape(ref.hex())), ("state", html.escape(state))]
    if size:
        rows.append(("size (bytes)", size))
    if owner:
        rows.append(("owner", html.escape(owner)))
    return _table("ObjectRef", rows)


def generator_html(gen: Any) -> str:
    done = gen.is_finished()
    return _table("ObjectRefGenerator", [("task", html.escape(gen._task_id.hex())),
                                         ("items taken", str(gen._next_index)),
                                         ("finished", "yes" if done else "no")])


def actor_html(handle: Any) -> str:
    from nbray.object_ref import _core

    state = "unknown"
    core = _core[0]
    if core is not None:
        st = core.actor_submitter.state_of(handle._actor_id)
        if st is not None and st.known:
            from nbray.protocol import gcs_pb2

            state = gcs_pb2.ActorInfo.State.Name(st.state)
    return _table(f"Actor {handle._class_name}", [("id", html.escape(handle._actor_id.hex())),
                                                 ("state", html.escape(state))])
