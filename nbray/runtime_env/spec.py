"""Runtime environments as users write them: the fields, checking, merging.

Pure logic, used in drivers, workers and clients. A runtime environment is
a dict with Ray's field names (``working_dir``, ``py_modules``, ``pip``,
``env_vars``, ``excludes``, ``config``). A job-level environment (from
``init``) is the default of every task and actor; a task's or actor's own
environment overrides it field by field, except ``env_vars`` which merge
key by key (the task's value wins).
"""

from __future__ import annotations

import json
import os
import types
from typing import Any

KNOWN_FIELDS = ("working_dir", "py_modules", "pip", "env_vars", "excludes", "config")
CONFIG_FIELDS = ("setup_timeout_seconds", "eager_install", "max_package_bytes")
DEFAULT_SETUP_TIMEOUT_S = 600
DEFAULT_MAX_PACKAGE_BYTES = 100 * 1024 * 1024
PIP_FIELDS = ("packages", "pip_install_options", "pip_check", "pip_version")
# Spec env var holding the resolved environment (minus env_vars) as JSON
# (defined here, with no packaging code around it, for the raylet's worker pool).
RUNTIME_ENV_VAR = "NBRAY_RUNTIME_ENV"


class RuntimeEnv(dict):  # type: ignore[type-arg]
    """A runtime environment for a job, task or actor (a checked dict).

    ``RuntimeEnv(working_dir="./src", pip=["pkg.whl"], env_vars={"A": "1"})``
    is the same as passing that dict; unknown fields raise ValueError.
    """

    def __init__(self, *, working_dir: str | None = None, py_modules: list[Any] | None = None,
                 pip: list[str] | str | dict[str, Any] | None = None, env_vars: dict[str, str] | None = None,
                 excludes: list[str] | None = None, config: dict[str, Any] | None = None,
                 **unknown: Any) -> None:
        given = {"working_dir": working_dir, "py_modules": py_modules, "pip": pip, "env_vars": env_vars,
                 "excludes": excludes, "config": config, **unknown}
        super().__init__(validate({k: v for k, v in given.items() if v is not None}, "RuntimeEnv"))

    def working_dir(self) -> str | None:
        return self.get("working_dir")

    def py_modules(self) -> list[Any]:
        return list(self.get("py_modules") or [])

    def env_vars(self) -> dict[str, str]:
        return dict(self.get("env_vars") or {})

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def deserialize(cls, text: str) -> RuntimeEnv:
        return cls(**json.loads(text))


def validate(env: Any, what: str) -> dict[str, Any]:
    """Check a runtime environment; returns it as a plain dict (pip in its
    dict form). Raises TypeError/ValueError naming the field and what to do."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env of {what} must be a dict or nbray.runtime_env.RuntimeEnv, "
                        f"got {type(env).__name__}")
    unknown = sorted(set(env) - set(KNOWN_FIELDS))
    if unknown:
        raise ValueError(f"runtime_env of {what} has unknown field(s) {unknown}; the valid fields are "
                         f"{', '.join(KNOWN_FIELDS)}")
    out: dict[str, Any] = {}
    for key, value in env.items():
        if value is None:
            continue
        if key == "env_vars":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise TypeError(f"runtime_env['env_vars'] of {what} must map strings to strings, got {value!r}")
            out[key] = dict(value)
        elif key == "working_dir":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"runtime_env['working_dir'] of {what} must be a path to a directory or "
                                f"a .zip file, got {type(value).__name__}")
            out[key] = os.fspath(value)
        elif key == "py_modules":
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"runtime_env['py_modules'] of {what} must be a list of package "
                                f"directories, .zip/.whl files or modules, got {type(value).__name__}")
            for item in value:
                if not isinstance(item, (str, os.PathLike, types.ModuleType)):
                    raise TypeError(f"runtime_env['py_modules'] of {what}: {item!r} is not a path or a module")
            out[key] = [item if isinstance(item, types.ModuleType) else os.fspath(item) for item in value]
        elif key == "excludes":
            if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
                raise TypeError(f"runtime_env['excludes'] of {what} must be a list of patterns (str)")
            out[key] = list(value)
        elif key == "pip":
            out[key] = normalize_pip(value, what)
        elif key == "config":
            out[key] = _validate_config(value, what)
    return out


def normalize_pip(value: Any, what: str) -> dict[str, Any]:
    """The dict form of a pip field: {"packages": [...], "pip_install_options": [...]}.
    A str is a requirements file, read now."""
    if isinstance(value, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(value))
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise ValueError(f"runtime_env['pip'] of {what}: cannot read the requirements file {path}: "
                             f"{exc.strerror}") from None
        reqs = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        return {"packages": reqs, "pip_install_options": []}
    if isinstance(value, (list, tuple)):
        value = {"packages": list(value)}
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env['pip'] of {what} must be a list of requirements, a requirements "
                        f"file path or a dict with 'packages', got {type(value).__name__}")
    unknown = sorted(set(value) - set(PIP_FIELDS))
    if unknown:
        raise ValueError(f"runtime_env['pip'] of {what} has unknown field(s) {unknown}; valid: "
                         f"{', '.join(PIP_FIELDS)}")
    packages: Any = value.get("packages")
    if packages is None or isinstance(packages, str) or not all(isinstance(p, str) for p in packages):
        raise TypeError(f"runtime_env['pip']['packages'] of {what} must be a list of requirement strings")
    options = value.get("pip_install_options") or []
    if isinstance(options, str) or not all(isinstance(o, str) for o in options):
        raise TypeError(f"runtime_env['pip']['pip_install_options'] of {what} must be a list of str")
    return {"packages": list(packages), "pip_install_options": list(options)}


def _validate_config(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env['config'] of {what} must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"runtime_env['config'] of {what} has unknown field(s) {unknown}; valid: "
                         f"{', '.join(CONFIG_FIELDS)}")
    for name in ("setup_timeout_seconds", "max_package_bytes"):
        v = value.get(name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or (v <= 0 and v != -1)):
            raise ValueError(f"runtime_env['config']['{name}'] of {what} must be a positive number "
                             f"(or -1 for no limit), got {v!r}")
    return dict(value)


def merge(parent: dict[str, Any] | None, child: dict[str, Any] | None) -> dict[str, Any]:
    """The environment of a task or actor given its job's (or parent's):
    fields of `child` replace those of `parent`; env_vars merge key by key."""
    out = dict(parent or {})
    for key, value in (child or {}).items():
        if key == "env_vars":
            out[key] = {**(out.get("env_vars") or {}), **value}
        elif key == "config":
            out[key] = {**(out.get("config") or {}), **value}
        else:
            out[key] = value
    return out


def setup_timeout_s(env: dict[str, Any]) -> float | None:
    """The setup deadline of an environment (None: no limit)."""
    value = (env.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    return None if value == -1 else float(value)


def max_package_bytes(env: dict[str, Any]) -> int | None:
    value = (env.get("config") or {}).get("max_package_bytes", DEFAULT_MAX_PACKAGE_BYTES)
    return None if value == -1 else int(value)
