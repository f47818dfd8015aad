"""Pure parts of the scale harnesses: the death-detection bound and the
kernel's memory accounting."""

from __future__ import annotations

import os

import pytest

from nbray.testing.process_memory import children_by_parent, memory_of, parse_smaps_rollup
from nbray.testing.scale import HealthCheck, death_detection_bound_s

ROLLUP = """55d0c0a00000-7ffd3b5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:               41236 kB
Pss:               20112 kB
Pss_Anon:          12000 kB
Shared_Clean:      20000 kB
Shared_Dirty:        400 kB
Private_Clean:      1024 kB
Private_Dirty:     19812 kB
Referenced:        41236 kB
Swap:                  0 kB
"""


def test_the_bound_covers_every_failure_a_period_late_plus_one_period() -> None:
    assert death_detection_bound_s(HealthCheck(500, 1_000, 3)) == pytest.approx(5.0)
    assert death_detection_bound_s(HealthCheck(3_000, 10_000, 5)) == pytest.approx(68.0)


def test_the_bound_refuses_settings_that_never_detect() -> None:
    with pytest.raises(ValueError):
        death_detection_bound_s(HealthCheck(0, 1_000, 3))
    with pytest.raises(ValueError):
        death_detection_bound_s(HealthCheck(500, 1_000, 0))


def test_smaps_rollup_gives_rss_pss_and_private_bytes() -> None:
    m = parse_smaps_rollup(ROLLUP)
    assert (m.rss, m.pss, m.uss) == (41236 * 1024, 20112 * 1024, (1024 + 19812) * 1024)
    assert (m + m).uss == 2 * m.uss


def test_smaps_rollup_without_the_fields_is_an_error() -> None:
    with pytest.raises(ValueError, match="Private_Dirty"):
        parse_smaps_rollup("Rss: 1 kB\nPss: 1 kB\nPrivate_Clean: 1 kB\n")


def test_this_process_is_measured_and_found_under_its_parent() -> None:
    m = memory_of(os.getpid())
    assert 0 < m.uss <= m.pss <= m.rss
    assert os.getpid() in children_by_parent()[os.getppid()]
    with pytest.raises(ProcessLookupError):
        memory_of(2 ** 22 + 1)  # above the kernel's pid_max


def test_actors_that_fit_keep_the_reserve_and_never_go_negative() -> None:
    from nbray.scripts.scale_actors import actors_that_fit

    assert actors_that_fit(10 * 1024, 100, 1024) == 92
    assert actors_that_fit(1000, 100, 2000) == 0
    with pytest.raises(ValueError):
        actors_that_fit(1000, 0, 0)
