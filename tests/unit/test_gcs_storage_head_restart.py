"""Which storage and token a head started again on the same port takes (no processes)."""

from __future__ import annotations

import fcntl
import os

import pytest

from nbray.gcs import storage as st
from nbray.gcs.persistence import TableWriter, head_was_alive, stored_nodes
from nbray.gcs.storage_open import open_storage
from nbray.node import head_state
from nbray.node.head_state import RestartPlan, plan_restart
from nbray.protocol import gcs_pb2
from nbray.rpc import auth

pytestmark = pytest.mark.timeout(30)
PORT = 7123


def node(is_head: bool, alive: bool) -> gcs_pb2.NodeInfo:
    state = gcs_pb2.NodeInfo.ALIVE if alive else gcs_pb2.NodeInfo.DEAD
    return gcs_pb2.NodeInfo(node_id=os.urandom(28), is_head=is_head, state=state)


def test_head_was_alive_looks_at_head_nodes_only() -> None:
    assert not head_was_alive([])
    assert not head_was_alive([node(True, False), node(False, True)])
    assert head_was_alive([node(True, False), node(True, True)])


def test_plan_restart_decisions() -> None:
    assert plan_restart(fresh=False, explicit_storage=False, stored_head_alive=True) == RestartPlan(False, True)
    assert plan_restart(fresh=False, explicit_storage=False, stored_head_alive=False) == RestartPlan(True, False)
    assert plan_restart(fresh=False, explicit_storage=False, stored_head_alive=None) == RestartPlan(False, False)
    assert plan_restart(fresh=True, explicit_storage=False, stored_head_alive=True) == RestartPlan(True, False)
    assert plan_restart(fresh=False, explicit_storage=True, stored_head_alive=None) == RestartPlan(False, True)
    assert plan_restart(fresh=False, explicit_storage=False, stored_head_alive=True).resumes
    with pytest.raises(ValueError, match="--fresh"):
        plan_restart(fresh=True, explicit_storage=True, stored_head_alive=None)


def write_previous_head(root: str, token: bytes, head_alive: bool) -> str:
    """What a head on PORT leaves: its token file and storage with its head node and a KV entry."""
    first = head_state.prepare(temp_root=root, port=PORT, storage_uri="", token=token, fresh=False)
    assert not first.resumed and first.token == token
    with open_storage(first.storage_uri, root) as storage:
        storage.open_identity(token, b"C" * 16, "0.1")
        TableWriter(storage, lambda _: None).on_published(
            gcs_pb2.PubMessage(channel=gcs_pb2.NODE, node=node(True, head_alive)))
        storage.put(st.Table.KV, b"k", b"v")
        storage.flush()
    return first.storage_uri


def test_crashed_head_is_resumed_with_its_token_and_tables(tmp_path: os.PathLike) -> None:
    root = str(tmp_path)
    uri = write_previous_head(root, b"a" * 32, head_alive=True)
    token_file = os.path.join(head_state.state_dir(root, PORT), auth.TOKEN_FILE_NAME)
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    again = head_state.prepare(temp_root=root, port=PORT, storage_uri="", token=None, fresh=False)
    assert again.resumed and again.token == b"a" * 32 and again.storage_uri == uri
    with open_storage(again.storage_uri, root) as storage:
        assert storage.open_identity(again.token, b"X" * 16, "0.1") == b"C" * 16
        assert storage.get(st.Table.KV, b"k") == b"v" and len(stored_nodes(storage)) == 1


def test_cleanly_stopped_head_and_fresh_start_empty(tmp_path: os.PathLike) -> None:
    root = str(tmp_path)
    write_previous_head(root, b"a" * 32, head_alive=False)
    after_stop = head_state.prepare(temp_root=root, port=PORT, storage_uri="", token=None, fresh=False)
    assert not after_stop.resumed and after_stop.token != b"a" * 32
    with open_storage(after_stop.storage_uri, root) as storage:
        assert storage.scan(st.Table.KV) == {}
    write_previous_head(str(tmp_path / "other"), b"b" * 32, head_alive=True)
    fresh = head_state.prepare(temp_root=str(tmp_path / "other"), port=PORT, storage_uri="", token=None, fresh=True)
    assert not fresh.resumed and fresh.token != b"b" * 32
    with open_storage(fresh.storage_uri, root) as storage:
        assert storage.scan(st.Table.NODE) == {}


def test_storage_of_a_running_gcs_is_never_discarded(tmp_path: os.PathLike) -> None:
    root = str(tmp_path)
    uri = write_previous_head(root, b"a" * 32, head_alive=False)
    path = st.parse_storage_uri(uri, root).path
    fd = os.open(path + ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running GCS holds it
        with pytest.raises(st.StorageUnavailableError, match="in use"):
            head_state.prepare(temp_root=root, port=PORT, storage_uri="", token=None, fresh=True)
        with pytest.raises(st.StorageUnavailableError, match="in use"):
            head_state.prepare(temp_root=root, port=PORT, storage_uri="", token=None, fresh=False)
    finally:
        os.close(fd)
    assert os.path.getsize(path) > 0


def test_explicit_storage_keeps_the_token_and_refuses_fresh(tmp_path: os.PathLike) -> None:
    root = str(tmp_path)
    explicit = f"sqlite://{tmp_path}/mine.sqlite"
    first = head_state.prepare(temp_root=root, port=PORT, storage_uri=explicit, token=None, fresh=False)
    again = head_state.prepare(temp_root=root, port=PORT, storage_uri=explicit, token=None, fresh=False)
    assert again.storage_uri == explicit and again.token == first.token
    with pytest.raises(ValueError, match="--fresh"):
        head_state.prepare(temp_root=root, port=PORT, storage_uri=explicit, token=None, fresh=True)
