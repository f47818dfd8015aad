"""Where this process created its ObjectRefs (drivers and workers).

``nbray memory`` shows, for each reference, the line of user code that
made it (``put``, a task call, an actor call). Walking the stack costs a
little on every call, so it is off unless the config's
``record_ref_creation_sites`` is set (``NBRAY_RECORD_REF_CREATION_SITES=1``,
or Ray's ``RAY_record_ref_creation_sites=1``). Each core worker keeps its
own bounded table; a site outlives its object at most until evicted.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# Ray's switch, honoured too (read once: it is set before the process starts).
_RAY_SWITCH_ON = os.environ.get("RAY_record_ref_creation_sites") == "1"  # noqa: SIM112 (Ray spells it so)
_DEFAULT_CAPACITY = 100_000  # where a process has no config (notebook clients)


class CallSiteTable:
    """Object id -> call site, at most `capacity` of them (oldest go first)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._sites: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, object_ids: Iterable[bytes], site: str) -> None:
        with self._lock:
            for oid in object_ids:
                self._sites[oid] = site
                self._sites.move_to_end(oid)
            while len(self._sites) > self._capacity:
                self._sites.popitem(last=False)

    def get(self, object_id: bytes) -> str:
        return self._sites.get(object_id, "")

    def __len__(self) -> int:
        return len(self._sites)


_tables: weakref.WeakKeyDictionary[Any, CallSiteTable] = weakref.WeakKeyDictionary()


def enabled(core: Any) -> bool:
    config = getattr(core, "config", None)  # notebook clients record nothing
    return _RAY_SWITCH_ON or bool(config is not None and config.record_ref_creation_sites)


def record(core: Any, refs: Iterable[Any], kind: str) -> None:
    """Remember the user code line that made `refs` ("put object", "task
    call", "actor call"); does nothing unless recording is on."""
    if not enabled(core):
        return
    table = _tables.get(core)
    if table is None:
        capacity = core.config.max_recorded_call_sites if getattr(core, "config", None) is not None else 0
        table = _tables.setdefault(core, CallSiteTable(capacity or _DEFAULT_CAPACITY))
    table.add((r.binary() for r in refs), f"({kind}) {user_frame(sys._getframe(1))}")


def lookup(core: Any, object_id: bytes) -> str:
    """The recorded call site of an object of this process ("" if none)."""
    table = _tables.get(core)
    return table.get(object_id) if table is not None else ""


def user_frame(frame: Any) -> str:
    """"file:line:function" of the innermost frame outside nbray."""
    while frame is not None and frame.f_code.co_filename.startswith(_PKG_DIR):
        frame = frame.f_back
    if frame is None:
        return "unknown"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}:{frame.f_code.co_name}"
