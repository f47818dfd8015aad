"""The TaskStream and ClusterView widgets against a real local cluster (in-process widgets, no browser)."""

from __future__ import annotations

import pytest

import nbray
from nbray.testing import wait_for_condition
from nbray.util.state import list_nodes

pytestmark = pytest.mark.timeout(120)


def test_task_stream_shows_attempts_per_worker_and_the_failure(shared_cluster: object) -> None:
    from nbray.widgets import TaskStream

    @nbray.remote
    def square(x: int) -> int:
        return x * x

    @nbray.remote(max_retries=0)
    def explode() -> None:
        raise ValueError("kaboom from the stream test")

    assert nbray.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    failed = explode.remote()
    with pytest.raises(ValueError):
        nbray.get(failed)
    stream = TaskStream(live=False)
    try:
        def all_bars() -> bool:
            stream.refresh()
            return stream.num_bars >= 6 and stream.num_failed == 1

        wait_for_condition(all_bars, timeout=30, retry_interval_ms=200, message="6 bars, 1 failed")
        layout = stream.layout_data
        funcs = [layout["short_funcs"][f] for f in layout["bars"]["func"]]
        assert funcs.count("square") == 5 and funcs.count("explode") == 1
        alive = {n["node_id"] for n in list_nodes()}
        assert layout["rows"] and all(r["worker_id"] and r["pid"] and r["node_id"] in alive for r in layout["rows"])
        assert "TaskStream(job=" in repr(stream) and "failed=1" in repr(stream)
        stream.selected = f"{failed.hex()[:48]}:0"
        assert "kaboom from the stream test" in stream.details and "FAILED" in stream.details
        stream.selected = "no-such-task:0"
        assert stream.details == ""
        # one cell's tasks only: none carry this tag
        other_cell = TaskStream(job="all", cell="no such cell", live=False)
        assert other_cell.num_bars == 0
        other_cell.close()
    finally:
        stream.close()
    with pytest.raises(ValueError, match="window_s"):
        TaskStream(window_s=0, live=False)


def test_cluster_view_keeps_a_bounded_utilization_history(shared_cluster: object) -> None:
    from nbray.widgets import ClusterView

    view = ClusterView(live=False)
    try:
        for _ in range(3):
            view.refresh()
        (row,) = view.rows.values()
        assert len(row.history) == 4  # the first refresh ran in the constructor
        assert row.history.maxlen == 600
        assert "data-series='CPU' data-points='4'" in row.sparks.value
        assert "data-series='GPU'" in row.sparks.value  # this cluster has GPUs
    finally:
        view.close()
