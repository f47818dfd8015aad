"""The raylet's memory monitor kills workers under memory pressure (real processes).

Each test starts its own cluster with the threshold set from this
machine's memory use just before: the use then, plus room for the cluster
itself and a margin (``HEADROOM_BYTES``). Memory-hungry tasks grow in small
steps until they are killed (never past ``HOG_CAP_BYTES``), so they cross
the threshold on any machine, even while other processes' use drifts,
without pushing it near OOM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nbray
from nbray.raylet.memory_monitor import read_node_memory
from nbray.testing import assert_no_leaks, descendant_pids, wait_for_condition

pytestmark = [pytest.mark.serial, pytest.mark.timeout(120)]

MB = 1 << 20
# about 150 MB for the cluster's own processes and a margin for other
# processes of a shared machine whose use rises meanwhile
HEADROOM_BYTES = 600 * MB
HOG_STEP_BYTES = 25 * MB
HOG_CAP_BYTES = 2560 * MB
HOLD_S = 60.0  # a hungry task gives up waiting to be killed after this long


@nbray.remote
def _warm() -> int:
    return os.getpid()


@pytest.fixture
def pressured_cluster() -> Iterator[dict[str, Any]]:
    """A 2-CPU cluster whose memory threshold sits HEADROOM_BYTES above the
    node's use before it started."""
    from nbray.api import _state

    reading = _settled_memory_reading()
    threshold = (reading.used_bytes + HEADROOM_BYTES) / reading.total_bytes
    nbray.init(num_cpus=2, _system_config={"memory_usage_threshold": threshold,
                                           "memory_monitor_refresh_ms": 100})
    node = _state.node
    assert node is not None
    pids = descendant_pids(list(node.pids().values()))
    try:
        nbray.get([_warm.remote() for _ in range(4)])
        yield {"threshold": threshold, "raylet_pid": node.pids()["raylet"],
               "node_id": nbray.get_runtime_context().get_node_id()}
    finally:
        pids |= descendant_pids(list(node.pids().values()))
        nbray.shutdown()
        assert_no_leaks(pids)


def _settled_memory_reading(window_s: float = 1.0, tolerance_bytes: int = 32 * MB,
                            timeout_s: float = 20.0) -> Any:
    """The node's memory reading once it has stopped falling. Memory that the
    processes of an earlier test or CI step freed can take seconds to show
    as available; a threshold set from a reading taken meanwhile would sit
    so high that a hungry task might never cross it. Past `timeout_s` the
    latest reading is taken as it is."""
    readings: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        reading = read_node_memory()
        now = time.monotonic()
        readings.append((now, reading.used_bytes))
        earlier = [used for at, used in readings if now - at >= window_s]
        if (earlier and earlier[-1] - reading.used_bytes < tolerance_bytes) or now >= deadline:
            return reading
        time.sleep(0.1)  # the next reading; the loop ends on the condition above


def _hog(hold_s: float) -> str:
    """Grow this process's memory step by step (up to HOG_CAP_BYTES) and hold
    it; returns only if the memory monitor never kills the process."""
    blocks: list[bytearray] = []
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline:
        if len(blocks) * HOG_STEP_BYTES < HOG_CAP_BYTES:
            blocks.append(bytearray(b"\x01") * HOG_STEP_BYTES)  # touched, so really resident
        time.sleep(0.02)  # waiting to be killed; the test fails if that never happens
    return f"survived holding {len(blocks) * HOG_STEP_BYTES} bytes"


def test_non_retriable_task_gets_out_of_memory_error(pressured_cluster, tmp_path):
    @nbray.remote(max_retries=0)
    def hungry() -> str:
        return _hog(HOLD_S)

    ref = hungry.remote()
    with pytest.raises(nbray.exceptions.OutOfMemoryError) as info:
        nbray.get(ref, timeout=HOLD_S + 30)
    text = str(info.value)
    assert "hungry" in text and ref.task_id().hex() in text
    assert pressured_cluster["node_id"] in text
    assert f"threshold {pressured_cluster['threshold']:.3f}" in text
    assert "GiB /" in text and "max_retries=0" in text
    assert not isinstance(info.value, nbray.exceptions.WorkerCrashedError)
    # the raylet and this driver survive, and the node keeps running tasks
    os.kill(pressured_cluster["raylet_pid"], 0)
    assert nbray.get(_warm.remote(), timeout=30) > 0


def test_retriable_task_is_retried_after_an_oom_kill(pressured_cluster, tmp_path):
    marker = tmp_path / "first-attempt"

    @nbray.remote(max_retries=2)
    def hungry_once(path: str) -> str:
        if not os.path.exists(path):
            open(path, "w").close()
            return _hog(HOLD_S)
        return "second attempt"

    assert nbray.get(hungry_once.remote(str(marker)), timeout=HOLD_S + 30) == "second attempt"
    assert marker.exists()


def test_task_is_killed_before_a_newer_actor(pressured_cluster, tmp_path):
    go = tmp_path / "go"

    @nbray.remote(max_retries=0)
    def hungry_later(path: str) -> str:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)  # released by the test once the actor runs
        return _hog(HOLD_S)

    @nbray.remote
    class Bystander:
        def pid(self) -> int:
            return os.getpid()

    ref = hungry_later.remote(str(go))
    actor = Bystander.remote()  # leased after the task: the newer of the two
    try:
        actor_pid = nbray.get(actor.pid.remote(), timeout=30)
        go.touch()
        with pytest.raises(nbray.exceptions.OutOfMemoryError):
            nbray.get(ref, timeout=HOLD_S + 30)
        assert nbray.get(actor.pid.remote(), timeout=30) == actor_pid
    finally:
        nbray.kill(actor)
    wait_for_condition(lambda: not _alive(actor_pid), timeout=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_oom_kill_uses_one_retry(pressured_cluster, tmp_path):
    attempts = tmp_path / "attempts"

    @nbray.remote(max_retries=1)
    def always_hungry(path: str) -> str:
        with open(path, "a") as f:
            f.write("x")
        return _hog(HOLD_S)

    with pytest.raises(nbray.exceptions.OutOfMemoryError, match=r"tried 2 time\(s\) \(max_retries=1\)"):
        nbray.get(always_hungry.remote(str(attempts)), timeout=2 * HOLD_S)
    assert attempts.read_text() == "xx"
