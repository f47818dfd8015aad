"""Small text helpers shared by the runtime and the notebook layer."""

from __future__ import annotations


def whole_chars(data: bytes) -> str:
    """``data`` decoded as UTF-8, less a character cut short at its end (a
    chunk of a log read by byte offset may end inside one)."""
    for cut in range(len(data), max(-1, len(data) - 4), -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace")
