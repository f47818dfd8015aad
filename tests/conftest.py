"""Shared fixtures: real clusters that are torn down and checked for leaks."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest


def _own_tmpdir() -> None:
    """Every test run keeps its session files (and `nbray stop`'s reach) to
    itself; under pytest-xdist each worker process gets its own directory
    inside the run's, so one worker's `nbray stop` never reaches another's
    clusters."""
    os.environ.setdefault("NBRAY_TMPDIR", tempfile.mkdtemp(prefix="nbray-tests-"))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not os.environ.get("NBRAY_TESTS_WORKER_TMPDIR"):
        path = os.path.join(os.environ["NBRAY_TMPDIR"], worker)
        os.makedirs(path, exist_ok=True)
        os.environ["NBRAY_TMPDIR"] = os.environ["NBRAY_TESTS_WORKER_TMPDIR"] = path


_own_tmpdir()


def _share_compiled_modules() -> None:
    """Let the run's processes share compiled modules, outside the source tree.

    With PYTHONDONTWRITEBYTECODE set (as CI sets it) nothing caches bytecode,
    so every GCS, raylet, worker factory and CLI process the tests start
    compiles each nbray module it imports again. Instead, the first process
    to import a module writes its bytecode under a directory of this run
    (PYTHONPYCACHEPREFIX), which the tree never sees and which is removed
    at the end; the rest read it from there.
    """
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        prefix = tempfile.mkdtemp(prefix="nbray-tests-pycache-")
        del os.environ["PYTHONDONTWRITEBYTECODE"]
        os.environ["PYTHONPYCACHEPREFIX"] = prefix
        sys.pycache_prefix, sys.dont_write_bytecode = prefix, False  # and so does this process
        atexit.register(shutil.rmtree, prefix, ignore_errors=True)


_share_compiled_modules()

import nbray  # noqa: E402
from nbray.testing import Cluster, assert_no_leaks, descendant_pids  # noqa: E402


def _start(**kwargs: Any) -> tuple[Any, set[int]]:
    ctx = nbray.init(**kwargs)
    from nbray.api import _state

    node = _state.node
    pids = descendant_pids(list(node.pids().values())) if node is not None else set()
    return ctx, pids


def _stop(pids: set[int]) -> None:
    from nbray.api import _state

    node = _state.node
    if node is not None:
        pids |= descendant_pids(list(node.pids().values()))
    nbray.shutdown()
    assert_no_leaks(pids)


@pytest.fixture
def ray_start(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh local cluster per test; parametrize with init() kwargs."""
    kwargs = getattr(request, "param", None) or {"num_cpus": 2}
    ctx, pids = _start(**kwargs)
    try:
        yield ctx
    finally:
        _stop(pids)


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Any]:
    """One local cluster (2 CPUs, 2 logical GPUs) for a whole test module."""
    ctx, pids = _start(num_cpus=2, num_gpus=2, resources={"custom": 4},
                       object_store_memory=256 * 1024 * 1024)
    try:
        yield ctx
    finally:
        _stop(pids)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """An empty multi-node Cluster helper; add nodes in the test."""
    c = Cluster()
    try:
        yield c
    finally:
        c.shutdown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """In CI (CI=true) nothing may be skipped: a missing tool or privilege
    fails the test, so the pipeline cannot pass without checking it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {reason}"
