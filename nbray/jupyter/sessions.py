"""Persistent remote namespaces for ``%%remote --session NAME``.

Runs in the notebook kernel. A session is an actor
(``remote_cell.RemoteCellSession``) created with the resources of the
first cell that names it (``--num-gpus 1`` keeps one GPU for the
session's lifetime); later cells reuse it, and its variables, until
``%nbray close NAME`` or the kernel ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

from nbray.jupyter import backends


@dataclass
class SessionInfo:
    name: str
    handle: Any
    options: dict[str, Any]
    node: str | None
    created_s: float = field(default_factory=time.time)
    cells_run: int = 0
    alive: bool = True
    names: set[str] = field(default_factory=set)
    """Names the session's cells bind: read from the session, not sent from the notebook."""

    @property
    def actor_id(self) -> str:
        return backends.current().session_id(self.handle)


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionInfo] = {}

    def get_or_create(self, name: str, options: dict[str, Any], node: str | None) -> SessionInfo:
        """The live session `name`, created with `options` if new.

        Raises UsageError when it exists with other resources."""
        info = self._sessions.get(name)
        if info is not None and info.alive:
            if (options and options != info.options) or (node and node != info.node):
                raise UsageError(
                    f"session {name!r} already exists with {_describe(info.options, info.node)}; "
                    f"run '%nbray close {name}' first to recreate it with {_describe(options, node)}")
            return info
        handle = backends.current().create_session(name, options, node or "")
        info = SessionInfo(name, handle, dict(options), node)
        self._sessions[name] = info
        return info

    def get(self, name: str) -> SessionInfo | None:
        return self._sessions.get(name)

    def mark_dead(self, name: str) -> None:
        info = self._sessions.get(name)
        if info is not None:
            info.alive = False

    def close(self, name: str) -> bool:
        info = self._sessions.pop(name, None)
        if info is None:
            return False
        if info.alive:
            backends.current().kill_session(info.handle)
        return True

    def close_all(self) -> list[str]:
        names = list(self._sessions)
        for name in names:
            self.close(name)
        return names

    def forget_all(self) -> None:
        """The cluster connection ended: every session died with it."""
        self._sessions.clear()

    def rows(self) -> list[dict[str, Any]]:
        out = []
        states = _actor_states([s.actor_id for s in self._sessions.values()])
        for info in self._sessions.values():
            state, node = states.get(info.actor_id, ("UNKNOWN", None))
            out.append({
                "name": info.name, "state": state if info.alive else "DEAD", "node": (node or "")[:12],
                "resources": _describe(info.options, info.node), "cells": info.cells_run,
                "actor_id": info.actor_id[:16],
            })
        return out


def _actor_states(actor_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    backend = backends.current()
    if not actor_ids or not backend.connected():
        return {}
    try:
        rows = backend.list_actors(limit=100_000)
    except Exception:  # a status table without states beats none
        return {}
    wanted = set(actor_ids)
    return {r["actor_id"]: (r["state"], r["node_id"]) for r in rows if r["actor_id"] in wanted}


def _describe(options: dict[str, Any], node: str | None) -> str:
    parts = [f"{k}={v}" for k, v in sorted(options.items())]
    if node:
        parts.append(f"node={node[:12]}")
    return ", ".join(parts) or "default resources"


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No sessions. Start one with %%remote --session NAME."
    columns = ["name", "state", "node", "resources", "cells", "actor_id"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
