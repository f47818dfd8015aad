"""The JupyterLab extension's TypeScript unit tests (jest), as part of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

LABEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "labextension")


@pytest.mark.frontend
@pytest.mark.timeout(600)
def test_graph_model_layout_and_event_stream_units() -> None:
    if not os.path.isdir(os.path.join(LABEXT, "node_modules")):
        pytest.skip("labextension/node_modules missing: run scripts/install.sh")
    jlpm = shutil.which("jlpm", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert jlpm is not None, "jlpm (from jupyterlab) not found"
    result = subprocess.run([jlpm, "test", "--ci"], cwd=LABEXT, capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "failed" not in result.stderr.split("Tests:")[-1].split("\n")[0]
