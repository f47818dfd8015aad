"""The examples in %%remote's help text run as written (a doctest for magics)."""

from __future__ import annotations

import base64
import re

import pytest

from nbray.jupyter.magics import REMOTE_EXAMPLES
from tests.notebook.kernels import ExecutedNotebook, NamedCell, build_notebook, execute

pytestmark = pytest.mark.timeout(180)


def example_cells(text: str) -> list[str]:
    """Cells of the ``::`` blocks (indented by 4), split at blank lines."""
    cells = []
    for block in re.findall(r"::\n\n((?:    .*\n|\n)+)", text):
        lines = [line[4:] for line in block.rstrip("\n").split("\n")]
        cells += [cell.strip("\n") for cell in "\n".join(lines).split("\n\n") if cell.strip()]
    return cells


def test_examples_are_found() -> None:
    cells = example_cells(REMOTE_EXAMPLES)
    assert len(cells) == 8
    assert all(c.startswith(("%%remote", "%remote")) for c in cells)


def test_remote_help_examples_run(address: str) -> None:
    examples = example_cells(REMOTE_EXAMPLES)
    cells = [NamedCell("setup", f"%load_ext nbray\n%nbray init {address}\nn = 1000")]
    cells += [NamedCell(f"example{i}", source) for i, source in enumerate(examples)]
    cells += [NamedCell("check", "%nbray wait job\nprint(total > 0, gpus, answer, 'scratch' in globals())"),
              NamedCell("close", "%nbray close gpu")]
    nb = ExecutedNotebook(execute(build_notebook(cells), timeout_s=60, address=address))
    errors = [o for c in nb.nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert nb.stream("check") == "True [0] 42 False\n"
    assert any(base64.b64decode(d["image/png"]).startswith(b"\x89PNG") for d in nb.displays("example2")
               if "image/png" in d)
    assert len(nb.stream("example4").splitlines()) == 2  # one line per node
    assert nb.result("example6")["text/plain"] == "1"
    assert nb.result("example7")["text/plain"] == "45"
