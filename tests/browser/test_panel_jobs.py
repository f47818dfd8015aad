"""End to end: the panel's Jobs section, in headless Chromium against a real cluster and JupyterLab.

A job that waits on a file is submitted through the Jobs API; the panel
lists it RUNNING, opens it to its log, and its Stop button stops it.
Needs what tests/browser/test_panel.py needs (Chromium, playwright, the
built labextension); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbray.job_submission import JobStatus, JobSubmissionClient
from nbray.testing import Cluster, wait_for_condition
from tests.browser.test_panel import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    LAB_TOKEN,
    REPO,
    free_port,
    open_panel,
)
from tests.browser.test_panel import pytestmark as panel_marks

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - skipped by the marks above
    pass

pytestmark = panel_marks


@dataclass
class JobsEnv:
    client: JobSubmissionClient
    lab_url: str
    page: Any
    tmp: Path


@pytest.fixture(scope="module")
def jobs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsEnv]:
    tmp = tmp_path_factory.mktemp("browser-jobs")
    saved_tmpdir = os.environ.get("NBRAY_TMPDIR")
    os.environ["NBRAY_TMPDIR"] = str(tmp / "nbray-tmp")  # the panel sees only this module's cluster
    os.makedirs(os.environ["NBRAY_TMPDIR"])
    for sub in ("root", "config", "runtime", "workspaces", "settings/@jupyterlab/apputils-extension"):
        os.makedirs(tmp / sub)
    with open(tmp / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings", "w") as f:
        f.write('{"fetchNews": "false"}')
    with open(tmp / "config" / "jupyter_server_config.py", "w") as f:
        f.write("c.ServerApp.jpserver_extensions = {'nbray.jupyter.server_extension': True}\n"
                "c.LabApp.news_url = None\n"
                "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n")
        # The build in the source tree, ahead of a copy installed earlier that may predate the Jobs section
        # (Lab serves an extension's files from <path>/<its name>/).
        os.makedirs(tmp / "labextensions")
        os.symlink(os.path.join(REPO, "nbray", "labextension"), tmp / "labextensions" / "nbray-labextension")
        f.write(f"c.LabApp.extra_labextensions_path = [{str(tmp / 'labextensions')!r}]\n")
    port = free_port()
    lab_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings")}
    lab_env.pop("NBRAY_ADDRESS", None)
    cluster = Cluster()
    with open(tmp / "lab.log", "wb") as lab_log:
        lab = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root",
             f"--IdentityProvider.token={LAB_TOKEN}", f"--ServerApp.root_dir={tmp / 'root'}"],
            env=lab_env, stdout=lab_log, stderr=subprocess.STDOUT, start_new_session=True)
    lab_url = f"http://127.0.0.1:{port}"
    playwright = browser = None
    try:
        node = cluster.add_node(num_cpus=2, include_dashboard=True, dashboard_port=0,
                                object_store_memory=96 * 1024 * 1024)
        client = JobSubmissionClient(node.extra["dashboard_url"],
                                     headers={"Authorization": f"Bearer {node.token.hex()}"})

        def lab_up() -> bool:
            assert lab.poll() is None, (tmp / "lab.log").read_text()
            with urllib.request.urlopen(f"{lab_url}/api/status?token={LAB_TOKEN}", timeout=2) as r:
                return r.status == 200

        wait_for_condition(lab_up, timeout=60, retry_interval_ms=200, message="JupyterLab started")
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1600})
        os.makedirs(ARTIFACTS, exist_ok=True)
        yield JobsEnv(client, lab_url, page, tmp)
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
        try:
            cluster.shutdown()
        finally:
            if saved_tmpdir is None:
                os.environ.pop("NBRAY_TMPDIR", None)
            else:
                os.environ["NBRAY_TMPDIR"] = saved_tmpdir
            shutil.rmtree(tmp / "nbray-tmp", ignore_errors=True)


def test_panel_lists_jobs_shows_logs_and_stops_one(jobs_env: JobsEnv) -> None:
    client, page = jobs_env.client, jobs_env.page
    gate = jobs_env.tmp / "gate"
    done = client.submit_job(entrypoint="echo finished-job", submission_id="panel-done")
    assert client.wait_until_done(done, 60) == JobStatus.SUCCEEDED
    sid = client.submit_job(entrypoint=f"echo job-says-hello; while [ ! -e {gate} ]; do sleep 0.05; done",
                            submission_id="panel-waits")
    wait_for_condition(lambda: client.get_job_status(sid) == JobStatus.RUNNING, timeout=60)

    open_panel(page, jobs_env.lab_url)
    row = page.locator(f'.nbray-job[data-submission-id="{sid}"]')
    expect(row).to_have_attribute("data-status", "RUNNING", timeout=30_000)
    expect(row.locator(".nbray-job-status")).to_have_text("RUNNING")
    expect(row.locator(".nbray-job-entrypoint")).to_contain_text("echo job-says-hello")
    finished = page.locator(f'.nbray-job[data-submission-id="{done}"]')
    expect(finished).to_have_attribute("data-status", "SUCCEEDED")
    expect(finished.locator(".nbray-job-stop")).to_have_count(0)  # nothing to stop
    expect(page.locator(".nbray-jobs-section .nbray-section-title")).to_have_text("Jobs (1 running of 2)")

    row.locator(".nbray-job-summary").click()
    expect(row.locator(".nbray-job-logs")).to_contain_text("job-says-hello", timeout=15_000)

    clicked = time.monotonic()
    row.locator(".nbray-job-stop").click()
    expect(row).to_have_attribute("data-status", "STOPPED", timeout=30_000)
    shown_s = time.monotonic() - clicked
    expect(row.locator(".nbray-job-stop")).to_have_count(0)
    assert client.get_job_status(sid) == JobStatus.STOPPED
    assert not gate.exists()  # it was the button, not the job finishing
    expect(row.locator(".nbray-job-logs")).to_contain_text("job-says-hello")
    page.screenshot(path=os.path.join(ARTIFACTS, "panel-jobs.png"))
    print(f"Stop clicked -> STOPPED shown: {shown_s * 1000:.0f} ms")
