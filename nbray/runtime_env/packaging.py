"""Packages of code for runtime environments: packing, naming, uploading.

Runs in drivers and notebook clients (packing, uploading) and in raylets
(downloading). A directory is packed into a deterministic zip (sorted
entries, fixed timestamps and modes), so the same files always give the
same bytes; the package is named by the sha256 of those bytes
(``gcs://_nbray_pkg_<hash>.zip``) and stored in the GCS internal KV in
chunks, so nodes need no shared filesystem. A package already stored is
not sent again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import threading
import types
import weakref
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from nbray.protocol import gcs_pb2

KV_NAMESPACE = "runtime_env"
URI_PREFIX = "gcs://_nbray_pkg_"
_URI_RE = re.compile(r"^gcs://_nbray_pkg_([0-9a-f]{32})\.zip$")
_HASH_HEX_CHARS = 32
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_LEVEL = 6
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
# Files whose first _SAMPLE_BYTES deflate (fast level) to more than this
# share of their size are stored uncompressed.
_SAMPLE_BYTES = 64 * 1024
_INCOMPRESSIBLE_RATIO = 0.9


class PackageError(ValueError):
    """A package could not be made from what the runtime environment names."""


# ---- excludes ------------------------------------------------------------------------------


def parse_excludes(patterns: Iterable[str]) -> list[tuple[str, bool, bool]]:
    """gitignore-style patterns as (pattern, anchored, dir_only)."""
    out = []
    for raw in patterns:
        p = raw.strip()
        if not p or p.startswith("#"):
            continue
        dir_only = p.endswith("/")
        p = p.rstrip("/")
        anchored = "/" in p
        out.append((p.lstrip("/"), anchored, dir_only))
    return out


def is_excluded(rel_path: str, is_dir: bool, patterns: list[tuple[str, bool, bool]]) -> bool:
    """Whether `rel_path` (posix, relative to the packed root) is excluded.
    A pattern without "/" matches any path part's name ("*.log",
    "__pycache__"); one with "/" matches the whole path from the root
    ("data/*.csv", "/build"); a trailing "/" matches directories only."""
    name = rel_path.rsplit("/", 1)[-1]
    for pattern, anchored, dir_only in patterns:
        if dir_only and not is_dir:
            continue
        if anchored:
            if fnmatch.fnmatchcase(rel_path, pattern) or fnmatch.fnmatchcase(rel_path, pattern + "/**"):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def iter_files(root: str, excludes: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """(absolute path, posix path relative to root) of every file kept, sorted."""
    patterns = parse_excludes(excludes)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not is_excluded(rel_dir + d, True, patterns))
        for f in sorted(filenames):
            rel = rel_dir + f
            full = os.path.join(dirpath, f)
            if is_excluded(rel, False, patterns) or not os.path.isfile(full):
                continue
            yield full, rel


# ---- packing --------------------------------------------------------------------------------


def pack_directory(root: str, *, excludes: Iterable[str] = (), prefix: str = "",
                   max_bytes: int | None = None, what: str = "working_dir") -> bytes:
    """A deterministic zip of the files under `root` (names prefixed by
    `prefix`). Raises PackageError before reading any file content if the
    files kept add up to more than `max_bytes`."""
    root = os.path.abspath(root)
    files = list(iter_files(root, excludes))
    total = sum(os.path.getsize(full) for full, _ in files)
    if max_bytes is not None and total > max_bytes:
        biggest = sorted(files, key=lambda f: -os.path.getsize(f[0]))[:3]
        raise PackageError(
            f"runtime_env {what} {root} holds {total / 2**20:.1f} MiB of files, more than the limit of "
            f"{max_bytes / 2**20:.1f} MiB (largest: {', '.join(rel for _, rel in biggest)}). Leave files out "
            "with runtime_env['excludes'] (e.g. ['data/', '*.ckpt']) or raise "
            "runtime_env['config']['max_package_bytes'].")
    import zipfile  # here, not at the top: the GCS and raylets import this module and never pack

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as zf:
        for full, rel in files:
            info = zipfile.ZipInfo(prefix + rel, date_time=_ZIP_DATE)
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            with open(full, "rb") as f:
                data = f.read()
            info.compress_type = compress_type_for(data)
            zf.writestr(info, data, compresslevel=_ZIP_LEVEL)
    return buf.getvalue()


def compress_type_for(data: bytes) -> int:
    """Deflate what compresses; store what does not (random bytes, images,
    archives), whose deflating costs ~0.2 s per MB here for nothing. Decided
    from a sample, so the same content always packs the same way."""
    import zipfile

    sample = data[:_SAMPLE_BYTES]
    if len(sample) < _SAMPLE_BYTES // 16:
        return zipfile.ZIP_DEFLATED
    if len(zlib.compress(sample, 1)) > _INCOMPRESSIBLE_RATIO * len(sample):
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def read_archive(path: str, *, max_bytes: int | None, what: str) -> bytes:
    """The bytes of a .zip or .whl file, checked to be a zip within the limit."""
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise PackageError(f"runtime_env {what} {path} is {size / 2**20:.1f} MiB, more than the limit of "
                           f"{max_bytes / 2**20:.1f} MiB; raise runtime_env['config']['max_package_bytes'].")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise PackageError(f"runtime_env {what} {path} is not a zip archive")
    with open(path, "rb") as f:
        return f.read()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HASH_HEX_CHARS]


def uri_of(data: bytes) -> str:
    return f"{URI_PREFIX}{content_hash(data)}.zip"


def is_package_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(URI_PREFIX)


def hash_of_uri(uri: str) -> str:
    """The content hash named by a package URI. Raises PackageError for
    anything else (a path, "..", another scheme): nodes only fetch what
    this module named."""
    m = _URI_RE.match(uri)
    if m is None:
        raise PackageError(f"refusing runtime_env package {uri!r}: expected {URI_PREFIX}<32 hex>.zip")
    return m.group(1)


def pack_working_dir(path: str, excludes: Iterable[str], max_bytes: int | None) -> bytes:
    """Package bytes of a working_dir: a directory's files at the archive
    root, or a .zip file as it is."""
    if not os.path.exists(path):
        raise PackageError(f"runtime_env working_dir {path!r} does not exist (resolved to "
                           f"{os.path.abspath(path)}); pass an existing directory or .zip file")
    if os.path.isdir(path):
        return pack_directory(path, excludes=excludes, max_bytes=max_bytes)
    if path.endswith(".zip"):
        return read_archive(path, max_bytes=max_bytes, what="working_dir")
    raise PackageError(f"runtime_env working_dir {path!r} is neither a directory nor a .zip file")


def pack_py_module(item: str | types.ModuleType, excludes: Iterable[str], max_bytes: int | None) -> bytes:
    """Package bytes of one py_modules entry; the unpacked archive goes on
    sys.path, so a package directory keeps its top-level folder."""
    if isinstance(item, types.ModuleType):
        paths = list(getattr(item, "__path__", []) or [])
        if paths:
            item = paths[0]
        elif getattr(item, "__file__", None):
            file = str(item.__file__)
            import zipfile

            data = io.BytesIO()
            with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as zf:
                info = zipfile.ZipInfo(os.path.basename(file), date_time=_ZIP_DATE)
                info.external_attr = (0o100644) << 16
                with open(file, "rb") as f:
                    zf.writestr(info, f.read())
            return data.getvalue()
        else:
            raise PackageError(f"runtime_env py_modules: module {item.__name__} has no file to ship")
    path = os.path.abspath(item)
    if not os.path.exists(path):
        raise PackageError(f"runtime_env py_modules entry {item!r} does not exist; pass a package "
                           "directory, a .zip/.whl file or an imported module")
    if os.path.isdir(path):
        name = os.path.basename(path.rstrip(os.sep))
        return pack_directory(path, excludes=excludes, prefix=name + "/", max_bytes=max_bytes,
                              what="py_modules entry")
    if path.endswith((".zip", ".whl")):
        return read_archive(path, max_bytes=max_bytes, what="py_modules entry")
    raise PackageError(f"runtime_env py_modules entry {item!r} is not a directory, .zip or .whl file")


# ---- storing in the GCS internal KV ----------------------------------------------------------


def _meta_key(h: str) -> bytes:
    return f"pkg:{h}:meta".encode()


def _chunk_key(h: str, i: int) -> bytes:
    return f"pkg:{h}:{i}".encode()


def kv_meta_request(uri: str) -> gcs_pb2.KVGetRequest:
    """The KV read that finds a stored package's completion entry (absent until it is whole)."""
    return gcs_pb2.KVGetRequest(ns=KV_NAMESPACE, key=_meta_key(hash_of_uri(uri)))


def kv_put_requests(uri: str, data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[gcs_pb2.KVPutRequest]:
    """The KV writes that store a package, to be made in order: the chunks,
    then the entry saying it is complete. Raises PackageError when `data`
    is not what `uri` names, so nothing stored can mislead a node."""
    h = hash_of_uri(uri)
    if content_hash(data) != h:
        raise PackageError(f"runtime_env package {uri}: its content does not match the hash in its name")
    chunks = max(1, -(-len(data) // chunk_bytes))
    out = [gcs_pb2.KVPutRequest(ns=KV_NAMESPACE, key=_chunk_key(h, i),
                                value=data[i * chunk_bytes:(i + 1) * chunk_bytes], overwrite=True)
           for i in range(chunks)]
    meta = json.dumps({"chunks": chunks, "size": len(data)}).encode()
    out.append(gcs_pb2.KVPutRequest(ns=KV_NAMESPACE, key=_meta_key(h), value=meta, overwrite=True))
    return out


_uploaded_lock = threading.Lock()
# Per GCS connection object, the hashes it stored or found stored. Weak, so
# a later connection (perhaps to another cluster) that reuses the same
# id() does not inherit them.
_uploaded: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _seen(gcs: Any) -> set[str]:
    try:
        return _uploaded.setdefault(gcs, set())
    except TypeError:  # not weakly referable: nothing is remembered
        return set()


def forget_stored(gcs: Any, content_hash: str) -> None:
    """Look again next time: a new job holds the package, and it may have been
    collected since this connection last saw it (package_refs.py)."""
    with _uploaded_lock:
        _seen(gcs).discard(content_hash)


def store_package(gcs: Any, uri: str, data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> bool:
    """Put a package into the GCS KV (chunks first, then the entry that
    says it is complete). `gcs` is anything with ``call(name, request)``
    (a GcsClient, or a notebook client's proxy). Returns False when it was
    already there."""
    h = hash_of_uri(uri)
    with _uploaded_lock:
        if h in _seen(gcs):
            return False
    if gcs.call("KVGet", kv_meta_request(uri)).found:
        with _uploaded_lock:
            _seen(gcs).add(h)
        return False
    for request in kv_put_requests(uri, data, chunk_bytes):
        gcs.call("KVPut", request)
    with _uploaded_lock:
        _seen(gcs).add(h)
    return True


def fetch_package(gcs: Any, uri: str) -> bytes:
    """The bytes of a stored package, checked against its hash."""
    h = hash_of_uri(uri)
    reply = gcs.call("KVGet", gcs_pb2.KVGetRequest(ns=KV_NAMESPACE, key=_meta_key(h)))
    if not reply.found:
        raise PackageError(f"runtime_env package {uri} is not in the cluster's KV store (was it uploaded by "
                           "a driver of this cluster?)")
    meta = json.loads(reply.value)
    parts = []
    for i in range(int(meta["chunks"])):
        chunk = gcs.call("KVGet", gcs_pb2.KVGetRequest(ns=KV_NAMESPACE, key=_chunk_key(h, i)))
        if not chunk.found:
            raise PackageError(f"runtime_env package {uri} is incomplete in the KV store (chunk {i} missing)")
        parts.append(chunk.value)
    data = b"".join(parts)
    if content_hash(data) != h:
        raise PackageError(f"runtime_env package {uri} is corrupt: its content does not match its hash")
    return data


def upload_package(path: str, *, excludes: Iterable[str] = (), max_bytes: int | None = 100 * 1024 * 1024,
                   gcs: Any = None) -> str:
    """Pack a working directory (or take a .zip), store it in the cluster
    and return its URI, usable as ``runtime_env={"working_dir": uri}``.

    For code that hands environments to others (the Jobs API): the URI is
    small and can be passed to any process of the cluster. `gcs` defaults
    to the connected driver's or client's GCS. Raises PackageError."""
    if gcs is None:
        from nbray.api import core_or_init

        gcs = core_or_init().gcs
    data = pack_working_dir(path, excludes, max_bytes)
    uri = uri_of(data)
    store_package(gcs, uri, data)
    return uri
