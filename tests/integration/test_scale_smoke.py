"""Many raylets in one cluster on this machine (``nbray.scripts.scale_nodes``),
scaled down to 8: they all join, a task pinned to each runs there, status
answers quickly, and a killed or hung raylet is declared dead in time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbray.testing.scale import HealthCheck, ManyNodes, death_detection_bound_s

pytestmark = pytest.mark.timeout(120)

RAYLETS = 8


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[ManyNodes, float]]:
    many = ManyNodes(RAYLETS, cpus_per_raylet=1, health_check=HealthCheck(500, 1_000, 3))
    try:
        join_s = many.start(timeout_s=60)
        many.connect()
        yield many, join_s
    finally:
        many.shutdown()  # asserts no process is left behind


def test_every_raylet_joins_and_runs_the_task_pinned_to_it(nodes: tuple[ManyNodes, float]) -> None:
    many, join_s = nodes
    assert join_s <= 60
    assert len(many.alive_node_ids()) == RAYLETS
    _, ran = many.run_task_on_every_node()
    assert len(ran) == RAYLETS and all(asked == where for asked, where in ran.items())


def test_status_answers_within_a_second(nodes: tuple[ManyNodes, float]) -> None:
    many, _ = nodes
    assert many.status_latency_s(rounds=3) <= 1.0


def test_each_node_reports_its_memory(nodes: tuple[ManyNodes, float]) -> None:
    many, _ = nodes
    memory = many.memory_per_node()
    assert memory.raylet.uss > 0 and memory.worker_factory.uss > 0
    assert memory.workers_per_node >= 1  # one CPU each: a worker is kept ready


def test_a_killed_and_a_hung_raylet_are_declared_dead_within_the_bound(nodes: tuple[ManyNodes, float]) -> None:
    many, _ = nodes
    bound = death_detection_bound_s(many.health_check)
    assert many.kill_one() <= bound
    assert many.hang_one() <= bound
    assert len(many.alive_node_ids()) == RAYLETS - 2
    _, ran = many.run_task_on_every_node()  # the rest still schedule
    assert len(ran) == RAYLETS - 2 and all(asked == where for asked, where in ran.items())
