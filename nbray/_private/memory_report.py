"""The text of ``nbray memory`` / ``memory_summary()`` (pure logic).

Input: one entry per reference a driver or worker holds (as the state API's
``list_objects`` reports them) and each node's object store totals. Output:
Ray's ``ray memory`` report: per group (node address or call site) a
summary by reference type, then the references, then the object store
totals across the cluster.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GROUP_BY = ("NODE_ADDRESS", "STACK_TRACE")
SORT_BY = ("PID", "OBJECT_SIZE", "REFERENCE_TYPE")
# Decimal units, as Ray's ``--units`` uses them.
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
# Why a process keeps an object alive, in the order the summary lists them.
REFERENCE_TYPES = {
    "LOCAL_REFERENCE": "Local References",
    "PINNED_IN_MEMORY": "Pinned",
    "USED_BY_PENDING_TASK": "Used by task",
    "CAPTURED_IN_OBJECT": "Captured in Objects",
    "ACTOR_HANDLE": "Actor Handles",
}
CALL_SITE_DISABLED = "disabled"
# Call sites longer than this wrap onto more lines when line_wrap is on.
CALL_SITE_WRAP_CHARS = 48
_MIB = 2**20


@dataclass(frozen=True)
class ReferenceEntry:
    """One reference to an object, held by one process."""

    object_id: str
    size_bytes: int
    reference_type: str
    pid: int
    ip: str
    node_id: str
    process_type: str  # DRIVER | WORKER
    owner: str  # the process that owns the object, e.g. "pid 1234 (DRIVER)"
    call_site: str = CALL_SITE_DISABLED
    task_status: str = ""


@dataclass(frozen=True)
class StoreStats:
    """One node's shared-memory object store."""

    node_id: str
    used_bytes: int
    capacity_bytes: int
    num_objects: int
    spilled_bytes: int = 0
    spilled_objects: int = 0
    restored_objects: int = 0


def check_options(group_by: str, sort_by: str, units: str) -> None:
    """Raises ValueError naming a bad choice and the valid ones."""
    for what, value, valid in (("group_by", group_by, GROUP_BY), ("sort_by", sort_by, SORT_BY),
                               ("units", units, tuple(UNITS))):
        if value not in valid:
            raise ValueError(f"{what}={value!r} is not supported; choose one of {', '.join(valid)}")


def format_size(size_bytes: float, units: str) -> str:
    if units == "B":
        return f"{int(size_bytes)} B"
    return f"{size_bytes / UNITS[units]:.2f} {units}"


def group_key(entry: ReferenceEntry, group_by: str, shared_ips: frozenset[str]) -> str:
    if group_by == "STACK_TRACE":
        return entry.call_site or CALL_SITE_DISABLED
    # Several nodes on one address (a test cluster on one machine) stay apart.
    return f"{entry.ip} (node {entry.node_id[:8]})" if entry.ip in shared_ips else entry.ip


def sort_entries(entries: Iterable[ReferenceEntry], sort_by: str) -> list[ReferenceEntry]:
    if sort_by == "OBJECT_SIZE":
        return sorted(entries, key=lambda e: (-e.size_bytes, e.object_id))
    if sort_by == "REFERENCE_TYPE":
        return sorted(entries, key=lambda e: (e.reference_type, -e.size_bytes, e.object_id))
    return sorted(entries, key=lambda e: (e.pid, -e.size_bytes, e.object_id))


def summarize(entries: Sequence[ReferenceEntry]) -> dict[str, tuple[int, int]]:
    """Reference type -> (references, bytes), plus "total" -> (distinct
    objects, their bytes): an object several processes hold counts once."""
    out = {kind: (0, 0) for kind in REFERENCE_TYPES}
    for e in entries:
        count, size = out.get(e.reference_type, (0, 0))
        out[e.reference_type] = (count + 1, size + e.size_bytes)
    distinct: dict[str, int] = {}
    for e in entries:
        distinct[e.object_id] = max(distinct.get(e.object_id, 0), e.size_bytes)
    out["total"] = (len(distinct), sum(distinct.values()))
    return out


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns; a cell may hold several lines."""
    split = [[cell.split("\n") for cell in row] for row in [list(header), *rows]]
    widths = [max(len(line) for row in split for line in row[i]) for i in range(len(header))]
    lines = []
    for row in split:
        height = max(len(cell) for cell in row)
        for k in range(height):
            parts = [(cell[k] if k < len(cell) else "").ljust(w) for cell, w in zip(row, widths)]
            lines.append("  ".join(parts).rstrip())
    return lines


def format_report(entries: Sequence[ReferenceEntry], stores: Sequence[StoreStats], *,
                  group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE", units: str = "B",
                  line_wrap: bool = True, stats_only: bool = False, num_entries: int | None = None,
                  now: datetime.datetime | None = None) -> str:
    """The whole report. Raises ValueError for a bad group_by/sort_by/units."""
    check_options(group_by, sort_by, units)
    lines: list[str] = []
    if not stats_only:
        lines += _references_section(entries, group_by, sort_by, units, line_wrap, num_entries,
                                     now or datetime.datetime.now())
    lines += _store_section(stores)
    return "\n".join(lines) + "\n"


def _references_section(entries: Sequence[ReferenceEntry], group_by: str, sort_by: str, units: str,
                        line_wrap: bool, num_entries: int | None, now: datetime.datetime) -> list[str]:
    grouping = "node address" if group_by == "NODE_ADDRESS" else "call site"
    shown = "all" if num_entries is None else str(num_entries)
    lines = [f"======== Object references status: {now:%Y-%m-%d %H:%M:%S} ========",
             f"Grouping by {grouping}...        Sorting by {sort_by.lower().replace('_', ' ')}...        "
             f"Display {shown} entries per group...", ""]
    if not entries:
        lines += ["No object references: no driver or worker holds an ObjectRef.", ""]
    node_ids_by_ip: dict[str, set[str]] = {}
    for e in entries:
        node_ids_by_ip.setdefault(e.ip, set()).add(e.node_id)
    shared_ips = frozenset(ip for ip, nodes in node_ids_by_ip.items() if len(nodes) > 1)
    groups: dict[str, list[ReferenceEntry]] = {}
    for e in entries:
        groups.setdefault(group_key(e, group_by, shared_ips), []).append(e)
    for key in sorted(groups):
        group = groups[key]
        summary = summarize(group)
        lines += ["", f"--- Summary for {grouping}: {key} ---"]
        header = ["Mem Used by Objects", *REFERENCE_TYPES.values()]
        cells = [format_size(summary["total"][1], units),
                 *(f"{summary[kind][0]}, ({format_size(summary[kind][1], units)})" for kind in REFERENCE_TYPES)]
        lines += format_table(header, [cells])
        lines += ["", f"--- Object references for {grouping}: {key} ---"]
        ordered = sort_entries(group, sort_by)
        if num_entries is not None:
            ordered = ordered[:max(0, num_entries)]
        rows = [[e.ip, str(e.pid), e.process_type.capitalize(), e.owner, _call_site_cell(e.call_site, line_wrap),
                 e.task_status, format_size(e.size_bytes, units), e.reference_type, e.object_id]
                for e in ordered]
        lines += format_table(["IP Address", "PID", "Type", "Owner", "Call Site", "Status", "Size",
                               "Reference Type", "Object Ref"], rows)
    if any(e.call_site in ("", CALL_SITE_DISABLED) for e in entries):
        lines += ["", "To record the call site of each ObjectRef created, set the environment variable "
                      "NBRAY_RECORD_REF_CREATION_SITES=1 (or RAY_record_ref_creation_sites=1) for the "
                      "driver and the cluster."]
    lines.append("")
    return lines


def _call_site_cell(call_site: str, line_wrap: bool) -> str:
    call_site = call_site or CALL_SITE_DISABLED
    if not line_wrap or len(call_site) <= CALL_SITE_WRAP_CHARS:
        return call_site
    return "\n".join(textwrap.wrap(call_site, CALL_SITE_WRAP_CHARS, break_long_words=True))


def _store_section(stores: Sequence[StoreStats]) -> list[str]:
    used = sum(s.used_bytes for s in stores)
    capacity = sum(s.capacity_bytes for s in stores)
    objects = sum(s.num_objects for s in stores)
    full = 100.0 * used / capacity if capacity else 0.0
    lines = ["--- Aggregate object store stats across all nodes ---",
             f"Plasma memory usage {used // _MIB} MiB, {objects} objects, {full:.1f}% full "
             f"({len(stores)} node(s), {capacity // _MIB} MiB capacity)"]
    spilled = sum(s.spilled_bytes for s in stores)
    spilled_objects = sum(s.spilled_objects for s in stores)
    if spilled or spilled_objects:
        restored = sum(s.restored_objects for s in stores)
        lines.append(f"Spilled {spilled // _MIB} MiB, {spilled_objects} objects; restored {restored} objects")
    return lines


def entries_from_rows(rows: Iterable[Mapping[str, Any]], owners: Mapping[str, str]) -> list[ReferenceEntry]:
    """State-API object rows -> entries; `owners` names processes by worker id (hex).

    A borrower may not know an object's size; the owner's row tells it."""
    rows = list(rows)
    sizes: dict[str, int] = {}
    for r in rows:
        oid = str(r["object_id"])
        sizes[oid] = max(sizes.get(oid, 0), int(r.get("object_size") or 0))
    out = []
    for r in rows:
        owner_id = str(r.get("owner_worker_id") or "")
        out.append(ReferenceEntry(
            object_id=str(r["object_id"]), size_bytes=sizes[str(r["object_id"])],
            reference_type=str(r["reference_type"]), pid=int(r.get("pid") or 0),
            ip=str(r.get("ip") or ""), node_id=str(r.get("node_id") or ""),
            process_type=str(r.get("type") or "WORKER"), owner=owners.get(owner_id, owner_id[:12] or "?"),
            call_site=str(r.get("call_site") or CALL_SITE_DISABLED), task_status=str(r.get("task_status") or "")))
    return out
