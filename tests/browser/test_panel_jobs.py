"""End to end: the panel's Jobs section, in headless Chromium against a real cluster and JupyterLab.

A job that waits on a file is submitted through the Jobs API; the panel
lists it RUNNING, opens it to its log, and its Stop button stops it.
Needs what tests/browser/test_panel.py needs (Chromium, playwright, the
built labextension); skipped otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbray.job_submission import JobStatus, JobSubmissionClient
from nbray.testing import Cluster, wait_for_condition
from tests.browser.lab import ARTIFACTS, MARKS, jupyter_lab, open_panel

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - skipped by MARKS
    pass

pytestmark = [*MARKS, pytest.mark.timeout(240)]


@dataclass
class JobsEnv:
    client: JobSubmissionClient
    lab_url: str
    page: Any
    tmp: Path


@pytest.fixture(scope="module")
def jobs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsEnv]:
    with jupyter_lab(tmp_path_factory.mktemp("browser-jobs"), viewport=(1500, 1600)) as lab:
        cluster = Cluster()
        try:
            node = cluster.add_node(num_cpus=2, include_dashboard=True, dashboard_port=0,
                                    object_store_memory=96 * 1024 * 1024)
            client = JobSubmissionClient(node.extra["dashboard_url"],
                                         headers={"Authorization": f"Bearer {node.token.hex()}"})
            yield JobsEnv(client, lab.url, lab.page, lab.tmp)
        finally:
            cluster.shutdown()


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
