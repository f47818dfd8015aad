"""tqdm_ray: bars made in tasks and actors are drawn by a driver process.

Each test runs a driver program in a subprocess (its own local cluster)
and reads what it wrote: once to a pipe (plain lines), once to a
pseudo-terminal (bars redrawn in place).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbray.experimental.tqdm_ray import RAY_TQDM_MAGIC

pytestmark = pytest.mark.timeout(90)

DRIVER = """
import nbray
from nbray.experimental.tqdm_ray import tqdm

nbray.init(num_cpus=2)

@nbray.remote
def count(n, label):
    for _ in tqdm(range(n), desc=label, flush_interval_s=0.001):
        pass
    print("plain output of", label)
    return n

@nbray.remote
class Stepper:
    def run(self, steps):
        bar = tqdm(total=steps, desc="stepping", unit="step", flush_interval_s=3600)
        for _ in range(steps):
            bar.update(1)
        bar.set_description("stepped")
        bar.close()
        return steps

stepper = Stepper.remote()
results = nbray.get([count.remote(20, "first"), count.remote(30, "second"), stepper.run.remote(4)])
local = tqdm(total=3, desc="on the driver")
local.update(3)
local.close()
nbray.shutdown()
print("results", results)
"""


def _final_lines(text: str) -> dict[str, str]:
    """Last line shown for each bar description."""
    finals = {}
    for line in text.replace("\r", "\n").split("\n"):
        for desc in ("first", "second", "stepped", "on the driver"):
            if f"{desc}: 100%" in line:
                finals[desc] = line
    return finals


def _check_final_state(text: str) -> None:
    finals = _final_lines(text)
    assert set(finals) == {"first", "second", "stepped", "on the driver"}, text
    assert "20/20" in finals["first"] and "(count pid=" in finals["first"]
    assert "30/30" in finals["second"]
    assert "4/4" in finals["stepped"] and "step/s" in finals["stepped"] and "(Stepper.run pid=" in finals["stepped"]
    assert "3/3" in finals["on the driver"] and "pid=" not in finals["on the driver"]
    assert "plain output of first" in text and "plain output of second" in text
    assert "results [20, 30, 4]" in text
    assert RAY_TQDM_MAGIC not in text and "__magic_token__" not in text


def test_bars_of_tasks_and_actors_are_printed_by_the_driver(tmp_path: Path) -> None:
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    _check_final_state(result.stdout)
    assert RAY_TQDM_MAGIC not in result.stderr
    assert "\x1b[" not in result.stdout  # not a terminal: plain lines only


def test_on_a_terminal_the_bars_are_redrawn_in_place(tmp_path: Path) -> None:
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path), COLUMNS="120", TERM="xterm")
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=child, stdout=child, stderr=subprocess.PIPE,
                            env=env)
    os.close(child)
    try:
        output = _read_until_closed(main, deadline=time.monotonic() + 60)
        _, stderr = proc.communicate(timeout=30)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr.decode()
    _check_final_state(text)
    assert "\x1b[2K" in text and re.search(r"\x1b\[\d+A", text)  # lines cleared, the cursor moved up over the bars


def _read_until_closed(fd: int, deadline: float) -> bytes:
    chunks = []
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    else:
        raise AssertionError(f"the driver was still writing after the deadline: {b''.join(chunks)[-2000:]!r}")
    return b"".join(chunks)
