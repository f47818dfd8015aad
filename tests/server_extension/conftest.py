"""A real Jupyter server (pytest-jupyter) with the nbray extension, and clusters for it to find."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and hooks: jp_fetch, jp_serverapp, ...)
from traitlets.config import Config

from nbray.testing import Cluster, shutdown_all

EXTENSION = "nbray.jupyter.server_extension"


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {EXTENSION: True}}})


@pytest.fixture
def cluster_root(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty place for this test's clusters: the extension sees only those."""
    root = str(tmp_path / "nbray-tmp")
    os.makedirs(root)
    monkeypatch.setenv("NBRAY_TMPDIR", root)
    monkeypatch.delenv("NBRAY_ADDRESS", raising=False)
    return root


@pytest.fixture
def start_cluster(cluster_root: str) -> Iterator[Callable[..., Cluster]]:
    """Start clusters (head only, 1 CPU) under `cluster_root`; all are shut down after the test."""
    started: list[Cluster] = []

    def start(**head_args: Any) -> Cluster:
        cluster = Cluster()
        started.append(cluster)  # before the head starts, so a failed start is cleaned up too
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024, **head_args)
        return cluster

    yield start
    shutdown_all(started)


async def eventually(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Await until `condition()` (sync or async) is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: BaseException | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except Exception as exc:  # keep waiting; reported on timeout
            last = exc
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s (last error: {last!r})")
