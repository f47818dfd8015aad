"""The Ray backend's pure parts: gRPC messages in wire format, who owns a task,
Jobs API rows and log chunks, and the panel's auth message. No Ray needed."""

from __future__ import annotations

import pytest

from nbray.jupyter.server_extension import ray_actions, ray_jobs, ray_rows, ray_wire

TASK = bytes(range(24))
WORKER = bytes(range(100, 128))


def test_varints_round_trip() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        assert ray_wire.read_varint(ray_wire.varint(value), 0) == (value, len(ray_wire.varint(value)))
    with pytest.raises(ray_wire.WireError):
        ray_wire.read_varint(b"\x80", 0)


def test_cancel_request_names_the_first_return_object() -> None:
    request = ray_wire.parse(ray_wire.cancel_request(TASK, force_kill=True, recursive=False))
    assert request == {1: [TASK + b"\x01\x00\x00\x00"], 2: [1]}
    assert ray_wire.parse(ray_wire.cancel_request(TASK, force_kill=False, recursive=True)) == {
        1: [TASK + b"\x01\x00\x00\x00"], 3: [1]}
    with pytest.raises(ValueError, match="24 bytes"):
        ray_wire.cancel_request(TASK[:20], False, False)


def _address(ip: str, port: int, worker: bytes) -> bytes:
    return ray_wire.field_bytes(2, ip.encode()) + ray_wire.field_varint(3, port) + ray_wire.field_bytes(4, worker)


def test_worker_and_driver_addresses_from_gcs_replies() -> None:
    ok = ray_wire.field_bytes(1, b"")
    worker = ray_wire.field_bool(1, True) + ray_wire.field_bytes(2, _address("10.0.0.7", 40123, WORKER))
    reply = ok + ray_wire.field_bytes(2, worker)
    address, alive = ray_wire.worker_address_of_reply(reply)
    assert (address.target, address.worker_id, alive) == ("10.0.0.7:40123", WORKER, True)
    with pytest.raises(ray_wire.WireError, match="no such worker"):
        ray_wire.worker_address_of_reply(ok)

    job = bytes.fromhex("02000000")
    other = ray_wire.field_bytes(1, bytes.fromhex("01000000")) + ray_wire.field_bool(2, True)
    mine = ray_wire.field_bytes(1, job) + ray_wire.field_bytes(12, _address("127.0.0.1", 5555, WORKER))
    reply = ok + ray_wire.field_bytes(2, other) + ray_wire.field_bytes(2, mine)
    address, dead = ray_wire.driver_address_of_reply(reply, job)
    assert (address.target, dead) == ("127.0.0.1:5555", False)
    with pytest.raises(ray_wire.WireError, match="no job"):
        ray_wire.driver_address_of_reply(reply, bytes.fromhex("03000000"))
    with pytest.raises(ray_wire.WireError, match="no ip and port"):
        ray_wire.address(ray_wire.field_bytes(2, b"10.0.0.1"))


def test_requests_check_their_ids() -> None:
    assert ray_wire.parse(ray_wire.worker_info_request(WORKER)) == {1: [WORKER]}
    with pytest.raises(ValueError, match="28 bytes"):
        ray_wire.worker_info_request(WORKER[:4])
    assert ray_wire.parse(ray_wire.job_info_request("02000000")) == {1: [1], 2: [b"02000000"], 3: [1], 4: [1]}


def test_truncated_messages_are_typed_errors() -> None:
    for data in (b"\x0a\x05ab", b"\x0b", b"\x00\x01", b"\x09\x01"):
        with pytest.raises(ray_wire.WireError):
            ray_wire.parse(data)


def test_the_owner_of_a_task() -> None:
    driver_parent = "ff" * 20 + "02000000"
    assert ray_actions.owner_of({"task_id": "a", "parent_task_id": driver_parent, "job_id": "02000000"}) == (
        "driver", "02000000")
    assert ray_actions.owner_of({"task_id": "a", "parent_task_id": "ab" * 24}) == ("task", "ab" * 24)
    with pytest.raises(ray_actions.RayActionRefused, match="who submitted"):
        ray_actions.owner_of({"task_id": "a", "parent_task_id": None})


def test_what_can_be_cancelled() -> None:
    assert ray_actions.check_cancellable({"state": "RUNNING", "type": "NORMAL_TASK"}, force=True)
    assert not ray_actions.check_cancellable({"state": "FINISHED", "type": "NORMAL_TASK"}, force=False)
    assert ray_actions.check_cancellable({"state": "PENDING_NODE_ASSIGNMENT", "type": "ACTOR_TASK"}, force=False)
    with pytest.raises(ray_actions.RayActionRefused, match="force-cancel an actor task"):
        ray_actions.check_cancellable({"state": "RUNNING", "type": "ACTOR_TASK"}, force=True)


def test_submitted_jobs_leave_drivers_out() -> None:
    reply = [{"type": "DRIVER", "job_id": "01000000", "submission_id": None, "status": "RUNNING"},
             {"type": "SUBMISSION", "job_id": "03000000", "submission_id": "raysubmit_b", "status": "STOPPED",
              "entrypoint": "python b.py", "start_time": 20, "end_time": 30, "metadata": None},
             {"type": "SUBMISSION", "job_id": None, "submission_id": "raysubmit_a", "status": "PENDING",
              "entrypoint": "python a.py", "start_time": 10}]
    rows = ray_jobs.submission_rows(reply)
    assert [r["submission_id"] for r in rows] == ["raysubmit_a", "raysubmit_b"]
    assert rows[1]["status"] == "STOPPED" and rows[1]["end_time"] == 30 and rows[1]["metadata"] == {}
    with pytest.raises(ray_jobs.RayJobsReplyError):
        ray_jobs.submission_rows({"jobs": []})


def test_log_chunks_follow_the_offset_and_never_cut_a_character() -> None:
    logs = "one\nzwei ü\n"
    first = ray_jobs.log_chunk(logs, 0, ended=False, max_bytes=10)  # "ü" is bytes 9 and 10
    assert first == {"logs": "one\nzwei ", "offset": 9, "done": False}
    second = ray_jobs.log_chunk(logs, first["offset"], ended=False)
    assert second == {"logs": "ü\n", "offset": 12, "done": False}
    assert ray_jobs.log_chunk(logs, 12, ended=True) == {"logs": "", "offset": 12, "done": True}
    assert ray_jobs.log_chunk(logs, 99, ended=True)["offset"] == 12
    assert ray_jobs.stopped_of({"stopped": True}) is True
    with pytest.raises(ray_jobs.RayJobsReplyError):
        ray_jobs.stopped_of({"stopped": "yes"})


def test_the_auth_refusal_says_what_to_set() -> None:
    without = ray_rows.auth_refusal("http://h:8265", 401, b"Unauthorized: Missing authentication token", False)
    assert "RAY_AUTH_TOKEN" in without and "401" in without and "Missing authentication token" in without
    wrong = ray_rows.auth_refusal("http://h:8265", 403, b"Forbidden: Invalid authentication token", True)
    assert "is not the cluster's" in wrong
    assert ray_rows.reply_message(b'{"msg": "no such job"}') == "no such job"
