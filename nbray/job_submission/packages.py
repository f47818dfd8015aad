"""A job's local code, packed and sent through the dashboard (the submitting process).

A submitter may reach only the dashboard, not the GCS. So the local
``working_dir`` and ``py_modules`` entries of a job's runtime_env are
packed here into the same content-addressed zips a driver makes
(``nbray.runtime_env.packaging``), uploaded with
``PUT /api/packages/gcs/_nbray_pkg_<hash>.zip`` (the dashboard stores
them where drivers store theirs), and replaced by their URIs in the
runtime_env sent with the job. Everything is checked and packed before
the first byte is sent, so a missing directory or one over the size
limit fails without uploading anything.

Unlike a driver's ``init``, nothing is cached between submissions: a
notebook that edits its files and submits again ships the new files.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

from nbray.job_submission.common import MAX_PACKAGE_BYTES


def pack_runtime_env(runtime_env: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the runtime_env with packages named by URI, the packages' bytes by URI).

    Raises TypeError/ValueError for a malformed runtime_env and
    ``packaging.PackageError`` (a ValueError) for a path that does not
    exist, is not packable, or is over the size limit.
    """
    from nbray.runtime_env import packaging, resolve
    from nbray.runtime_env.spec import max_package_bytes, validate

    env = validate(runtime_env, "submit_job()")
    limit = max_package_bytes(env)
    # The dashboard takes no upload bigger than this, whatever the runtime_env's own limit.
    limit = MAX_PACKAGE_BYTES if limit is None else min(limit, MAX_PACKAGE_BYTES)
    excludes = tuple(env.get("excludes") or ())
    uploads: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        if len(data) > MAX_PACKAGE_BYTES:  # a .zip taken as it is, compressed past the limit check
            raise packaging.PackageError(f"a runtime_env package of {len(data)} bytes is over the dashboard's "
                                         f"upload limit of {MAX_PACKAGE_BYTES} bytes")
        uri = packaging.uri_of(data)
        uploads[uri] = data
        return uri

    wd = env.get("working_dir")
    if wd is not None and not packaging.is_package_uri(wd):
        env["working_dir"] = add(packaging.pack_working_dir(os.path.abspath(wd), excludes, limit))
    if env.get("py_modules") is not None:
        env["py_modules"] = [
            item if isinstance(item, str) and packaging.is_package_uri(item)
            else add(packaging.pack_py_module(item if isinstance(item, types.ModuleType) else os.path.abspath(item),
                                              excludes, limit))
            for item in env["py_modules"]]
    # What is left (URIs checked, pip paths made absolute) as a driver would send it.
    resolved, more = resolve.pack(env, "submit_job()")
    assert not more, "every local path was packed above"
    return resolved, uploads


def upload_packages(uploads: dict[str, bytes], exists: Callable[[str, str], bool],
                    put: Callable[[str, str, bytes], None]) -> int:
    """Send the packages the cluster lacks; returns how many were sent."""
    sent = 0
    for uri, data in uploads.items():
        protocol, name = uri.split("://", 1)
        if not exists(protocol, name):
            put(protocol, name, data)
            sent += 1
    return sent
