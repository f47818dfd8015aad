"""Entering a runtime environment at worker start.

Runs in a worker process, before it connects to its raylet. The raylet
set up the environment on the node and passed where it lives
(resolve.CONTEXT_VAR, JSON): the working directory becomes the current
directory and the first sys.path entry, py_modules follow it, and a pip
venv's site-packages come before the node's own packages.
"""

from __future__ import annotations

import json
import os
import site
import sys


def enter(context_json: str | None) -> None:
    if not context_json:
        return
    context = json.loads(context_json)
    front: list[str] = list(context.get("sys_path") or [])
    for site_dir in context.get("site_packages") or ():
        before = list(sys.path)
        site.addsitedir(site_dir)  # runs its .pth files
        front.extend(p for p in sys.path if p not in before)
    venv = context.get("venv")
    if venv:
        os.environ["VIRTUAL_ENV"] = venv
        os.environ["PATH"] = os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", "")
    sys.path[:] = front + [p for p in sys.path if p not in front]
    cwd = context.get("cwd")
    if cwd:
        os.chdir(cwd)
    if front:
        import importlib

        importlib.invalidate_caches()
