"""A driver's own modules (not installed on the cluster) travel with its
work: a client process started in a directory holding ``helper.py`` (which
imports ``helper_inner.py``) uses them in tasks, actors, arguments, results
and exceptions, against a cluster whose workers run in another directory
and cannot import them; an edited and reloaded module ships its new code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbray.testing import Cluster

pytestmark = pytest.mark.timeout(150)

HELPER = '''
import os
import sys

import helper_inner
import nbray


class HelperError(Exception):
    def __init__(self, what, code):
        super().__init__(f"{what} failed")
        self.code = code


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm1(self):
        return abs(self.x) + abs(self.y)


class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value = helper_inner.plus(self.value, n)
        return self.value

    def point(self):
        return Point(self.value, -self.value)


def compute(x):
    return helper_inner.plus(x, 1) * 10


def move(point, dx):
    return Point(point.x + dx, point.y)


def fail(what):
    raise HelperError(what, 7)


def where():
    return os.getcwd(), "helper" in sys.modules


@nbray.remote
def square(x):
    return x * x
'''

INNER = '''
def plus(a, b):
    return a + b
'''

DRIVER = '''
import importlib, json, os, sys
import nbray
import helper

nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
out = {}
out["where"] = nbray.get(nbray.remote(helper.where).remote())
out["task"] = nbray.get(nbray.remote(helper.compute).remote(2))
out["decorated"] = nbray.get(helper.square.remote(4))
counter = nbray.remote(helper.Counter).remote(5)
out["actor"] = [nbray.get(counter.add.remote(2)), nbray.get(counter.add.remote(3))]
p = nbray.get(counter.point.remote())
out["actor_returns"] = [type(p) is helper.Point, p.norm1()]
moved = nbray.get(nbray.remote(helper.move).remote(helper.Point(1, 2), 3))
out["instance"] = [type(moved) is helper.Point, moved.x, moved.y]
try:
    nbray.get(nbray.remote(helper.fail).remote("boom"))
except helper.HelperError as exc:
    out["error"] = [str(exc).splitlines()[-1], exc.code]

@nbray.remote
def use(x):
    return helper.compute(x)

out["before"] = nbray.get(use.remote(2))
with open("helper.py") as f:
    source = f.read()
with open("helper.py", "w") as f:
    f.write(source.replace("* 10\\n", "* 1000 + 1\\n"))
importlib.reload(helper)
out["after"] = nbray.get(use.remote(2))
out["after_direct"] = nbray.get(nbray.remote(helper.compute).remote(2))
out["after_actor"] = nbray.get(nbray.remote(helper.Counter).remote(1).add.remote(1))
print("RESULT " + json.dumps(out))
nbray.shutdown()
'''


@pytest.fixture(scope="module")
def head() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "ray_client_server_port": 0})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def run_driver(cluster: Cluster, directory: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    (directory / "helper.py").write_text(HELPER)
    (directory / "helper_inner.py").write_text(INNER)
    (directory / "main.py").write_text(textwrap.dedent(DRIVER))
    full_env = dict(os.environ, NBRAY_CLIENT_ADDRESS=cluster.client_address, PYTHONDONTWRITEBYTECODE="1",
                    **(env or {}))
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "main.py"], cwd=directory, capture_output=True, text=True,
                            env=full_env, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return out


def test_local_modules_travel_with_the_work(head: Cluster, tmp_path: Path) -> None:
    out = run_driver(head, tmp_path)
    worker_cwd, worker_has_module = out["where"]
    assert os.path.realpath(worker_cwd) != os.path.realpath(tmp_path)
    assert worker_has_module is False  # it never imported helper: the code came by value
    assert out["task"] == 30
    assert out["decorated"] == 16
    assert out["actor"] == [7, 10]
    assert out["actor_returns"] == [True, 20]
    assert out["instance"] == [True, 4, 2]
    assert out["error"] == ["helper.HelperError: boom failed", 7]
    assert out["before"] == 30
    assert out["after"] == 3001
    assert out["after_direct"] == 3001
    assert out["after_actor"] == 2


def test_never_mode_leaves_them_to_the_cluster(head: Cluster, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text(HELPER)
    (tmp_path / "helper_inner.py").write_text(INNER)
    code = """
        import os, nbray, helper
        nbray.init(os.environ["NBRAY_CLIENT_ADDRESS"])
        try:
            nbray.get(nbray.remote(helper.compute).remote(2))
        except Exception as exc:
            print("FAILED", type(exc).__name__, "No module named 'helper'" in str(exc))
        nbray.shutdown()
    """
    env = dict(os.environ, NBRAY_CLIENT_ADDRESS=head.client_address, NBRAY_SHIP_LOCAL_MODULES="never")
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "FAILED" in result.stdout and "True" in result.stdout, result.stdout
