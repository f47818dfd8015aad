"""The browser tests' shared fixture: a two-node cluster, JupyterLab and a Chromium page (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nbray
from nbray.testing import Cluster, shutdown_all
from tests.browser.lab import Env, jupyter_lab, start_cluster


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The cluster this process drives, JupyterLab showing it, a page; torn down after the module."""
    started: list[Cluster] = []
    with jupyter_lab(tmp_path_factory.mktemp("browser")) as lab:
        try:
            cluster = start_cluster(started)
            nbray.init(address=cluster.address)
            yield Env(cluster, lab.url, lab.page, started)
        finally:
            if nbray.is_initialized():
                nbray.shutdown()
            shutdown_all(started)  # a test may add a second cluster
