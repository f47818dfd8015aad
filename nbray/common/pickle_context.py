"""The thread's pickling context: what ``ObjectRef.__reduce__`` records while a value is pickled.

Kept apart from ``serialization.py`` (and cloudpickle, which it imports) so
that ``nbray.object_ref`` can be imported, e.g. by a driver before it starts
its cluster, without the serializer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Context(threading.local):
    def __init__(self) -> None:
        # Set while pickling: (object_id, owner_address_bytes) of each ref met.
        self.nested_refs: list[tuple[bytes, bytes]] | None = None
        # Set while unpickling: receives each ObjectRef rebuilt.
        self.on_ref_deserialized: Callable[[Any], None] | None = None


context = _Context()


def record_nested_ref(object_id: bytes, owner: bytes) -> None:
    """Called by ObjectRef.__reduce__ while a value is being pickled."""
    refs = context.nested_refs
    if refs is not None:
        refs.append((object_id, owner))
