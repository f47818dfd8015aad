"""Finding and stopping every process of a cluster on this machine.

Runs in whichever process stops a cluster: ``nbray stop``, or a driver
whose ``nbray.shutdown()`` stops the cluster it started.

The pids in a session's files are not all of its processes: the zygote
forks workers, workers may start helpers, the client server starts one
process per notebook client. They are found in a snapshot of ``/proc``:

- every process started for a cluster carries ``--session-dir <dir>`` on
  its command line (GCS, raylets, zygotes and the workers they fork, the
  dashboard, the client server and its sessions);
- every service has ``NBRAY_SESSION_DIR=<dir>`` in its environment, and
  so has whatever it starts, unless that process clears its environment;
- each service is started as the leader of a new session, so what it
  starts stays in that session (same sid) unless it leaves on purpose;
- children of any of them belong to the cluster too.

Pids read from files are never signalled as such (they may have been
reused since): only processes that carry the marker now, their sessions
and their children. Membership (``cluster_members``) and the stop sequence
(``stop_members``) take the snapshot, the signal call and the clock as
parameters: they are tested without processes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

SESSION_DIR_FLAG = "--session-dir"
SESSION_DIR_ENV = "NBRAY_SESSION_DIR"
POLL_INTERVAL_S = 0.02
# Rounds of "find what is left, SIGKILL it" before survivors are reported:
# a process forking while it is killed can add a few stragglers, not more.
MAX_KILL_ROUNDS = 3


@dataclass(frozen=True)
class ProcessInfo:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    sid: int
    uid: int
    state: str
    argv: tuple[str, ...] = ()
    start_ticks: int = 0  # start time since boot, in clock ticks: with the pid, names one process
    env_session_dir: str | None = None  # NBRAY_SESSION_DIR in its environment (None: unset or unreadable)

    @property
    def identity(self) -> tuple[int, int]:
        return self.pid, self.start_ticks

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def session_dir_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--session-dir`` on a command line, if any."""
    for i, arg in enumerate(argv):
        if arg == SESSION_DIR_FLAG and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(SESSION_DIR_FLAG + "="):
            return arg.split("=", 1)[1]
    return None


def read_process(pid: int, markers: bool = True) -> ProcessInfo | None:
    """The process `pid`, or None when it does not exist (or vanished while read).

    Without `markers`, its command line and environment are not read
    (``argv`` empty, ``env_session_dir`` None): enough to follow sessions
    and parents, at a third of the cost.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        uid = os.stat(f"/proc/{pid}").st_uid
        argv: tuple[str, ...] = ()
        if markers:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except (OSError, IndexError):
        return None
    return ProcessInfo(pid=pid, ppid=int(fields[1]), sid=int(fields[3]), uid=uid, state=fields[0], argv=argv,
                       start_ticks=int(fields[19]),
                       env_session_dir=_environment_value(pid, SESSION_DIR_ENV) if markers else None)


def _environment_value(pid: int, name: str) -> str | None:
    """A variable of the environment `pid` started with; None if unset or not ours to read."""
    prefix = b"\0" + name.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            variables = b"\0" + f.read()  # NUL-separated NAME=VALUE entries
    except OSError:
        return None
    at = variables.find(prefix)
    if at < 0:
        return None
    start = at + len(prefix)
    end = variables.find(b"\0", start)
    return variables[start:end if end >= 0 else len(variables)].decode(errors="replace")


def scan_processes(markers: bool = True) -> dict[int, ProcessInfo]:
    """Every process visible in /proc, by pid (`markers`: see ``read_process``)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_process(int(name), markers)
            if info is not None:
                table[info.pid] = info
    return table


def runs_session(pid: int, session_dir: str) -> bool:
    """`pid` is a live process started for the cluster of `session_dir`."""
    info = read_process(pid)
    return info is not None and not info.exited and session_dir_argument(info.argv) == session_dir


def cluster_members(table: dict[int, ProcessInfo], *, session_dirs: Collection[str] = (),
                    leader_pids: Collection[int] = (), uid: int, exclude: Collection[int] = ()) -> set[int]:
    """Live processes of `uid` that belong to the clusters described.

    ``session_dirs``: clusters whose processes carry ``--session-dir DIR``
    (or NBRAY_SESSION_DIR=DIR in their environment); such a process that
    leads its own session brings the whole session.
    ``leader_pids``: pids the caller started as session leaders and has not
    reaped yet (so not reused): every process still in their sessions.
    Children of members are members; `exclude` (the caller) never is.
    """
    dirs = set(session_dirs)
    live = {pid: p for pid, p in table.items() if p.uid == uid and not p.exited and pid not in exclude}
    marked = {pid for pid, p in live.items()
              if dirs and (session_dir_argument(p.argv) in dirs or p.env_session_dir in dirs)}
    sessions = {pid for pid in marked if live[pid].sid == pid} | set(leader_pids)
    members = marked | {pid for pid, p in live.items() if p.sid in sessions or pid in sessions}
    children: dict[int, list[int]] = {}
    for pid, p in live.items():
        children.setdefault(p.ppid, []).append(pid)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in members:
                members.add(child)
                todo.append(child)
    return members


class MemberTracker:
    """A `find` for ``stop_members`` that keeps every member it has found.

    A process stays a member while it lives, even once nothing links it to
    the cluster any more (its parent, a worker, exited and it left the
    session). It is known by pid and start time, so a pid reused by another
    process is not a member.
    """

    def __init__(self, members_of: Callable[[dict[int, ProcessInfo]], set[int]],
                 scan: Callable[[], dict[int, ProcessInfo]] = scan_processes) -> None:
        self._members_of = members_of
        self._scan = scan
        self._seen: set[tuple[int, int]] = set()
        self.table: dict[int, ProcessInfo] = {}  # the latest snapshot

    def __call__(self) -> set[int]:
        self.table = self._scan()
        self._seen |= {self.table[pid].identity for pid in self._members_of(self.table)}
        return {pid for pid, start in self._seen
                if pid in self.table and not self.table[pid].exited and self.table[pid].start_ticks == start}


# The services of a cluster, in the order they stop: head services first,
# then raylets (which stop their workers and unregister), then the GCS.
SERVICE_STAGES = (("nbray.client.server", "nbray.dashboard"), ("nbray.raylet",), ("nbray.gcs",))


def service_stage(argv: Sequence[str]) -> int | None:
    """The index in SERVICE_STAGES of the service a command line runs (``python -m MODULE``)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            module = argv[i + 1]
            for stage, modules in enumerate(SERVICE_STAGES):
                if module in modules:
                    return stage
            return None
    return None


@dataclass
class StopOutcome:
    """What a stop found and what, if anything, outlived it."""

    stopped: set[int] = field(default_factory=set)
    survivors: set[int] = field(default_factory=set)
    killed: set[int] = field(default_factory=set)  # needed SIGKILL


def process_running(pid: int) -> bool:
    """The process exists and has not exited (an unreaped zombie counts as gone)."""
    info = read_process(pid)
    return info is not None and not info.exited


def stop_members(find: Callable[[], set[int]], stages: Sequence[Iterable[int]], *, force: bool,
                 grace_s: float, kill_wait_s: float,
                 send: Callable[[int, int], None] = os.kill,
                 running: Callable[[int], bool] = process_running,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], None] = time.sleep) -> StopOutcome:
    """Stop the processes `find` returns, and return once none is running.

    Graceful: each stage (e.g. raylets, then the GCS) gets SIGTERM and is
    waited for in turn, so a raylet can still unregister; members left once
    every stage is down (nobody stopped them) get SIGTERM too. What still
    runs when `grace_s` is over, or everything with ``force``, gets SIGKILL.
    `find` is called again before each signal, so processes started
    meanwhile are caught and a pid reused meanwhile is not signalled.
    """
    outcome = StopOutcome()
    members = find()
    outcome.stopped |= members
    if not force and members:
        deadline = clock() + grace_s
        for stage in stages:
            current = find()  # never a pid that exited (and may be reused) since the first look
            group = [pid for pid in stage if pid in current]
            _signal_all(send, group, signal.SIGTERM)
            _wait_until_gone(group, deadline, running, clock, pause)
        rest = find()
        outcome.stopped |= rest
        _signal_all(send, rest, signal.SIGTERM)
        _wait_until_gone(members | rest, deadline, running, clock, pause)
    for _ in range(MAX_KILL_ROUNDS):
        left = find()
        outcome.stopped |= left
        if not left:
            return outcome
        outcome.killed |= left
        _signal_all(send, left, signal.SIGKILL)
        _wait_until_gone(left, clock() + kill_wait_s, running, clock, pause)
    outcome.survivors = {pid for pid in find() if running(pid)}
    outcome.stopped -= outcome.survivors
    return outcome


def _signal_all(send: Callable[[int, int], None], pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            send(pid, sig)
        except ProcessLookupError:
            pass  # exited since it was found


def _wait_until_gone(pids: Iterable[int], deadline: float, running: Callable[[int], bool],
                     clock: Callable[[], float], pause: Callable[[float], None]) -> None:
    waiting = set(pids)
    while True:
        waiting = {pid for pid in waiting if running(pid)}
        if not waiting or clock() >= deadline:
            return
        pause(POLL_INTERVAL_S)
