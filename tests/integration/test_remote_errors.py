"""Errors raised by tasks, read by real drivers against a real cluster.

The traceback names the user's file, line and source line: for a function
of a script (pickled by value), of a module (pickled by reference), of a
notebook cell (``Cell In[N], line L``, filled in from the kernel's own
line cache), and with an older cloudpickle in the driver. Exceptions of any
shape come back as instances of both the user's class and RayTaskError.
And task listings keep the function's name when ``.options(name=)`` renames
the task.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbray
from nbray.exceptions import RayTaskError, UnserializableException
from nbray.testing import Cluster, wait_for_condition
from nbray.util import state

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = str(Path(__file__).resolve().parents[2])
DRIVER_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def head() -> Iterator[Cluster]:
    """One node; this process is a driver of it, and so are the scripts and kernels the tests start."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "ray_client_server_port": 0})
    try:
        cluster.connect()
        yield cluster
    finally:
        cluster.shutdown()


def _run_driver(script: Path, address: str, extra_path: str = "") -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (extra_path, REPO_ROOT) if p))
    done = subprocess.run([sys.executable, str(script), address], capture_output=True, text=True,
                          env=env, timeout=DRIVER_TIMEOUT_S, cwd=script.parent)
    assert done.returncode == 0, f"driver failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


DRIVER_SCRIPT = '''\
import sys
import cloudpickle
import nbray

@nbray.remote
def work(x):
    y = x * 2
    raise ValueError(f"bad value {y}")

nbray.init(address=sys.argv[1])
print("cloudpickle", cloudpickle.__version__)
try:
    nbray.get(work.remote(4))
except ValueError as exc:
    print("caught", type(exc).__name__, "RayTaskError" in [c.__name__ for c in type(exc).__mro__])
    print(exc)
nbray.shutdown()
'''


def _assert_names_the_script(out: str, script: Path) -> None:
    assert "caught RayTaskError(ValueError) True" in out, out
    assert f'File "{script}", line 8, in work\n    raise ValueError(f"bad value {{y}}")\n' in out, out
    assert "ValueError: bad value 8" in out


def test_script_function_traceback_names_file_line_and_source(head: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "analysis.py"
    script.write_text(DRIVER_SCRIPT)
    out = _run_driver(script, head.address)
    _assert_names_the_script(out, script)
    assert "<dynamic-code>" not in out


@pytest.fixture(scope="module")
def cloudpickle_3_0(tmp_path_factory: pytest.TempPathFactory) -> str:
    target = tmp_path_factory.mktemp("cloudpickle-3.0.0")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           "cloudpickle==3.0.0"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"cannot install cloudpickle 3.0.0: {done.stderr[-500:]}")
    return str(target)


def test_driver_with_older_cloudpickle_still_names_file_and_line(head: Cluster, tmp_path: Path,
                                                                  cloudpickle_3_0: str) -> None:
    script = tmp_path / "older_cloudpickle.py"
    script.write_text(DRIVER_SCRIPT)
    out = _run_driver(script, head.address, extra_path=cloudpickle_3_0)
    assert "cloudpickle 3.0.0" in out  # the driver really ran the older version (workers run the newer)
    _assert_names_the_script(out, script)


def _fails_in_a_module(x: int) -> None:
    total = x + 1
    raise KeyError(f"missing {total}")


def test_module_function_traceback_names_file_line_and_source(head: Cluster) -> None:
    with pytest.raises(KeyError) as info:
        nbray.get(nbray.remote(_fails_in_a_module).remote(1))
    text = str(info.value)
    line = _fails_in_a_module.__code__.co_firstlineno + 2
    assert f'File "{__file__}", line {line}, in _fails_in_a_module\n' in text
    assert '    raise KeyError(f"missing {total}")\n' in text
    assert "nbray/worker" not in text  # nbray's own frames are left out


NOTEBOOK_CELLS = [
    ("connect", "import nbray\nnbray.init(address={address!r})"),
    ("define", "@nbray.remote\ndef work(x):\n    y = x * 2\n    raise ValueError(f'bad value {{y}}')"),
    ("call", "nbray.get(work.remote(3))"),
    ("done", "nbray.shutdown()"),
]


def test_notebook_cell_traceback_names_the_cell(head: Cluster) -> None:
    from tests.notebook.kernels import ExecutedNotebook, NamedCell, build_notebook, execute

    cells = [NamedCell(name, source.format(address=head.address), raises=name == "call")
             for name, source in NOTEBOOK_CELLS]
    notebook = ExecutedNotebook(execute(build_notebook(cells), timeout_s=DRIVER_TIMEOUT_S, cwd=REPO_ROOT))
    error = notebook.error("call")
    assert error.ename == "RayTaskError(ValueError)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))  # IPython colours tracebacks
    cell = notebook.cells["define"].execution_count
    assert f"Cell In[{cell}], line 4, in work\n    raise ValueError(f'bad value {{y}}')\n" in text, text
    assert "ValueError: bad value 6" in text


# ---- exceptions of any shape --------------------------------------------------------------------------


class TwoArgs(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class NoArgs(Exception):
    def __init__(self) -> None:
        super().__init__("always the same")
        self.code = "fixed"


class KeywordOnly(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


class HoldsALock(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def _refuse_to_load() -> None:
    raise RuntimeError("refuses to load")


class FailsToLoad(Exception):
    def __reduce__(self) -> Any:
        return _refuse_to_load, ()


@nbray.remote(max_retries=0)
def _raise(make: Any) -> None:
    raise make()


@pytest.mark.parametrize(("make", "code"), [(lambda: TwoArgs(7, "bad"), 7), (NoArgs, "fixed"),
                                            (lambda: KeywordOnly(code=3), 3)],
                         ids=["two-args", "no-args", "keyword-only"])
def test_odd_constructors_come_back_as_both_classes(head: Cluster, make: Any, code: Any) -> None:
    expected = make()
    with pytest.raises(type(expected)) as info:
        nbray.get(_raise.remote(make))
    err = info.value
    assert isinstance(err, RayTaskError)
    assert type(err.cause) is type(expected)
    assert err.code == code and err.cause.code == code
    assert err.args == expected.args
    assert f"{type(expected).__name__}: task _raise() failed" in str(err)
    assert "    raise make()\n" in str(err)
    if isinstance(expected, TwoArgs):
        assert err.detail == "bad"


@pytest.mark.parametrize(("make", "reason"), [(HoldsALock, "HoldsALock could not be pickled"),
                                              (lambda: FailsToLoad("x"), "could not be unpickled here")],
                         ids=["cannot-pickle", "cannot-unpickle"])
def test_unserializable_exceptions_keep_the_traceback(head: Cluster, make: Any, reason: str) -> None:
    with pytest.raises(UnserializableException) as info:
        nbray.get(_raise.remote(make))
    err = info.value
    assert isinstance(err, RayTaskError) and isinstance(err.cause, UnserializableException)
    assert reason in err.cause.reason and reason in str(err)
    assert "    raise make()\n" in err.cause.original_stack_trace
    assert f"{__name__}.{type(make()).__name__}" in err.cause.original_stack_trace


CLIENT_SCRIPT = '''\
import sys
import nbray
from nbray.exceptions import RayTaskError

class Coded(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

@nbray.remote
def work():
    raise Coded(404, "not here")

nbray.init(address=sys.argv[1])
try:
    nbray.get(work.remote())
except Coded as exc:
    print("caught", isinstance(exc, RayTaskError), exc.code, exc.detail, type(exc.cause).__name__)
    print(exc)
nbray.shutdown()
'''


def test_odd_constructors_in_client_mode(head: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "client_driver.py"
    script.write_text(CLIENT_SCRIPT)
    out = _run_driver(script, head.client_address)
    assert "caught True 404 not here Coded" in out, out
    assert f'File "{script}", line 13, in work\n    raise Coded(404, "not here")\n' in out, out


def _fail_twice_with_odd_exception(counter: str) -> str:
    with open(counter, "a") as f:
        f.write("x")
    attempts = len(Path(counter).read_text())
    if attempts < 3:
        raise TwoArgs(attempts, "try again")
    return f"done after {attempts} attempts"


def test_retry_exceptions_matches_odd_constructors(head: Cluster, tmp_path: Path) -> None:
    task = nbray.remote(max_retries=3, retry_exceptions=[TwoArgs])(_fail_twice_with_odd_exception)
    assert nbray.get(task.remote(str(tmp_path / "attempts"))) == "done after 3 attempts"


# ---- task listings --------------------------------------------------------------------------------------


def _renamed() -> int:
    return 1


class Counter:
    def bump(self) -> int:
        return 1


def _rows(name: str) -> list[dict[str, Any]]:
    return state.list_tasks(filters=[("name", "=", name)], detail=True)


def test_list_tasks_keeps_the_function_name_when_the_task_is_renamed(head: Cluster) -> None:
    task = nbray.remote(_renamed)
    assert nbray.get(task.options(name="nightly-load").remote()) == 1
    wait_for_condition(lambda: _rows("nightly-load"), timeout=30)
    (row,) = _rows("nightly-load")
    assert row["name"] == "nightly-load"
    assert row["func_or_class_name"] == f"{__name__}._renamed"

    actor = nbray.remote(Counter).remote()
    assert nbray.get(actor.bump.remote()) == 1
    wait_for_condition(lambda: _rows("Counter.bump"), timeout=30)
    assert [r["func_or_class_name"] for r in _rows("Counter.bump")] == ["Counter.bump"]
    nbray.kill(actor)

