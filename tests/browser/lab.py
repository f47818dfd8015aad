"""JupyterLab with the nbray extension, driven by headless Chromium: shared by the browser tests.

``jupyter_lab(tmp)`` starts a JupyterLab server with the nbray server
extension and the labextension built in this source tree (ahead of any
copy installed earlier), in its own config, runtime and settings folders,
with ``NBRAY_TMPDIR`` pointing into ``tmp`` so the panel sees only the
clusters the test starts; then a Chromium page. Everything is stopped and
restored on exit. ``MARKS`` skip a module when Chromium, playwright or the
built labextension are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nbray.testing import Cluster, wait_for_condition

CHROMIUM = os.environ.get("NBRAY_TEST_CHROMIUM", "/usr/bin/chromium")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILT = os.path.join(REPO, "nbray", "labextension", "package.json")
ARTIFACTS = os.path.join(REPO, "test-artifacts")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
LAB_TOKEN = "nbray-browser-test"
LAB_START_TIMEOUT_S = 60

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is a test dependency
    sync_playwright = None  # type: ignore[assignment]

MARKS = [
    pytest.mark.frontend,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright Python package is not installed"),
    pytest.mark.skipif(not os.path.exists(BUILT), reason="labextension not built: run `pip install -e .` "
                                                         "or `jlpm build:prod` in labextension/"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    page: Any
    tmp: Path


def _write_config(tmp: Path) -> None:
    for sub in ("root", "config", "runtime", "workspaces", "labextensions",
                "settings/@jupyterlab/apputils-extension"):
        os.makedirs(tmp / sub)
    # No "get notified about Jupyter news?" toast over the screenshots.
    with open(tmp / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings", "w") as f:
        f.write('{"fetchNews": "false"}')
    # The build in the source tree, ahead of a copy installed earlier that may be older
    # (Lab serves an extension's files from <path>/<its name>/).
    os.symlink(os.path.join(REPO, "nbray", "labextension"), tmp / "labextensions" / "nbray-labextension")
    with open(tmp / "config" / "jupyter_server_config.py", "w") as f:
        f.write("c.ServerApp.jpserver_extensions = {'nbray.jupyter.server_extension': True}\n"
                "c.LabApp.news_url = None\n"
                "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
                f"c.LabApp.extra_labextensions_path = [{str(tmp / 'labextensions')!r}]\n")


@contextmanager
def jupyter_lab(tmp: Path, viewport: tuple[int, int] = (1500, 2000)) -> Iterator[Lab]:
    """JupyterLab and a Chromium page on it; clusters started inside are the only ones the panel sees."""
    saved_tmpdir = os.environ.get("NBRAY_TMPDIR")
    os.environ["NBRAY_TMPDIR"] = str(tmp / "nbray-tmp")
    os.makedirs(os.environ["NBRAY_TMPDIR"])
    _write_config(tmp)
    port = free_port()
    lab_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings")}
    lab_env.pop("NBRAY_ADDRESS", None)
    with open(tmp / "lab.log", "wb") as lab_log:
        lab = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root",
             f"--IdentityProvider.token={LAB_TOKEN}", f"--ServerApp.root_dir={tmp / 'root'}"],
            env=lab_env, stdout=lab_log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    playwright = browser = None
    try:
        def lab_up() -> bool:
            assert lab.poll() is None, (tmp / "lab.log").read_text()
            with urllib.request.urlopen(f"{url}/api/status?token={LAB_TOKEN}", timeout=2) as r:
                return r.status == 200

        wait_for_condition(lab_up, timeout=LAB_START_TIMEOUT_S, retry_interval_ms=200, message="JupyterLab started")
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        os.makedirs(ARTIFACTS, exist_ok=True)
        yield Lab(url, page, tmp)
    finally:
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait(10)
        if saved_tmpdir is None:
            os.environ.pop("NBRAY_TMPDIR", None)
        else:
            os.environ["NBRAY_TMPDIR"] = saved_tmpdir
        shutil.rmtree(tmp / "nbray-tmp", ignore_errors=True)


MIB = 1024 * 1024


@dataclass
class Env:
    cluster: Cluster
    lab_url: str
    page: Any
    started: list[Cluster]
    held: dict[str, Any] = field(default_factory=dict)


def start_cluster(started: list[Cluster]) -> Cluster:
    """Head (2 CPUs, 1 GPU, dashboard) + a worker node; recorded in `started` before it starts."""
    cluster = Cluster()
    started.append(cluster)
    cluster.add_node(num_cpus=2, num_gpus=1, include_dashboard=True, dashboard_port=0,
                     object_store_memory=256 * MIB)
    cluster.add_node(num_cpus=1, object_store_memory=128 * MIB)
    return cluster


def open_panel(page: Page, lab_url: str) -> None:
    """Load Lab, show the nbray sidebar and wait until it is connected."""
    page.goto(f"{lab_url}/lab?token={LAB_TOKEN}")
    tab = page.locator('li.lm-TabBar-tab[data-id="nbray-panel"]')
    tab.wait_for(timeout=60_000)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    expect(page.locator("#nbray-panel .nbray-status")).to_have_attribute("data-state", "connected", timeout=30_000)
