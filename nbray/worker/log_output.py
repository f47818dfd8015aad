"""Worker output as a driver prints it (runs in the driver or client).

Worker logs reach the driver through the GCS; each line is printed with
the task's name and pid, as Ray does: ``(name pid=123) line``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbray.protocol import gcs_pb2


def print_logs(batch: gcs_pb2.LogBatch) -> None:
    """Default output of worker logs on a driver: "(name pid=123) line".
    Progress bars of ``tqdm_ray`` are drawn instead of printed."""
    # Imported with the first batch, not with the core worker: workers never
    # print batches, and a driver may never receive one.
    from nbray.experimental import bar_display

    batch = bar_display.take_bar_reports(batch)
    if batch.entries:
        with bar_display.bars_hidden():
            _print_log_entries(batch)


def _print_log_entries(batch: gcs_pb2.LogBatch) -> None:
    for entry in batch.entries:
        stream = sys.stderr if entry.is_err else sys.stdout
        if entry.task_name == "nbray":
            stream.write(entry.text)
            continue
        prefix = f"({entry.task_name or 'worker'} pid={entry.pid}"
        if entry.node_ip and entry.node_ip not in ("127.0.0.1", "localhost"):
            prefix += f", ip={entry.node_ip}"
        prefix += ") "
        text = entry.text
        lines = text.splitlines()
        stream.write("".join(prefix + line + "\n" for line in lines))
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
