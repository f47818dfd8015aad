"""The side-by-side %%remote benchmark's pure parts (its rounds need a Ray venv: docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from nbray.scripts.remote_cell_backends_bench import main, summarize


def test_the_summary_is_the_median_of_each_rounds_figures() -> None:
    rounds = [{"p50_ms": 10.0, "p95_ms": 30.0, "local_cell_p50_ms": 1.0},
              {"p50_ms": 12.0, "p95_ms": 90.0, "local_cell_p50_ms": 2.0},
              {"p50_ms": 11.0, "p95_ms": 40.0, "local_cell_p50_ms": 3.0}]
    assert summarize(rounds) == {"p50_ms": 11.0, "p95_ms": 40.0, "local_cell_p50_ms": 2.0}


@pytest.mark.parametrize("argv, says", [(["--rounds", "0"], "at least 1"),
                                        (["--ray-python", "/nonexistent/python"], "setup_ray_env.sh")])
def test_bad_arguments_are_refused_before_anything_starts(argv: list[str], says: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
