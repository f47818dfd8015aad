"""``ray._private.internal_api`` names that Ray programs import.

``memory_summary()`` returns the text ``nbray memory`` prints: every
ObjectRef held by a driver or worker of the cluster (owner, size, why it is
held, where it was created) and the object stores' totals. It runs in the
calling process: a connected driver, or any process that can find the
cluster (``address=``, else the cluster started on this machine).
"""

from __future__ import annotations

from typing import Any

from nbray._private.memory_report import (
    StoreStats,
    check_options,
    entries_from_rows,
    format_report,
)

# The most references one report gathers (a cluster can hold millions).
MAX_REPORTED_REFERENCES = 100_000


def memory_summary(address: str | None = None, group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE",
                   units: str = "B", line_wrap: bool = True, stats_only: bool = False,
                   num_entries: int | None = None) -> str:
    """The memory report of the cluster at `address` (default: the connected
    or local one), as Ray's ``memory_summary``.

    group_by: NODE_ADDRESS or STACK_TRACE (the call site); sort_by:
    OBJECT_SIZE, REFERENCE_TYPE or PID; units: B, KB, MB or GB; num_entries:
    references listed per group (default all).

    Raises ValueError for a bad option, ConnectionError when no cluster is
    found.
    """
    check_options(group_by, sort_by, units)
    stores, owners = _stores_and_processes(address)
    rows: list[dict[str, Any]] = []
    if not stats_only:
        from nbray.util.state import list_objects

        rows = list_objects(address, limit=MAX_REPORTED_REFERENCES)
    return format_report(entries_from_rows(rows, owners), stores, group_by=group_by, sort_by=sort_by,
                         units=units, line_wrap=line_wrap, stats_only=stats_only, num_entries=num_entries)


def _stores_and_processes(address: str | None) -> tuple[list[StoreStats], dict[str, str]]:
    """Each alive node's store totals, and a name for every driver and
    worker by worker id (to show who owns each object)."""
    from nbray.util.state import _Gcs, _node_stats  # the state API's cluster access

    gcs = _Gcs(address)
    try:
        stats = _node_stats(gcs, include_objects=False, include_workers=True)
    finally:
        gcs.close()
    stores = []
    owners: dict[str, str] = {}
    for node, reply in stats:
        stores.append(StoreStats(node_id=node.node_id.hex(), used_bytes=reply.store_used_bytes,
                                 capacity_bytes=reply.store_capacity_bytes, num_objects=reply.num_objects,
                                 spilled_bytes=reply.store_spilled_bytes,
                                 spilled_objects=reply.spilled_objects_total,
                                 restored_objects=reply.restored_objects_total))
        for w in reply.workers:
            kind = "DRIVER" if w.worker_type == "driver" else "WORKER"
            owners[w.worker_id.hex()] = f"{node.node_ip} pid {w.pid} ({kind})"
    return stores, owners


__all__ = ["memory_summary"]
