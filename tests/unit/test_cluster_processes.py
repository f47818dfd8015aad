"""Which processes belong to a cluster, and the stop sequence (no processes)."""

from __future__ import annotations

import dataclasses
import signal

from nbray.node.cluster_processes import (
    MemberTracker,
    ProcessInfo,
    cluster_members,
    service_stage,
    session_dir_argument,
    stop_members,
)

ME = 1000
SESSION = "/tmp/t/nbray/session_a"
OTHER_SESSION = "/tmp/t/nbray/session_b"


def proc(pid: int, ppid: int = 1, sid: int | None = None, uid: int = ME, state: str = "S",
         argv: tuple[str, ...] = ("python",)) -> ProcessInfo:
    return ProcessInfo(pid=pid, ppid=ppid, sid=pid if sid is None else sid, uid=uid, state=state, argv=argv)


def service(pid: int, module: str, session_dir: str = SESSION) -> ProcessInfo:
    return proc(pid, argv=("python", "-m", module, "--session-dir", session_dir))


def table(*procs: ProcessInfo) -> dict[int, ProcessInfo]:
    return {p.pid: p for p in procs}


def test_session_dir_argument_reads_both_spellings():
    assert session_dir_argument(["x", "--session-dir", "/s"]) == "/s"
    assert session_dir_argument(["x", "--session-dir=/s"]) == "/s"
    assert session_dir_argument(["x", "--session-dir"]) is None
    assert session_dir_argument(["x"]) is None


def test_members_are_marked_processes_their_sessions_and_children():
    t = table(
        service(10, "nbray.gcs"),
        service(20, "nbray.raylet"),
        proc(21, ppid=20, sid=20, argv=("python", "-m", "nbray.raylet.zygote", "--session-dir", SESSION)),
        proc(22, ppid=1, sid=20, argv=("sleep", "300")),        # left its group, still in the raylet's session
        proc(23, ppid=21, sid=23, argv=("python", "helper")),   # own session, but a child of the zygote
        proc(24, ppid=23, sid=23, argv=("python", "grandchild")),
        service(30, "nbray.raylet", OTHER_SESSION),
        proc(31, ppid=30, sid=30),
        proc(40, sid=40, argv=("bash",)),                        # unrelated
    )
    assert cluster_members(t, session_dirs={SESSION}, uid=ME) == {10, 20, 21, 22, 23, 24}


def test_members_skip_other_users_exited_processes_and_the_caller():
    t = table(
        service(10, "nbray.gcs"),
        proc(11, ppid=10, sid=10, uid=0),           # someone else's
        proc(12, ppid=10, sid=10, state="Z"),       # exited, not reaped
        proc(13, ppid=10, sid=10),                  # the process doing the stop
        proc(14, ppid=10, sid=10),
    )
    assert cluster_members(t, session_dirs={SESSION}, uid=ME, exclude={13}) == {10, 14}


def test_a_process_with_the_marker_that_is_not_a_session_leader_brings_no_session():
    # A worker carries the marker but shares its raylet's session: it must not
    # bring in the session of whatever started it.
    t = table(
        proc(50, sid=50, argv=("bash",)),
        proc(51, ppid=50, sid=50, argv=("python", "-m", "nbray.raylet.zygote", "--session-dir", SESSION)),
        proc(52, ppid=50, sid=50, argv=("vim",)),
    )
    assert cluster_members(t, session_dirs={SESSION}, uid=ME) == {51}


def test_leader_pids_bring_their_sessions_without_markers():
    t = table(proc(20), proc(21, ppid=20, sid=20), proc(22, ppid=1, sid=20), proc(30), proc(31, ppid=30, sid=30))
    assert cluster_members(t, leader_pids=[20], uid=ME) == {20, 21, 22}
    assert cluster_members(t, uid=ME) == set()


def test_service_stage_orders_head_services_raylets_then_gcs():
    assert service_stage(("python", "-m", "nbray.dashboard", "--port", "1")) == 0
    assert service_stage(("python", "-m", "nbray.client.server")) == 0
    assert service_stage(("python", "-m", "nbray.raylet", "--node-id", "x")) == 1
    assert service_stage(("python", "-m", "nbray.gcs")) == 2
    assert service_stage(("python", "-m", "nbray.raylet.zygote", "3")) is None
    assert service_stage(("python", "worker.py")) is None


class FakeMachine:
    """Processes that exit on the signals they honour, and a clock that moves when the stop waits."""

    def __init__(self, procs: dict[int, set[int]]) -> None:
        self.honours = procs            # pid -> signals it exits on
        self.alive = set(procs)
        self.sent: list[tuple[int, int]] = []
        self.now = 0.0
        self.on_exit: dict[int, set[int]] = {}  # pid -> pids that exit with it (a raylet's workers)

    def find(self) -> set[int]:
        return set(self.alive)

    def send(self, pid: int, sig: int) -> None:
        if pid not in self.alive:
            raise ProcessLookupError(pid)
        self.sent.append((pid, sig))
        if sig == signal.SIGKILL or sig in self.honours[pid]:
            self.alive.discard(pid)
            self.alive -= self.on_exit.get(pid, set())

    def running(self, pid: int) -> bool:
        return pid in self.alive

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds

    def stop(self, stages, force=False):
        return stop_members(self.find, stages, force=force, grace_s=10.0, kill_wait_s=5.0, send=self.send,
                            running=self.running, clock=self.clock, pause=self.pause)


def test_graceful_stop_goes_stage_by_stage_and_needs_no_sigkill():
    m = FakeMachine({1: {signal.SIGTERM}, 2: {signal.SIGTERM}, 3: {signal.SIGTERM}})
    m.on_exit[2] = {3}  # the raylet takes its worker with it
    outcome = m.stop([[2], [1]])
    assert m.sent == [(2, signal.SIGTERM), (1, signal.SIGTERM)]
    assert outcome.stopped == {1, 2, 3} and not outcome.killed and not outcome.survivors
    assert m.now == 0.0


def test_members_nobody_stopped_get_sigterm_then_what_ignores_it_gets_sigkill_after_the_grace_period():
    m = FakeMachine({1: {signal.SIGTERM}, 7: {signal.SIGTERM}, 8: set()})
    outcome = m.stop([[1]])
    assert (7, signal.SIGTERM) in m.sent and (8, signal.SIGTERM) in m.sent
    assert m.sent[-1] == (8, signal.SIGKILL)
    assert 10.0 <= m.now < 10.5  # waited the grace period, not more
    assert outcome.killed == {8} and outcome.stopped == {1, 7, 8} and not outcome.survivors


def test_force_sends_sigkill_at_once():
    m = FakeMachine({1: {signal.SIGTERM}, 2: set()})
    outcome = m.stop([[1]], force=True)
    assert sorted(m.sent) == [(1, signal.SIGKILL), (2, signal.SIGKILL)]
    assert outcome.stopped == {1, 2} and m.now == 0.0


def test_processes_that_survive_sigkill_are_reported():
    m = FakeMachine({1: set()})
    m.send = lambda pid, sig: m.sent.append((pid, sig))  # type: ignore[method-assign]  # never exits
    outcome = m.stop([[1]])
    assert outcome.survivors == {1} and outcome.stopped == set()
    assert m.sent.count((1, signal.SIGKILL)) == 3


def test_tracker_keeps_members_that_lost_their_link_but_not_a_reused_pid():
    gcs = dataclasses.replace(service(10, "nbray.gcs"), start_ticks=100)
    worker = proc(20, ppid=10, sid=20, argv=("python", "worker"))
    helper = dataclasses.replace(proc(21, ppid=20, sid=21, argv=("sleep", "300")), start_ticks=500)
    snapshots = [table(gcs, worker, helper),
                 # the worker exited: the helper, reparented to init in a session of its own, has no link left
                 table(gcs, dataclasses.replace(helper, ppid=1)),
                 # the helper exited and its pid went to an unrelated process started later
                 table(gcs, dataclasses.replace(helper, ppid=1, start_ticks=900, argv=("vim",)))]
    tracker = MemberTracker(lambda t: cluster_members(t, session_dirs={SESSION}, uid=ME),
                            scan=lambda: snapshots.pop(0))
    assert tracker() == {10, 20, 21}
    assert tracker() == {10, 21}
    assert tracker() == {10}


def test_a_stage_pid_reused_before_its_turn_is_not_signalled():
    m = FakeMachine({1: {signal.SIGTERM}, 2: {signal.SIGTERM}})
    m.on_exit[2] = {1}  # the GCS exits with the raylet...
    stop_raylet = m.send
    reused: set[int] = set()

    def send(pid: int, sig: int) -> None:
        stop_raylet(pid, sig)
        m.alive.add(1)  # ...and an unrelated process gets its pid, which find() does not return
        reused.add(1)

    m.send = send  # type: ignore[method-assign]
    m.find = lambda: m.alive - reused  # type: ignore[method-assign]
    outcome = m.stop([[2], [1]])
    assert m.sent == [(2, signal.SIGTERM)]
    assert not outcome.killed and not outcome.survivors


def test_a_process_with_the_session_dir_in_its_environment_is_a_member_without_other_links():
    t = table(
        service(10, "nbray.gcs"),
        dataclasses.replace(proc(50, ppid=1, sid=50, argv=("sleep", "300")), env_session_dir=SESSION),
        dataclasses.replace(proc(51, ppid=50, sid=50, argv=("sleep", "1")), env_session_dir=None),
        dataclasses.replace(proc(60, ppid=1, sid=60), env_session_dir=OTHER_SESSION),
    )
    assert cluster_members(t, session_dirs={SESSION}, uid=ME) == {10, 50, 51}
