"""Worker output on Ray Client (``ray://``) into the notebook's cells.

Runs in the notebook kernel. On Ray Client the kernel is no Ray driver: the
cluster runs one on the client's behalf, and Ray streams that driver's
forwarded worker output to the client as text (``LogData``: a message and a
level, -1 stdout, -2 stderr), each line already formatted by Ray as
``(NAME pid=PID, ip=IP) text``. The stream carries no task id, job or
timestamp, so a line cannot be traced to the cell that submitted its task
(on a driver, ``ray_logs`` does that): it goes to the cell that runs when it
arrives. Output a cell waits for lands under it; output arriving after its
cell finished goes to the cell running then. ``ClientLogTap`` takes the text
from Ray Client's log stream (an attribute of the connection's own
``LogstreamClient`` object, none of Ray's classes) and hands it to the
notebook's output handler as log batches, so the prints, ``display()`` and
figures of ``%%remote`` cells are decoded as on a driver; without a handler
Ray prints as usual.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nbray.jupyter.backends.base import LogBatch, LogEntry, OutputHandler

STDERR_LEVEL = -2
"""Ray Client's level for a worker's stderr (-1: stdout)."""
_COLOR = r"(?:\x1b\[[0-9;]*m)*"
_PREFIX = re.compile(_COLOR + r"\((?P<name>[^()]*?) pid=(?P<pid>\d+)(?:, ip=(?P<ip>[^)]*))?\)" + _COLOR + " ?")


def parse_client_text(msg: str, is_err: bool, tag: str) -> list[LogEntry]:
    """The lines of one Ray Client log message as entries of the cell `tag`,
    Ray's ``(NAME pid=PID, ip=IP)`` prefix taken into the entry's fields."""
    entries = []
    for line in msg.splitlines():
        match = _PREFIX.match(line)
        if match is None:
            entries.append(LogEntry(text=line + "\n", is_err=is_err, context_tag=tag))
            continue
        entries.append(LogEntry(text=line[match.end():] + "\n", is_err=is_err, context_tag=tag,
                                task_name=match["name"], pid=int(match["pid"]), node_ip=match["ip"] or ""))
    return entries


class ClientLogTap:
    """Takes over the text Ray Client's log stream would print."""

    def __init__(self, log_client: Any, current_tag: Callable[[], str],
                 handler: Callable[[], OutputHandler | None]) -> None:
        self.log_client = log_client
        self.current_tag = current_tag
        self.handler = handler
        self._ray_print: Callable[[int, str], None] | None = None

    def install(self) -> None:
        if self._ray_print is None:
            self._ray_print = self.log_client.stdstream
            self.log_client.stdstream = self.on_text

    def uninstall(self) -> None:
        if self._ray_print is not None and getattr(self.log_client, "stdstream", None) == self.on_text:
            self.log_client.stdstream = self._ray_print
        self._ray_print = None

    def on_text(self, level: int, msg: str) -> None:
        """Called on Ray Client's log thread."""
        handler = self.handler()
        if handler is None:
            if self._ray_print is not None:
                self._ray_print(level, msg)
            return
        entries = parse_client_text(msg, level == STDERR_LEVEL, self.current_tag())
        if entries:
            handler(LogBatch(entries))


def client_log_stream(ray: Any) -> Any:
    """The connected Ray Client's ``LogstreamClient`` (None where this Ray has none)."""
    try:
        from ray.util.client import ray as client_api  # the connection Ray Client's ray.init made
    except ImportError:
        return None
    if not hasattr(type(client_api), "get_context"):  # asked of the class: the stub's __getattr__ raises
        return None
    worker = getattr(client_api.get_context(), "client_worker", None)
    stream = getattr(worker, "log_client", None)
    return stream if callable(getattr(stream, "stdstream", None)) else None
