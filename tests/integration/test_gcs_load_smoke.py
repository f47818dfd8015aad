"""A real GCS under simulated nodes (``nbray.scripts.scale_gcs_load``), scaled
down: every node registers, reports, answers health checks and receives a
resource change of another node through the broadcast view."""

from __future__ import annotations

import pytest

from nbray.scripts.scale_gcs_load import run

pytestmark = pytest.mark.timeout(120)


def test_simulated_nodes_load_the_gcs_and_every_subscriber_sees_a_change() -> None:
    nodes = 40
    figures = run(nodes, processes=2, report_hz=2.0, window_s=1.5, probes=2, max_gcs_mib=1024,
                  system_config={"health_check_period_ms": 200, "health_check_initial_delay_ms": 200})
    quiet, subscribed = figures["reports only"], figures["reports, every node subscribed"]
    assert quiet["reports"] >= nodes and subscribed["reports"] >= nodes
    assert quiet["health_checks"] >= nodes  # every node was probed and answered
    # Subscribers get the whole view once, then only changes (reports that
    # repeat the last one send nothing), so the subscribed window may see none.
    assert quiet["publications_received_per_s"] == 0
    assert quiet["gcs_cpu_per_report_us"] > 0
    change = figures["resource change reaching every subscriber"]
    assert change["reached (min share)"] == 1.0
    assert 0 < change["last subscriber, worst probe (s)"] < 30
    assert figures["nodes declared dead meanwhile"] == 0 and figures["connections the GCS closed"] == 0
