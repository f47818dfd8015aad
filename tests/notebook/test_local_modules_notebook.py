"""A notebook imports a module from its own directory and uses it in a task,
an actor and a %%remote cell, with no working_dir: the cluster's workers
run in another directory and cannot import it, so it travels by value; an
edited and reloaded module travels again. Runs as a driver and in client
mode (``nbray://``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebook.kernels import ExecutedNotebook, NamedCell, build_notebook, execute

pytestmark = pytest.mark.timeout(180)

HELPER = '''
import os
import sys


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm1(self):
        return abs(self.x) + abs(self.y)


class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value


def compute(x):
    return x * 10 + 1


def where():
    return os.getcwd(), "nb_helper" in sys.modules
'''


def test_a_local_module_in_tasks_actors_and_remote_cells(address: str, tmp_path: Path) -> None:
    (tmp_path / "nb_helper.py").write_text(HELPER)
    cells = [
        NamedCell("setup", f"%load_ext nbray\n%nbray init {address}\nimport os, nbray\nimport nb_helper"),
        NamedCell("where", "cwd, imported = nbray.get(nbray.remote(nb_helper.where).remote())\n"
                           "print(os.path.realpath(cwd) != os.path.realpath(os.getcwd()), imported)"),
        NamedCell("task", "print(nbray.get(nbray.remote(nb_helper.compute).remote(2)))"),
        NamedCell("actor", "counter = nbray.remote(nb_helper.Counter).remote(5)\n"
                           "print(nbray.get(counter.add.remote(2)), nbray.get(counter.add.remote(3)))"),
        NamedCell("remote", "%%remote\nvalue = nb_helper.compute(4)\np = nb_helper.Point(value, -1)\nvalue"),
        NamedCell("check", "print(value, type(p) is nb_helper.Point, p.norm1())"),
        # Editing the module and reloading it ships the new version.
        NamedCell("edit", "import importlib, pathlib\n"
                          "src = pathlib.Path('nb_helper.py')\n"
                          "src.write_text(src.read_text().replace('x * 10 + 1', 'x * 100 + 7'))\n"
                          "importlib.reload(nb_helper)\n"
                          "print(nbray.get(nbray.remote(nb_helper.compute).remote(2)))"),
        NamedCell("close", "%nbray shutdown"),
    ]
    nb = ExecutedNotebook(execute(build_notebook(cells), timeout_s=60, cwd=str(tmp_path), address=address))
    errors = [o for c in nb.nb.cells for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert nb.stream("where") == "True False\n"
    assert nb.stream("task") == "21\n"
    assert nb.stream("actor") == "7 10\n"
    assert nb.result("remote")["text/plain"] == "41"
    assert nb.stream("check") == "41 True 42\n"
    assert nb.stream("edit") == "207\n"
