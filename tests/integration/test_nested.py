"""Nested tasks: a task blocked in get lends its CPU to its children."""

import pytest

import nbray

pytestmark = pytest.mark.timeout(120)


def test_nested_tasks_depth_50_with_two_cpus(shared_cluster):
    @nbray.remote
    def depth(n):
        if n == 0:
            return 0
        return nbray.get(depth.remote(n - 1)) + 1

    assert nbray.get(depth.remote(50), timeout=100) == 50


def test_blocked_parent_lends_cpu_to_children(shared_cluster):
    @nbray.remote
    def child(i):
        return i

    @nbray.remote
    def parent(n):
        return sum(nbray.get([child.remote(i) for i in range(n)]))

    # two parents occupy both CPUs; their children still run
    assert nbray.get([parent.remote(10), parent.remote(10)], timeout=60) == [45, 45]
