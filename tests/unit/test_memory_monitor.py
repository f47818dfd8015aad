"""The raylet's memory monitor: reading memory use, choosing a victim, one kill at a time."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

import nbray.exceptions
from nbray.common.config import Config
from nbray.protocol import common_pb2, core_worker_pb2
from nbray.raylet.memory_monitor import (
    Candidate,
    KillGate,
    MemoryMonitor,
    MemoryReading,
    choose_victim,
    read_cgroup_v1,
    read_cgroup_v2,
    read_meminfo,
    read_node_memory,
    victim_rank,
)
from nbray.worker.task_manager import PendingTask, TaskManager

pytestmark = pytest.mark.timeout(30)

GIB = 1 << 30


def _write(path: Any, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# ---- reading -----------------------------------------------------------------------------------


def test_meminfo_used_is_total_minus_available(tmp_path):
    _write(tmp_path / "meminfo", "MemTotal:       8000 kB\nMemFree:  100 kB\nMemAvailable:   6000 kB\n")
    r = read_meminfo(str(tmp_path / "meminfo"))
    assert (r.used_bytes, r.total_bytes) == (2000 * 1024, 8000 * 1024)
    assert r.fraction == pytest.approx(0.25)


def test_cgroup_v2_with_limit_leaves_out_inactive_file_cache(tmp_path):
    _write(tmp_path / "memory.max", f"{4 * GIB}\n")
    _write(tmp_path / "memory.current", f"{3 * GIB}\n")
    _write(tmp_path / "memory.stat", f"anon 123\ninactive_file {GIB}\nactive_file 5\n")
    r = read_cgroup_v2(str(tmp_path))
    assert r is not None and (r.used_bytes, r.total_bytes) == (2 * GIB, 4 * GIB)


def test_cgroup_without_limit_is_not_used(tmp_path):
    _write(tmp_path / "v2" / "memory.max", "max\n")
    _write(tmp_path / "v2" / "memory.current", "100\n")
    assert read_cgroup_v2(str(tmp_path / "v2")) is None
    _write(tmp_path / "v1" / "memory.limit_in_bytes", "9223372036854771712\n")
    _write(tmp_path / "v1" / "memory.usage_in_bytes", "100\n")
    assert read_cgroup_v1(str(tmp_path / "v1")) is None
    assert read_cgroup_v2(str(tmp_path / "missing")) is None


def test_cgroup_v1_with_limit(tmp_path):
    _write(tmp_path / "memory.limit_in_bytes", f"{2 * GIB}\n")
    _write(tmp_path / "memory.usage_in_bytes", f"{GIB}\n")
    _write(tmp_path / "memory.stat", f"cache 1\ntotal_inactive_file {GIB // 2}\n")
    r = read_cgroup_v1(str(tmp_path))
    assert r is not None and (r.used_bytes, r.total_bytes) == (GIB // 2, 2 * GIB)


def _fake_host(tmp_path: Any, cgroup_line: str, total_kb: int = 16 * 1024 * 1024) -> tuple[str, str]:
    proc, cg = tmp_path / "proc", tmp_path / "cg"
    _write(proc / "meminfo", f"MemTotal: {total_kb} kB\nMemAvailable: {total_kb // 2} kB\n")
    _write(proc / "self" / "cgroup", cgroup_line + "\n")
    os.makedirs(cg, exist_ok=True)
    return str(cg), str(proc)


def test_node_memory_prefers_the_own_cgroup_with_a_limit(tmp_path):
    cg, proc = _fake_host(tmp_path, "0::/job/worker")
    _write(os.path.join(cg, "job", "worker", "memory.max"), f"{2 * GIB}\n")
    _write(os.path.join(cg, "job", "worker", "memory.current"), f"{GIB}\n")
    r = read_node_memory(cgroup_root=cg, proc_root=proc)
    assert (r.used_bytes, r.total_bytes) == (GIB, 2 * GIB)
    assert r.source.endswith(os.path.join("job", "worker"))


def test_node_memory_caps_a_limit_above_the_machine(tmp_path):
    cg, proc = _fake_host(tmp_path, "0::/", total_kb=1024 * 1024)  # 1 GiB machine
    _write(os.path.join(cg, "memory.max"), f"{64 * GIB}\n")
    _write(os.path.join(cg, "memory.current"), f"{GIB // 4}\n")
    r = read_node_memory(cgroup_root=cg, proc_root=proc)
    assert r.total_bytes == GIB and r.fraction == pytest.approx(0.25)


def test_node_memory_falls_back_to_meminfo(tmp_path):
    cg, proc = _fake_host(tmp_path, "4:memory:/x\n0::/", total_kb=1024 * 1024)
    _write(os.path.join(cg, "memory.max"), "max\n")
    _write(os.path.join(cg, "memory.current"), "1\n")
    r = read_node_memory(cgroup_root=cg, proc_root=proc)
    assert r.source.endswith("meminfo") and r.fraction == pytest.approx(0.5)


def test_node_memory_on_this_machine_is_plausible():
    r = read_node_memory()
    assert 0 < r.used_bytes < r.total_bytes


# ---- choosing ----------------------------------------------------------------------------------


def _cand(n: int, *, actor: bool = False, retriable: bool = True, at: float = 0.0) -> Candidate:
    return Candidate(bytes([n]), 1000 + n, actor, retriable, at, f"w{n}")


def test_retriable_newest_task_goes_first():
    older, newer = _cand(1, at=1.0), _cand(2, at=2.0)
    non_retriable_newest = _cand(3, retriable=False, at=9.0)
    actor_newest = _cand(4, actor=True, at=10.0)
    assert choose_victim([older, non_retriable_newest, newer, actor_newest]) == newer


def test_non_retriable_task_before_actor_and_actor_last():
    task, actor = _cand(1, retriable=False, at=1.0), _cand(2, actor=True, at=5.0)
    assert choose_victim([actor, task]) == task
    assert choose_victim([actor, _cand(3, actor=True, at=6.0)]).worker_id == bytes([3])
    assert choose_victim([]) is None
    assert [victim_rank(c) for c in (_cand(1), task, actor)] == [0, 1, 2]


def test_kill_gate_waits_for_the_victim_or_lower_memory():
    gate = KillGate()
    alive = {b"a"}
    assert not gate.may_kill(90, 100, alive.__contains__, 0.0)
    assert gate.may_kill(110, 100, alive.__contains__, 0.0)
    gate.killed(b"a")
    assert not gate.may_kill(110, 100, alive.__contains__, 0.0)  # victim still dying: no second kill
    alive.clear()
    assert gate.may_kill(110, 100, alive.__contains__, 0.0)  # gone and still above: next one
    gate.killed(b"b")
    alive.add(b"b")
    assert not gate.may_kill(90, 100, alive.__contains__, 0.0)  # below: clear, nothing to do
    assert gate.pending is None


def test_kill_gate_counts_a_dead_victims_memory_as_freed_while_the_reading_lags():
    gate = KillGate()
    gate.killed(b"a", victim_rss_bytes=30, used_bytes=120, now=10.0, settle_s=5.0)
    gone = lambda _: False  # noqa: E731
    # the reading has not moved: 120 - 30 = 90 is under the threshold
    assert not gate.may_kill(120, 100, gone, 11.0)
    # partly shown freed (120 -> 110): 10 of the 30 are still owed, 110 - 20 = 90
    assert not gate.may_kill(110, 100, gone, 12.0)
    # use grows again beyond what the victim held: kill
    assert gate.may_kill(135, 100, gone, 12.5)
    # once the settle time is over, the reading is taken as it is
    gate.killed(b"b", victim_rss_bytes=30, used_bytes=120, now=20.0, settle_s=5.0)
    assert gate.may_kill(120, 100, gone, 25.0)
    assert gate.credit_bytes == 0


def test_kill_gate_without_settle_time_trusts_the_reading():
    gate = KillGate()
    gate.killed(b"a", victim_rss_bytes=30, used_bytes=120, now=0.0, settle_s=0.0)
    assert gate.may_kill(120, 100, lambda _: False, 0.1)


# ---- the monitor with fake leases, pool and reader ----------------------------------------------


class _FakePool:
    def __init__(self) -> None:
        self.by_id: dict[bytes, Any] = {}
        self.killed: list[tuple[Any, str]] = []

    def kill(self, worker: Any, reason: str) -> None:
        self.killed.append((worker, reason))


def _monitor(used_fraction: list[float], threshold: float = 0.9) -> tuple[MemoryMonitor, _FakePool, Any]:
    cfg = Config()
    cfg.memory_usage_threshold = threshold
    pool = _FakePool()
    leases = SimpleNamespace(leases={})

    def add(n: int, *, actor: bool = False, retriable: bool = True, at: float = 0.0,
            driver: bool = False) -> None:
        worker = SimpleNamespace(worker_id=bytes([n]), pid=5000 + n, is_driver=driver)
        pool.by_id[worker.worker_id] = worker
        leases.leases[n] = SimpleNamespace(worker=worker, is_actor=actor, is_retriable=retriable,
                                           granted_at=at, name=f"task{n}")

    def read() -> MemoryReading:
        return MemoryReading(int(used_fraction[0] * 100 * GIB), 100 * GIB, "test")

    mon = MemoryMonitor(SimpleNamespace(), cfg, b"\x07" * 28, "10.1.2.3", leases, pool,  # type: ignore[arg-type]
                        read_memory=read)
    return mon, pool, add


def test_monitor_kills_one_worker_at_a_time_and_records_why():
    level = [0.5]
    mon, pool, add = _monitor(level)
    add(1, at=1.0)
    add(2, at=2.0, retriable=False)
    add(3, actor=True, at=3.0)
    assert mon.check() is None and not pool.killed  # below the threshold
    level[0] = 0.97
    victim = mon.check()
    assert victim is not None and victim.worker_id == b"\x01"
    assert len(pool.killed) == 1 and "memory monitor" in pool.killed[0][1]
    assert mon.check() is None and len(pool.killed) == 1  # waits for the first victim
    del pool.by_id[b"\x01"], mon.leases.leases[1]  # the victim died
    assert mon.check().worker_id == b"\x02"
    cause = mon.failure_cause(b"\x01").failure
    assert cause.type == common_pb2.OUT_OF_MEMORY
    for text in ("07070707", "10.1.2.3", "97.00 GiB / 100.00 GiB", "0.970", "threshold 0.900"):
        assert text in cause.message
    assert not mon.failure_cause(b"\x09").HasField("failure")


def test_monitor_never_kills_drivers_or_itself():
    mon, pool, add = _monitor([0.99])
    add(1, driver=True)
    mon.leases.leases[1].worker.pid = 5001
    add(2)
    mon.leases.leases[2].worker.pid = os.getpid()
    assert mon.check() is None and not pool.killed


def test_kill_causes_are_bounded():
    mon, _, _ = _monitor([0.5])
    mon.config.worker_failure_causes_max = 3
    for n in range(10):
        mon._remember(bytes([n]), "m")
    assert list(mon.causes) == [bytes([n]) for n in (7, 8, 9)]


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_threshold_out_of_range_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="memory_usage_threshold"):
        _monitor([0.5], threshold=bad)


# ---- the owner's error -------------------------------------------------------------------------


def test_owner_reports_an_oom_kill_as_out_of_memory_error():
    spec = common_pb2.TaskSpec(task_id=b"\xab" * 24, name="hungry", max_retries=0,
                               type=common_pb2.NORMAL_TASK)
    task = PendingTask(core_worker_pb2.PushTaskRequest(spec=spec), [], [])
    error = TaskManager(None)._error_for(task, common_pb2.OUT_OF_MEMORY,  # type: ignore[arg-type]
                                         "Memory on node 07 was 9 / 10, above the memory usage threshold 0.5.")
    assert isinstance(error, nbray.exceptions.OutOfMemoryError)
    assert isinstance(error, nbray.exceptions.RayError)
    text = str(error)
    assert "hungry" in text and "ab" * 24 in text and "threshold 0.5" in text
    assert "memory_usage_threshold" in text and "max_retries=0" in text
