"""The raylet's memory monitor: kill a worker before the node runs out of memory.

Runs inside the raylet process. Every ``memory_monitor_refresh_ms`` it reads
the node's memory use (the cgroup's when the cgroup has a limit, else
``/proc/meminfo``). Above ``memory_usage_threshold`` it kills one leased
worker, chosen by ``choose_victim``: workers running retriable tasks
first, then non-retriable tasks, then actors; the most recently granted
lease first within each group. The raylet, the GCS, drivers and idle
workers are never candidates. After a kill it waits until the victim is
gone or memory is back under the threshold before choosing again, so one
spike costs one worker, not all of them; for a few seconds after a kill it
also counts the victim's memory as freed even if the reading does not show
it yet (``KillGate``).

The kill's cause is kept (bounded) so the owner, whose push to the worker
failed, can ask why it died and raise ``OutOfMemoryError`` instead of
``WorkerCrashedError``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nbray.common.config import Config
from nbray.protocol import common_pb2, raylet_pb2
from nbray.rpc.eventloop import EventLoop

if TYPE_CHECKING:
    from nbray.raylet.lease_manager import LeaseManager
    from nbray.raylet.worker_pool import WorkerPool

logger = logging.getLogger(__name__)

# cgroup files report "no limit" as "max" (v2) or as a number near 2**63 (v1).
_NO_LIMIT_V1 = 1 << 62
_GIB = 1 << 30


# ---- reading the node's memory ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemoryReading:
    """Memory in use on the node, and where the figures came from."""

    used_bytes: int
    total_bytes: int
    source: str

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 0.0


def read_meminfo(path: str = "/proc/meminfo") -> MemoryReading:
    """Used = MemTotal - MemAvailable (page cache the kernel can drop is not use)."""
    fields: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024  # reported in kB
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return MemoryReading(max(0, total - available), total, path)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: str, name: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def read_cgroup_v2(directory: str) -> MemoryReading | None:
    """A cgroup v2 directory's use against its ``memory.max``; None without a limit.

    Inactive file cache is left out of the use, as the kernel reclaims it
    before it would kill anything."""
    limit = _read_int(os.path.join(directory, "memory.max"))  # "max" reads as None
    current = _read_int(os.path.join(directory, "memory.current"))
    if limit is None or current is None or limit <= 0:
        return None
    inactive = _stat_field(os.path.join(directory, "memory.stat"), "inactive_file")
    return MemoryReading(max(0, current - inactive), limit, directory)


def read_cgroup_v1(directory: str) -> MemoryReading | None:
    """A cgroup v1 memory directory's use against its limit; None without a limit."""
    limit = _read_int(os.path.join(directory, "memory.limit_in_bytes"))
    usage = _read_int(os.path.join(directory, "memory.usage_in_bytes"))
    if limit is None or usage is None or limit <= 0 or limit >= _NO_LIMIT_V1:
        return None
    inactive = _stat_field(os.path.join(directory, "memory.stat"), "total_inactive_file")
    return MemoryReading(max(0, usage - inactive), limit, directory)


def _own_cgroup_dirs(proc_cgroup: str, cgroup_root: str) -> list[tuple[str, str]]:
    """(version, directory) of this process's memory cgroups, innermost first,
    then the mount roots (a container sees its own cgroup as the root)."""
    found: list[tuple[str, str]] = []
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            found.append(("v2", os.path.join(cgroup_root, rel)))
        elif "memory" in controllers.split(","):
            found.append(("v1", os.path.join(cgroup_root, "memory", rel)))
    found += [("v2", cgroup_root), ("v1", os.path.join(cgroup_root, "memory"))]
    return found


def read_node_memory(cgroup_root: str = "/sys/fs/cgroup", proc_root: str = "/proc") -> MemoryReading:
    """The node's memory use: the first memory cgroup with a limit, else /proc/meminfo.

    A cgroup limit above the machine's memory counts as the machine's memory."""
    meminfo = read_meminfo(os.path.join(proc_root, "meminfo"))
    for version, directory in _own_cgroup_dirs(os.path.join(proc_root, "self", "cgroup"), cgroup_root):
        reading = read_cgroup_v2(directory) if version == "v2" else read_cgroup_v1(directory)
        if reading is not None:
            if meminfo.total_bytes and reading.total_bytes > meminfo.total_bytes:
                return dataclasses.replace(reading, total_bytes=meminfo.total_bytes)
            return reading
    return meminfo


def process_rss_bytes(pid: int, proc_root: str = "/proc") -> int:
    """Resident memory of one process (0 if it is gone)."""
    try:
        with open(os.path.join(proc_root, str(pid), "statm")) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ---- choosing a victim (pure) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A leased worker the monitor may kill."""

    worker_id: bytes
    pid: int
    is_actor: bool
    # the owner retries its tasks when the worker dies
    retriable: bool
    # monotonic time its lease was granted
    granted_at: float
    # display name of the task or actor the lease was asked for
    name: str


def victim_rank(c: Candidate) -> int:
    """0: retriable task, 1: non-retriable task, 2: actor (killed last)."""
    if c.is_actor:
        return 2
    return 0 if c.retriable else 1


def choose_victim(candidates: Iterable[Candidate]) -> Candidate | None:
    """The worker to kill: lowest rank, then the most recently granted."""
    return min(candidates, key=lambda c: (victim_rank(c), -c.granted_at), default=None)


class KillGate:
    """One kill at a time: after a kill, no other until the victim is gone
    or memory is back under the threshold.

    A dead victim's memory does not always show as free at once (a
    virtual machine that reports freed pages to its host can take seconds
    before ``MemAvailable`` rises). For ``settle_s`` after a kill the gate
    credits the victim's resident size against a reading that has not yet
    dropped by that much, so a stale reading does not kill the next,
    innocent worker (often the retry of the task just killed)."""

    def __init__(self) -> None:
        self.pending: bytes | None = None
        self.credit_bytes = 0
        self.used_at_kill = 0
        self.credit_until = 0.0

    def effective_used(self, used_bytes: int, now: float) -> int:
        """The reading less what the last victim held and the reading does not yet show freed."""
        if not self.credit_bytes or now >= self.credit_until:
            self.credit_bytes = 0
            return used_bytes
        shown_freed = max(0, self.used_at_kill - used_bytes)
        return used_bytes - max(0, self.credit_bytes - shown_freed)

    def may_kill(self, used_bytes: int, threshold_bytes: float, alive: Callable[[bytes], bool],
                 now: float) -> bool:
        above = used_bytes > threshold_bytes
        if self.pending is not None:
            if above and alive(self.pending):
                return False
            self.pending = None
        return above and self.effective_used(used_bytes, now) > threshold_bytes

    def killed(self, worker_id: bytes, *, victim_rss_bytes: int = 0, used_bytes: int = 0,
               now: float = 0.0, settle_s: float = 0.0) -> None:
        self.pending = worker_id
        self.credit_bytes = victim_rss_bytes if settle_s > 0 else 0
        self.used_at_kill = used_bytes
        self.credit_until = now + settle_s


def oom_message(*, node_id: bytes, node_ip: str, reading: MemoryReading, threshold: float,
                victim: Candidate, victim_rss_bytes: int) -> str:
    why = ("it was an actor and no task could be killed instead" if victim.is_actor
           else "it ran the most recently started retriable task" if victim.retriable
           else "it ran the most recently started task and no retriable task was running")
    return (
        f"Memory on node {node_id.hex()} (IP {node_ip}) was {reading.used_bytes / _GIB:.2f} GiB / "
        f"{reading.total_bytes / _GIB:.2f} GiB ({reading.fraction:.3f}), above the memory usage "
        f"threshold {threshold:.3f}. The raylet killed the worker (pid {victim.pid}, using "
        f"{victim_rss_bytes / _GIB:.2f} GiB) because {why}."
    )


# ---- the monitor in the raylet ---------------------------------------------------------------


class MemoryMonitor:
    """Reads the node's memory on a timer and kills leased workers above the threshold."""

    def __init__(self, loop: EventLoop, config: Config, node_id: bytes, node_ip: str,
                 leases: LeaseManager, pool: WorkerPool,
                 read_memory: Callable[[], MemoryReading] = read_node_memory) -> None:
        if not 0.0 < config.memory_usage_threshold <= 1.0:
            raise ValueError(f"memory_usage_threshold must be in (0, 1], got {config.memory_usage_threshold}")
        self.loop = loop
        self.config = config
        self.node_id = node_id
        self.node_ip = node_ip
        self.leases = leases
        self.pool = pool
        self.read_memory = read_memory
        self.gate = KillGate()
        self.causes: OrderedDict[bytes, common_pb2.ErrorInfo] = OrderedDict()
        self.kills = 0
        self._stopped = False

    def start(self) -> None:
        if self.config.memory_monitor_refresh_ms > 0:
            self.loop.call_later(self.config.memory_monitor_refresh_ms / 1000, self._tick)

    def stop(self) -> None:
        self._stopped = True

    def _tick(self) -> None:
        if self._stopped:
            return
        try:
            self.check()
        except OSError as exc:  # /proc or /sys unreadable: keep trying, say why
            logger.warning("could not read the node's memory use: %s", exc)
        self.loop.call_later(self.config.memory_monitor_refresh_ms / 1000, self._tick)

    def candidates(self) -> list[Candidate]:
        own_pid = os.getpid()
        found = []
        for lease in self.leases.leases.values():
            w = lease.worker
            if w.is_driver or w.pid <= 0 or w.pid == own_pid or not w.worker_id:
                continue
            found.append(Candidate(w.worker_id, w.pid, lease.is_actor, lease.is_retriable,
                                   lease.granted_at, lease.name))
        return found

    def _alive(self, worker_id: bytes) -> bool:
        return worker_id in self.pool.by_id

    def check(self) -> Candidate | None:
        """One reading; kill one worker if memory is above the threshold. Returns the victim."""
        reading = self.read_memory()
        threshold = self.config.memory_usage_threshold
        now = time.monotonic()
        if not self.gate.may_kill(reading.used_bytes, threshold * reading.total_bytes, self._alive, now):
            return None
        victim = choose_victim(self.candidates())
        if victim is None:
            return None
        worker = self.pool.by_id.get(victim.worker_id)
        if worker is None:
            return None
        rss = process_rss_bytes(victim.pid)
        message = oom_message(node_id=self.node_id, node_ip=self.node_ip, reading=reading,
                              threshold=threshold, victim=victim, victim_rss_bytes=rss)
        self._remember(victim.worker_id, message)
        logger.warning("killing worker %s (%s): %s", victim.pid, victim.name, message)
        self.gate.killed(victim.worker_id, victim_rss_bytes=rss, used_bytes=reading.used_bytes, now=now,
                         settle_s=self.config.memory_monitor_settle_ms / 1000)
        self.kills += 1
        self.pool.kill(worker, "killed by the memory monitor: " + message)
        return victim

    def _remember(self, worker_id: bytes, message: str) -> None:
        self.causes[worker_id] = common_pb2.ErrorInfo(type=common_pb2.OUT_OF_MEMORY, message=message)
        while len(self.causes) > max(1, self.config.worker_failure_causes_max):
            self.causes.popitem(last=False)

    def failure_cause(self, worker_id: bytes) -> raylet_pb2.GetWorkerFailureCauseReply:
        reply = raylet_pb2.GetWorkerFailureCauseReply()
        cause = self.causes.get(worker_id)
        if cause is not None:
            reply.failure.CopyFrom(cause)
        return reply

