"""Memory and CPU time of live processes as the kernel accounts them (test
and benchmark harnesses, in the measuring process).

RSS counts every page a process maps, shared ones included, so a hundred
workers forked from one zygote would each "use" the zygote's whole
interpreter. What one more process really costs is its private memory
(USS: pages only it maps) and its proportional share (PSS: each shared
page divided by the number of processes mapping it), both read from
``/proc/PID/smaps_rollup``.
"""

from __future__ import annotations

import dataclasses
import os

KIB = 1024


@dataclasses.dataclass(frozen=True)
class ProcessMemory:
    """One process's memory, in bytes."""

    rss: int
    pss: int
    uss: int

    def __add__(self, other: ProcessMemory) -> ProcessMemory:
        return ProcessMemory(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss)


ZERO = ProcessMemory(0, 0, 0)


def parse_smaps_rollup(text: str) -> ProcessMemory:
    """The RSS, PSS and USS in a ``/proc/PID/smaps_rollup`` text.

    Raises ValueError when a field it needs is missing.
    """
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * KIB
    missing = [f for f in ("Rss", "Pss", "Private_Clean", "Private_Dirty") if f not in fields]
    if missing:
        raise ValueError(f"smaps_rollup lacks {', '.join(missing)}")
    return ProcessMemory(rss=fields["Rss"], pss=fields["Pss"],
                         uss=fields["Private_Clean"] + fields["Private_Dirty"])


def memory_of(pid: int) -> ProcessMemory:
    """Raises ProcessLookupError when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return parse_smaps_rollup(f.read())
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def children_by_parent() -> dict[int, list[int]]:
    """Every live process's children, by parent pid (one pass over /proc)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out.setdefault(int(fields[1]), []).append(int(name))
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used (ProcessLookupError when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
