"""What a head started with ``--port`` keeps beyond its session (``nbray start`` process).

A session directory is new for every start, so a head that lost every
process at once (its machine rebooted, all of them were killed) would
leave its GCS tables where the next head never looks. A head with a fixed
port therefore keeps its token and its default storage in a directory
named after that port, under its temp root::

    <root>/head-port-<port>/
        auth_token           the cluster token (mode 0600)
        gcs_storage.sqlite   the GCS tables (unless --storage points elsewhere)

The next head on that port and root reads them back: same token, same
cluster id, every table loaded, so the raylets and workers of other nodes
that outlived the head reconnect to it. A head stored alive means the
previous one did not stop cleanly (a stopping raylet unregisters its node);
after a clean stop the next head starts empty, and ``fresh`` starts it
empty in any case. Embedded clusters and heads on port 0 keep nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os

from nbray.gcs import persistence
from nbray.gcs import storage as gcs_storage
from nbray.gcs.storage_open import open_storage
from nbray.node import session
from nbray.rpc import auth

STATE_DIR_PREFIX = "head-port-"


@dataclasses.dataclass(frozen=True)
class RestartPlan:
    """What to do with the previous head's state on this port."""

    discard_storage: bool  # delete the default SQLite storage before the GCS starts
    reuse_token: bool  # take the token of the previous head (its storage holds its fingerprint)

    @property
    def resumes(self) -> bool:
        return self.reuse_token and not self.discard_storage


def plan_restart(*, fresh: bool, explicit_storage: bool, stored_head_alive: bool | None) -> RestartPlan:
    """Decide from what the previous head left (``stored_head_alive`` None: no default storage).

    An explicit ``--storage`` is the user's to manage: it is always loaded,
    with the token that wrote it. Raises ValueError for ``fresh`` with it.
    """
    if fresh and explicit_storage:
        raise ValueError("--fresh discards the head's own storage; with --storage, point it at an empty "
                         "location (or another redis namespace) to start the cluster empty")
    if fresh:
        return RestartPlan(discard_storage=True, reuse_token=False)
    if explicit_storage:
        return RestartPlan(discard_storage=False, reuse_token=True)
    if stored_head_alive is None:
        return RestartPlan(discard_storage=False, reuse_token=False)
    return RestartPlan(discard_storage=not stored_head_alive, reuse_token=stored_head_alive)


def state_dir(temp_root: str | None, port: int) -> str:
    return os.path.join(session.resolve_temp_root(temp_root), f"{STATE_DIR_PREFIX}{port}")


@dataclasses.dataclass(frozen=True)
class HeadState:
    storage_uri: str  # what the GCS is started with
    token: bytes
    resumed: bool  # the previous head's token and tables are taken over


def prepare(*, temp_root: str | None, port: int, storage_uri: str, token: bytes | None,
            fresh: bool) -> HeadState:
    """Apply ``plan_restart`` to the state directory of ``port``; returns what the head starts with.

    ``token`` (given, or from the environment) wins over the stored one; a
    storage that holds another token then fails the start (StorageIdentityError).
    Raises GcsStorageError when the previous storage is in use or damaged.
    """
    directory = state_dir(temp_root, port)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    sqlite_path = os.path.join(directory, gcs_storage.DEFAULT_SQLITE_NAME)
    explicit = bool(storage_uri.strip())
    uri = storage_uri if explicit else f"sqlite://{sqlite_path}"
    alive: bool | None = None
    if not explicit and not fresh and os.path.exists(sqlite_path):
        with open_storage(uri, directory) as previous:
            alive = persistence.head_was_alive(persistence.stored_nodes(previous))
    plan = plan_restart(fresh=fresh, explicit_storage=explicit, stored_head_alive=alive)
    if plan.discard_storage:
        _discard_sqlite(sqlite_path)
    token_path = os.path.join(directory, auth.TOKEN_FILE_NAME)
    stored_token = (auth.read_token_file(token_path)
                    if plan.reuse_token and session.own_regular_file(token_path) else None)
    chosen = token or stored_token or auth.generate_token()
    auth.write_token_file(token_path, chosen)
    return HeadState(storage_uri=uri, token=chosen, resumed=plan.resumes and stored_token is not None)


def _discard_sqlite(path: str) -> None:
    """Delete a SQLite storage and its WAL, unless a GCS holds it (StorageUnavailableError)."""
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise gcs_storage.StorageUnavailableError(
                f"GCS storage sqlite:///{path.lstrip('/')} is in use by a running GCS (it holds {lock_path}); "
                "stop that head first") from None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
    finally:
        os.close(fd)
