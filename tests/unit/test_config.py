"""The typed configuration and its overrides."""

import pytest

from nbray.common.config import Config


def test_env_overrides_with_types():
    cfg = Config()
    cfg.apply_env({"NBRAY_TASK_MAX_RETRIES": "7", "NBRAY_LOG_TO_DRIVER": "false",
                   "NBRAY_SCHEDULER_SPREAD_THRESHOLD": "0.25"})
    assert cfg.task_max_retries == 7 and cfg.log_to_driver is False
    assert cfg.scheduler_spread_threshold == 0.25


def test_json_roundtrip_carries_only_overrides():
    cfg = Config()
    cfg.apply({"health_check_period_ms": 100})
    again = Config.from_json(cfg.to_json())
    assert again.health_check_period_ms == 100
    assert cfg.to_json() == '{"health_check_period_ms": 100}'


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown nbray config option 'nope'"):
        Config().apply({"nope": 1})


def test_bad_type_is_a_clear_error():
    with pytest.raises(ValueError, match="expects int"):
        Config().apply({"task_max_retries": "many"})
