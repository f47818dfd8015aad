"""Rich output carried inside worker stdout (pure logic, no I/O).

Runs in workers (encoding) and in the notebook kernel (decoding). A worker
cannot publish on the notebook's IOPub socket, but its stdout already
reaches the driver line by line, tagged with the task and notebook cell
(``raylet/log_router.py``). So rich output travels as *marker lines*::

    \\x00nbray-out\\x00<kind> <message id> <chunk index> <chunk count> <JSON chunk>

Kinds: ``display`` (a MIME bundle for ``display_data`` or, with
``update``, ``update_display_data``), ``clear`` (``clear_output``) and
``end`` (a remote cell finished writing: the notebook side waits for it
so a cell's output is complete when the cell returns). JSON is ASCII with
no raw newlines, and chunks are short, so a marker never spans lines and
the log router never splits one (it splits lines over 64 KiB).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MARKER = "\x00nbray-out\x00"
CHUNK_CHARS = 16 * 1024
KINDS = ("display", "clear", "end")
MAX_PENDING_MESSAGES = 256


def encode(kind: str, payload: dict[str, Any]) -> list[str]:
    """Marker lines (each ending in a newline) carrying `payload`."""
    assert kind in KINDS, kind
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    msg_id = uuid.uuid4().hex[:16]
    chunks = [data[i:i + CHUNK_CHARS] for i in range(0, len(data), CHUNK_CHARS)] or [""]
    n = len(chunks)
    return [f"{MARKER}{kind} {msg_id} {i} {n} {chunk}\n" for i, chunk in enumerate(chunks)]


@dataclass(frozen=True)
class Message:
    """A decoded rich-output message."""

    kind: str
    payload: dict[str, Any]


Segment = str | Message
"""Plain text, or a decoded message, in the order they were written."""


class Assembler:
    """Splits worker text into plain text and messages, joining chunks.

    One per notebook session; `stream` identifies a worker's stdout or
    stderr (chunks of one message always come from one stream, in order).
    Messages whose chunks never complete (a worker killed mid-write) are
    dropped once `MAX_PENDING_MESSAGES` newer ones are pending.
    """

    def __init__(self) -> None:
        self._pending: OrderedDict[tuple[Any, str], list[str]] = OrderedDict()

    def feed(self, stream: Any, text: str) -> list[Segment]:
        if MARKER not in text:
            return [text] if text else []
        out: list[Segment] = []
        plain: list[str] = []
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            if not line.startswith(MARKER):
                plain.append(line)
                continue
            if plain:
                out.append("\n".join(plain) + "\n")
                plain = []
            message = self._chunk(stream, line[len(MARKER):])
            if message is not None:
                out.append(message)
        if plain:
            out.append("\n".join(plain) + ("\n" if text.endswith("\n") else ""))
        return out

    def _chunk(self, stream: Any, body: str) -> Message | None:
        parts = body.split(" ", 4)
        if len(parts) != 5 or parts[0] not in KINDS:
            return None  # not ours after all; drop the malformed marker
        kind, msg_id, index_s, count_s, chunk = parts
        try:
            index, count = int(index_s), int(count_s)
        except ValueError:
            return None
        if count == 1:
            return _decode(kind, chunk)
        key = (stream, msg_id)
        chunks = self._pending.get(key)
        if chunks is None:
            if index != 0:
                return None  # the start was lost
            chunks = self._pending[key] = []
            while len(self._pending) > MAX_PENDING_MESSAGES:
                self._pending.popitem(last=False)
        if index != len(chunks):
            del self._pending[key]
            return None
        chunks.append(chunk)
        if len(chunks) < count:
            return None
        del self._pending[key]
        return _decode(kind, "".join(chunks))


def _decode(kind: str, data: str) -> Message | None:
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    return Message(kind, payload) if isinstance(payload, dict) else None
