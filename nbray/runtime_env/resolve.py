"""From a user's runtime environment to what travels in a TaskSpec.

Runs in drivers, clients and workers. Local paths are packed into packages
(see packaging.py) and replaced by their URIs; the result is "resolved".
A resolved environment travels in the spec's env_vars: its own env_vars
as they are, and everything else as canonical JSON under RUNTIME_ENV_VAR.
The raylet keys its workers by all env_vars, so each distinct environment
gets its own worker processes.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import threading
import types
from typing import Any

from nbray.runtime_env import package_refs, packaging
from nbray.runtime_env.spec import RUNTIME_ENV_VAR as RUNTIME_ENV_VAR  # re-exported
from nbray.runtime_env.spec import max_package_bytes, validate

# Set by the raylet for a worker it starts in an environment: where the
# environment was set up on the node (JSON, see worker_setup.py).
CONTEXT_VAR = "NBRAY_RUNTIME_ENV_CONTEXT"
_PACK_CACHE_ENTRIES = 16

_lock = threading.Lock()
_packed: collections.OrderedDict[tuple[Any, ...], tuple[str, bytes]] = collections.OrderedDict()


def _pack_cached(key: tuple[Any, ...], make: Any) -> tuple[str, bytes]:
    """Pack once per process for the same path and options."""
    with _lock:
        hit = _packed.get(key)
        if hit is not None:
            _packed.move_to_end(key)
            return hit
    data = make()
    entry = (packaging.uri_of(data), data)
    with _lock:
        _packed[key] = entry
        while len(_packed) > _PACK_CACHE_ENTRIES:
            _packed.popitem(last=False)
    return entry


def pack(env: dict[str, Any] | None, what: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check and pack `env`: (resolved environment, packages to upload by URI).
    Raises TypeError/ValueError/PackageError before anything is uploaded."""
    env = validate(env, what)
    resolved: dict[str, Any] = {}
    uploads: dict[str, bytes] = {}
    limit = max_package_bytes(env)
    excludes = tuple(env.get("excludes") or ())
    wd = env.get("working_dir")
    if wd is not None:
        if packaging.is_package_uri(wd):
            packaging.hash_of_uri(wd)
            resolved["working_dir"] = wd
        else:
            path = os.path.abspath(wd)
            uri, data = _pack_cached(("wd", path, excludes, limit),
                                     lambda: packaging.pack_working_dir(path, excludes, limit))
            uploads[uri] = data
            resolved["working_dir"] = uri
    if env.get("py_modules") is not None:
        uris = []
        for item in env["py_modules"]:
            if packaging.is_package_uri(item):
                packaging.hash_of_uri(item)
                uris.append(item)
                continue
            key_item = item.__name__ if isinstance(item, types.ModuleType) else os.path.abspath(item)
            uri, data = _pack_cached(("mod", key_item, excludes, limit),
                                     functools.partial(packaging.pack_py_module, item, excludes, limit))
            uploads[uri] = data
            uris.append(uri)
        resolved["py_modules"] = uris
    if "pip" in env:
        pip = dict(env["pip"])
        pip["packages"] = [_absolute_if_local(p) for p in pip["packages"]]
        resolved["pip"] = pip
    if "config" in env:
        resolved["config"] = env["config"]
    if "env_vars" in env:
        resolved["env_vars"] = env["env_vars"]
    return resolved, uploads


def _absolute_if_local(requirement: str) -> str:
    """Requirements naming local files (wheels, directories) become
    absolute, so a node's pip finds them whatever its cwd."""
    if requirement.startswith(("-", "git+", "http:", "https:")):
        return requirement
    if os.sep in requirement or requirement.endswith((".whl", ".tar.gz", ".zip")):
        if os.path.exists(requirement):
            return os.path.abspath(requirement)
    return requirement


def upload(gcs: Any, uploads: dict[str, bytes], chunk_bytes: int = packaging.DEFAULT_CHUNK_BYTES,
           also_held: list[str] | None = None) -> None:
    """Store the packages for the current job. The job's references are
    written first (package_refs.py), so a package found already stored
    cannot be collected while this job runs; `also_held` names packages
    the job uses without uploading them."""
    package_refs.hold(gcs, [*uploads, *(also_held or ())], _current_job_id())
    for uri, data in uploads.items():
        packaging.store_package(gcs, uri, data, chunk_bytes)


def _current_job_id() -> bytes:
    from nbray.worker import context

    ctx = context.current_or_none()
    return ctx.job_id if ctx is not None else b""


def prepare(env: dict[str, Any] | None, gcs: Any, what: str) -> dict[str, Any]:
    """Pack and upload: the resolved environment."""
    resolved, uploads = pack(env, what)
    upload(gcs, uploads, also_held=package_uris(resolved))
    return resolved


def needs_setup(env: dict[str, Any] | None) -> bool:
    """Whether an environment has more than env_vars (and config)."""
    return bool(env) and any(k not in ("env_vars", "config") for k in env)  # type: ignore[union-attr]


def job_env(resolved: dict[str, Any]) -> dict[str, Any]:
    """A job's environment as its driver's root context holds it: the
    resolved fields, and env_vars as tasks inherit them (encoded)."""
    out = {k: v for k, v in resolved.items() if k != "env_vars"}
    out["env_vars"] = encode(resolved)
    return out


def encode(resolved: dict[str, Any]) -> dict[str, str]:
    """The spec env_vars of a resolved environment."""
    out = dict(resolved.get("env_vars") or {})
    rest = {k: v for k, v in resolved.items() if k != "env_vars"}
    if needs_setup(rest):
        out[RUNTIME_ENV_VAR] = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return out


@functools.lru_cache(maxsize=256)
def merge_encoded(parent: str, child: str) -> str:
    """A child task's RUNTIME_ENV_VAR given its parent's: the child's
    fields win, field by field."""
    merged = {**json.loads(parent), **json.loads(child)}
    return json.dumps(merged, sort_keys=True, separators=(",", ":"))


def uris_in_env_vars(env_vars: Any) -> list[str]:
    """The package URIs a spec's env_vars name (its RUNTIME_ENV_VAR entry)."""
    raw = env_vars.get(RUNTIME_ENV_VAR) if env_vars else None
    if not raw:
        return []
    try:
        resolved = json.loads(raw)
    except ValueError:
        return []
    return package_uris(resolved) if isinstance(resolved, dict) else []


def package_uris(resolved: dict[str, Any]) -> list[str]:
    """The package URIs of a resolved environment (working_dir, py_modules)."""
    found = [resolved.get("working_dir"), *(resolved.get("py_modules") or ())]
    return [u for u in found if packaging.is_package_uri(u)]
