"""The per-user cluster registry: a private directory, entries without the token, stale ones dropped."""

from __future__ import annotations

import json
import os
import stat

import pytest

from nbray.node import registry, session


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NBRAY_TMPDIR", str(tmp_path))
    return tmp_path


def test_registry_is_created_private_and_independent_of_temp_dirs(tmpdir_env):
    path = registry.ensure_registry_dir()
    assert path == str(tmpdir_env / f"nbray-clusters-{os.getuid()}")
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700


def test_an_existing_registry_left_open_is_closed(tmpdir_env):
    path = tmpdir_env / f"nbray-clusters-{os.getuid()}"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)
    registry.ensure_registry_dir()
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700


def test_a_symlinked_registry_is_refused(tmpdir_env):
    elsewhere = tmpdir_env / "elsewhere"
    elsewhere.mkdir()
    (tmpdir_env / f"nbray-clusters-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(registry.UnsafeRegistryError, match="symbolic link.*NBRAY_TMPDIR"):
        registry.ensure_registry_dir()
    with pytest.raises(registry.UnsafeRegistryError):
        registry.register(gcs_address="127.0.0.1:1", session_dir=str(tmpdir_env / "s"), role="head", pids={})
    assert registry.entries() == []  # not trusted for lookups either
    assert os.listdir(elsewhere) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by another user")
def test_a_registry_owned_by_another_user_is_refused(tmpdir_env):
    path = tmpdir_env / f"nbray-clusters-{os.getuid()}"
    path.mkdir(mode=0o700)
    os.chown(path, 4242, -1)
    with pytest.raises(registry.UnsafeRegistryError, match="belongs to uid 4242"):
        registry.ensure_registry_dir()
    assert registry.entries() == []


def test_entries_name_the_session_not_the_token_and_stale_ones_are_dropped(tmpdir_env):
    live = registry.register(gcs_address="127.0.0.1:6379", session_dir=str(tmpdir_env / "root" / "session_a"),
                             role=registry.ROLE_HEAD, pids={"gcs": 11, "raylet": 12})
    stale = registry.register(gcs_address="127.0.0.1:6380", session_dir=str(tmpdir_env / "root" / "session_b"),
                              role=registry.ROLE_LOCAL, pids={"gcs": 21})
    assert stat.S_IMODE(os.stat(live).st_mode) == 0o600
    data = json.loads(open(live).read())
    assert set(data) == {"gcs_address", "session_dir", "temp_root", "role", "pids", "started_by_pid",
                         "started_at_s"}
    assert data["temp_root"] == str(tmpdir_env / "root")
    assert len(registry.entries(include_stale=True)) == 2
    found = registry.entries(running=lambda e: e.role == registry.ROLE_HEAD)
    assert [e.gcs_address for e in found] == ["127.0.0.1:6379"]
    assert found[0].pids == {"gcs": 11, "raylet": 12}
    assert not os.path.exists(stale) and os.path.exists(live)
    registry.unregister(live)
    registry.unregister(live)  # already gone: fine
    assert registry.entries(include_stale=True) == []


def test_unreadable_entries_are_skipped(tmpdir_env):
    directory = registry.ensure_registry_dir()
    with open(os.path.join(directory, "broken.json"), "w") as f:
        f.write("{not json")
    assert registry.entries(include_stale=True) == []


def test_same_address_treats_loopback_spellings_alike():
    assert session.same_address("127.0.0.1:6379", "localhost:6379")
    assert session.same_address("10.0.0.1:6379", "10.0.0.1:6379")
    assert not session.same_address("127.0.0.1:6379", "127.0.0.1:6380")
    assert not session.same_address("10.0.0.1:6379", "127.0.0.1:6379")


def test_a_session_token_is_read_only_from_a_regular_file_of_this_user(tmp_path, monkeypatch):
    from nbray.rpc import auth

    for name in (auth.TOKEN_ENV, auth.TOKEN_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    mine, linked = tmp_path / "session_mine", tmp_path / "session_linked"
    mine.mkdir()
    linked.mkdir()
    token = bytes(range(32))
    auth.write_token_file(str(mine / auth.TOKEN_FILE_NAME), token)
    (linked / auth.TOKEN_FILE_NAME).symlink_to(mine / auth.TOKEN_FILE_NAME)
    assert session.find_token(str(mine)) == token
    assert session.find_token(str(linked)) is None  # a link could lead to any of the user's tokens
    assert session.find_token(str(tmp_path / "missing")) is None
    monkeypatch.setenv(auth.TOKEN_ENV, (b"\x07" * 32).hex())
    assert session.find_token(str(mine)) == b"\x07" * 32  # the environment wins
