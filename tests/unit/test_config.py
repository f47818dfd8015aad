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


def test_keyword_overrides_equality_and_replace():
    cfg = Config(task_max_retries=9)
    assert cfg.task_max_retries == 9 and Config().task_max_retries != 9
    assert cfg == Config(task_max_retries=9) and cfg != Config()
    again = cfg.replace(log_to_driver=False)
    assert again.overrides() == {"task_max_retries": 9, "log_to_driver": False}
    assert cfg.log_to_driver is True  # replace leaves the original alone
    assert "task_max_retries=9" in repr(cfg)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="nope"):
        Config(nope=1)


def test_fields_name_every_setting_with_its_type():
    fields = Config.fields()
    assert fields["task_max_retries"] == "int" and fields["log_to_driver"] == "bool"
    assert fields["scheduler_spread_threshold"] == "float" and fields["gcs_storage"] == "str"
    assert Config.field_names() == list(fields)
    assert all(hasattr(Config(), name) for name in fields)


def test_instances_do_not_share_settings():
    a, b = Config(), Config()
    a.apply({"health_check_period_ms": 5})
    assert b.health_check_period_ms != 5 and Config().health_check_period_ms != 5
