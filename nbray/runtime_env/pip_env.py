"""Virtual environments for runtime_env["pip"], one per distinct spec per node.

Runs in the raylet (in its setup thread). A venv is made with
``--system-site-packages`` and a ``.pth`` file naming the node's own
site-packages, so nbray and everything installed beside it are seen as
installed (never reinstalled) and the venv's own packages come first.
A venv is complete once its ``.ready`` file exists; a file lock keeps two
processes of one host from building the same venv at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from typing import Any

READY_FILE = ".ready"
BASE_PTH = "_nbray_base_env.pth"
PIP_OUTPUT_TAIL_CHARS = 3000


class SetupFailed(Exception):
    """A runtime environment could not be built; the message says why."""


def pip_hash(pip: dict[str, Any]) -> str:
    """A venv's name: the spec and this interpreter's version."""
    text = json.dumps({"pip": pip, "python": sys.version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pip_command(python: str, pip: dict[str, Any]) -> list[str]:
    """The pip invocation for a spec. When every requirement is a local
    file or directory and no options are given, pip is kept off the
    network (--no-index): the environment needs nothing from an index."""
    packages = list(pip["packages"])
    options = list(pip.get("pip_install_options") or [])
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if not options and packages and all(os.path.isabs(p) and os.path.exists(p) for p in packages):
        cmd.append("--no-index")
    return cmd + options + packages


def site_packages_of(venv: str) -> str:
    return os.path.join(venv, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}",
                        "site-packages")


def _run(cmd: list[str], deadline: float | None, what: str) -> None:
    timeout = None if deadline is None else max(0.1, deadline - time.monotonic())
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        raise SetupFailed(f"{what} did not finish within runtime_env config setup_timeout_seconds; raise it or "
                          f"check the requirements. Output so far:\n{out[-PIP_OUTPUT_TAIL_CHARS:]}") from None
    if proc.returncode != 0:
        raise SetupFailed(f"{what} failed with exit status {proc.returncode}:\n"
                          f"{proc.stdout[-PIP_OUTPUT_TAIL_CHARS:]}")


def ensure_venv(root: str, pip: dict[str, Any], deadline: float | None) -> str:
    """The path of a ready venv for `pip` under `root`, built if needed.
    Raises SetupFailed with the tail of pip's output."""
    os.makedirs(root, exist_ok=True)
    venv = os.path.join(root, pip_hash(pip))
    if os.path.exists(os.path.join(venv, READY_FILE)):
        return venv
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.path.exists(os.path.join(venv, READY_FILE)):
                return venv
            shutil.rmtree(venv, ignore_errors=True)  # a build cut short earlier
            try:
                _build(venv, pip, deadline)
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            with open(os.path.join(venv, READY_FILE), "w") as f:
                f.write(json.dumps(pip))
            return venv
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(venv: str, pip: dict[str, Any], deadline: float | None) -> None:
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], deadline,
         "creating the virtualenv")
    site_dir = site_packages_of(venv)
    os.makedirs(site_dir, exist_ok=True)
    with open(os.path.join(site_dir, BASE_PTH), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    python = os.path.join(venv, "bin", "python")
    _run(pip_command(python, pip), deadline, "pip install " + " ".join(pip["packages"]))
