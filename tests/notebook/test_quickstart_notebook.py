"""The demo notebooks execute top to bottom against a real cluster (as in CI and on Binder)."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest

from tests.notebook.kernels import execute

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = pytest.mark.timeout(240)


def _outputs(nb: nbformat.NotebookNode, startswith: str) -> list[nbformat.NotebookNode]:
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(cells) == 1, f"expected one cell starting with {startswith!r}"
    return list(cells[0].outputs)


def test_quickstart_runs_and_shows_its_outputs(single_node_address: str) -> None:
    path = NOTEBOOKS / "01-quickstart.ipynb"
    nb = execute(nbformat.read(path, as_version=4), env={"NBRAY_ADDRESS": single_node_address}, timeout_s=180,
                 cwd=str(NOTEBOOKS))
    errors = [(c.source.splitlines()[0], o.ename) for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert errors == [("%%remote", "ZeroDivisionError")]  # only the cell that demonstrates an error
    tasks = _outputs(nb, "@ray.remote\ndef square")
    assert "squaring 3" in "".join(o.get("text", "") for o in tasks if o.output_type == "stream")
    remote = _outputs(nb, "%%remote --num-cpus 1")
    assert any(o.output_type == "stream" and "computed 10 roots" in o.text for o in remote)
    plot = _outputs(nb, "%%remote\nimport matplotlib")
    pngs = [o.data["image/png"] for o in plot if o.output_type == "display_data" and "image/png" in o.data]
    assert pngs and base64.b64decode(pngs[0]).startswith(b"\x89PNG")
    assert _outputs(nb, "ray.get(background)")[0].data["text/plain"] == "'done in the background'"
    widgets = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    names = {m["model_name"] for m in widgets.values()}
    assert {"IntProgressModel", "FloatProgressModel", "AnyModel"} <= names
