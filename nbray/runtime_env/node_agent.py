"""The node's runtime environments: set up before workers start, cached, collected.

Runs in the raylet. Before the worker pool starts a worker whose spec
carries a resolved environment (resolve.RUNTIME_ENV_VAR), the agent makes
sure its packages are unpacked and its pip venv built on this node, in a
background thread (the raylet's loop never blocks), then hands the pool
the context the worker applies at start (worker_setup.py). Each
environment is set up once per node; later workers reuse it.

Everything lives under ``<session_dir>/runtime_resources/<node>/``:
``pkgs/<hash>/`` (unpacked packages) and ``pip/<hash>/`` (venvs).
Packages are unpacked into a temporary directory that is then renamed, so
a reader never sees half a package. Environments no worker uses are
deleted, least recently used first, beyond ``runtime_env_max_unused``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from nbray.runtime_env.spec import setup_timeout_s

# The packaging, pip and file modules are imported where an environment is
# set up: every raylet builds this agent at start-up, few ever use it.

logger = logging.getLogger(__name__)

Done = Callable[[dict[str, str] | None, str], None]


def safe_extract(data: bytes, dest: str) -> None:
    """Unpack a zip into `dest`, refusing members with absolute paths or "..".
    Raises PackageError."""
    import zipfile

    from nbray.runtime_env import packaging

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
                raise packaging.PackageError(f"refusing runtime_env package member {name!r}: "
                                             "absolute paths and '..' are not allowed")
        for info in zf.infolist():
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(os.path.join(dest, info.filename), mode)


def single_top_dir(path: str) -> str:
    """A .zip working_dir holding one top-level folder is that folder."""
    entries = [e for e in os.listdir(path) if e != "__MACOSX"]
    if len(entries) == 1 and os.path.isdir(os.path.join(path, entries[0])):
        return os.path.join(path, entries[0])
    return path


def choose_evictions(last_used: dict[str, float], in_use: set[str], keep_unused: int) -> list[str]:
    """Which cached resources to delete: those not in use, beyond the
    `keep_unused` most recently used."""
    unused = sorted((p for p in last_used if p not in in_use), key=lambda p: -last_used[p])
    return unused[max(0, keep_unused):]


class RuntimeEnvAgent:
    def __init__(self, root: str, gcs: Callable[[], Any], post: Callable[..., None], keep_unused: int) -> None:
        self.root = root
        self._gcs = gcs
        self._post = post
        self.keep_unused = keep_unused
        self._lock = threading.Lock()
        self._ready: dict[str, dict[str, str]] = {}   # resolved JSON -> worker context env
        self._resources: dict[str, list[str]] = {}    # resolved JSON -> dirs it uses
        self._pending: dict[str, list[Done]] = {}
        self._last_used: dict[str, float] = {}        # dir -> monotonic time last needed

    # ---- setting up (loop thread) -----------------------------------------------------------

    def prepare(self, resolved_json: str, done: Done) -> None:
        """Call ``done(context_env, "")`` (or ``done(None, error)``) on the
        loop thread once the environment is ready on this node."""
        ready = self._ready.get(resolved_json)
        if ready is not None:
            now = time.monotonic()
            for d in self._resources.get(resolved_json, ()):
                self._last_used[d] = now
            done(ready, "")
            return
        waiting = self._pending.get(resolved_json)
        if waiting is not None:
            waiting.append(done)
            return
        self._pending[resolved_json] = [done]
        threading.Thread(target=self._setup_thread, args=(resolved_json,), daemon=True,
                         name="runtime-env-setup").start()

    def _setup_thread(self, resolved_json: str) -> None:
        from nbray.runtime_env import packaging, pip_env

        try:
            context, dirs = self.setup(json.loads(resolved_json))
            error = ""
        except (pip_env.SetupFailed, packaging.PackageError, OSError, ValueError) as exc:
            context, dirs, error = None, [], str(exc) or type(exc).__name__
        except Exception as exc:  # e.g. the GCS went away: still answer the waiting leases
            logger.exception("runtime_env setup failed")
            context, dirs, error = None, [], f"{type(exc).__name__}: {exc}"
        self._post(self._finish, resolved_json, context, dirs, error)

    def _finish(self, resolved_json: str, context: dict[str, str] | None, dirs: list[str], error: str) -> None:
        if context is not None:
            self._ready[resolved_json] = context
            self._resources[resolved_json] = dirs
            now = time.monotonic()
            for d in dirs:
                self._last_used[d] = now
        for done in self._pending.pop(resolved_json, []):
            done(context, error)

    # ---- setting up (setup thread) ----------------------------------------------------------

    def setup(self, resolved: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """Set up an environment; returns (worker context env, dirs used)."""
        from nbray.runtime_env import pip_env

        timeout = setup_timeout_s(resolved)
        deadline = None if timeout is None else time.monotonic() + timeout
        context: dict[str, Any] = {"cwd": "", "sys_path": [], "site_packages": [], "venv": ""}
        dirs: list[str] = []
        wd = resolved.get("working_dir")
        if wd:
            path = self.ensure_package(wd)
            dirs.append(path)
            context["cwd"] = single_top_dir(path)
            context["sys_path"].append(context["cwd"])
        for uri in resolved.get("py_modules") or ():
            path = self.ensure_package(uri)
            dirs.append(path)
            context["sys_path"].append(path)
        if deadline is not None and time.monotonic() > deadline:
            raise pip_env.SetupFailed(f"downloading the packages took more than setup_timeout_seconds={timeout}")
        pip = resolved.get("pip")
        if pip and pip.get("packages"):
            venv = pip_env.ensure_venv(os.path.join(self.root, "pip"), pip, deadline)
            dirs.append(venv)
            context["venv"] = venv
            context["site_packages"].append(pip_env.site_packages_of(venv))
        from nbray.runtime_env.resolve import CONTEXT_VAR

        return {CONTEXT_VAR: json.dumps(context)}, dirs

    def ensure_package(self, uri: str) -> str:
        """The directory a package is unpacked in on this node (fetched once)."""
        import shutil
        import tempfile

        from nbray.runtime_env import packaging

        h = packaging.hash_of_uri(uri)
        pkgs = os.path.join(self.root, "pkgs")
        final = os.path.join(pkgs, h)
        if os.path.isdir(final):
            return final
        data = packaging.fetch_package(self._gcs(), uri)
        os.makedirs(pkgs, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{h}-", dir=pkgs)
        try:
            safe_extract(data, tmp)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(final):  # not someone else's finished copy
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    # ---- collecting (loop thread) -----------------------------------------------------------

    def collect(self, in_use_envs: set[str]) -> list[str]:
        """Forget and delete environments no live worker uses, beyond the
        most recently used `keep_unused`; returns the deleted dirs."""
        in_use = {d for env in in_use_envs | set(self._pending) for d in self._resources.get(env, ())}
        doomed = choose_evictions(self._last_used, in_use, self.keep_unused)
        if not doomed:
            return []
        gone = set(doomed)
        for env, dirs in list(self._resources.items()):
            if gone.intersection(dirs):
                self._resources.pop(env, None)
                self._ready.pop(env, None)
        for d in doomed:
            self._last_used.pop(d, None)
        threading.Thread(target=_delete_all, args=(doomed,), daemon=True, name="runtime-env-gc").start()
        return doomed


def _delete_all(paths: list[str]) -> None:
    import shutil

    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
