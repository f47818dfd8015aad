"""Reading every task event past the GCS's row limit (a cluster of its own, with a small limit)."""

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util import state

pytestmark = pytest.mark.timeout(90)


@nbray.remote
def quick(i):
    return i


@pytest.mark.parametrize("ray_start", [{"num_cpus": 2, "_system_config": {"state_api_max_limit": 25}}],
                         indirect=True)
def test_listing_pages_past_the_servers_row_limit_and_keeps_the_newest(ray_start):
    refs = [quick.remote(i) for i in range(70)]
    assert nbray.get(refs) == list(range(70))
    ids = [r.task_id().hex() for r in refs]

    def all_finished():
        rows = state.list_tasks(limit=1000)
        return rows if len(rows) == 70 and all(r["state"] == "FINISHED" for r in rows) else None

    rows = wait_for_condition(all_finished, timeout=20)
    assert [r["task_id"] for r in rows] == ids  # every row, oldest first, over three pages
    assert [r["task_id"] for r in state.list_tasks(limit=5)] == ids[-5:]  # a limit keeps the newest
    assert [r["task_id"] for r in state.list_tasks(limit=40)] == ids[-40:]
