"""How the extensions are found: the hooks, the config file, the wheel's shared data."""

from __future__ import annotations

import json
import os
import sys

import pytest

import nbray
from nbray.jupyter import server_extension

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE_DIR = os.path.dirname(os.path.abspath(nbray.__file__))


def test_server_extension_hooks() -> None:
    assert server_extension._jupyter_server_extension_points() == [{"module": "nbray.jupyter.server_extension"}]
    assert callable(server_extension._load_jupyter_server_extension)


def test_install_enables_the_server_extension() -> None:
    with open(os.path.join(REPO, "jupyter-config", "server-config", "nbray.json")) as f:
        config = json.load(f)
    assert config == {"ServerApp": {"jpserver_extensions": {"nbray.jupyter.server_extension": True}}}


def test_labextension_paths_match_the_build_and_the_wheel() -> None:
    (entry,) = server_extension._jupyter_labextension_paths()
    with open(os.path.join(REPO, "labextension", "package.json")) as f:
        package = json.load(f)
    assert entry["dest"] == package["name"] == server_extension.LABEXTENSION_NAME
    # `src` is relative to the nbray package, where the build writes the prebuilt extension.
    assert os.path.normpath(os.path.join(REPO, "labextension", package["jupyterlab"]["outputDir"])) == \
        os.path.join(PACKAGE_DIR, entry["src"])
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        hatch = tomllib.load(f)["tool"]["hatch"]["build"]
    shared = hatch["targets"]["wheel"]["shared-data"]
    assert shared[f"nbray/{entry['src']}"] == f"share/jupyter/labextensions/{entry['dest']}"
    assert shared["jupyter-config/server-config"] == "etc/jupyter/jupyter_server_config.d"
    assert shared["install.json"] == f"share/jupyter/labextensions/{entry['dest']}/install.json"
    builder = hatch["hooks"]["jupyter-builder"]
    assert builder["build-kwargs"]["build_dir"] == f"nbray/{entry['src']}"
    assert "nbray/labextension/package.json" in builder["ensured-targets"]


def test_importing_the_hooks_does_not_load_jupyter_server() -> None:
    import subprocess

    code = ("import sys, nbray.jupyter.server_extension as m; m._jupyter_labextension_paths(); "
            "print('jupyter_server' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
