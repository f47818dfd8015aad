"""The dashboard's bounds are fields of the one Config, set by the NBRAY_DASHBOARD_* variables as before."""

import pytest

from nbray.common.config import Config
from nbray.dashboard.source import ClusterModel

pytestmark = pytest.mark.timeout(30)


def test_dashboard_knobs_keep_their_environment_names():
    cfg = Config()
    cfg.apply_env({"NBRAY_DASHBOARD_MAX_TASKS": "5", "NBRAY_DASHBOARD_GCS_RECONNECT_TIMEOUT_MS": "1500"})
    assert cfg.dashboard_max_tasks == 5 and cfg.dashboard_gcs_reconnect_timeout_ms == 1500
    assert ClusterModel(cfg).tasks.max_tasks == 5
    # ... and travel to the dashboard process with the cluster's config
    assert Config.from_json(cfg.to_json()).dashboard_max_tasks == 5


def test_a_bad_dashboard_value_is_a_clear_error():
    with pytest.raises(ValueError, match="dashboard_sse_keepalive_ms expects int"):
        Config().apply_env({"NBRAY_DASHBOARD_SSE_KEEPALIVE_MS": "soon"})
