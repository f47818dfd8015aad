"""Pure parts of the Jobs API: statuses, transitions, ids, record encoding, request checks."""

from __future__ import annotations

import pytest

from nbray.job_submission import JobDetails, JobStatus, common

pytestmark = pytest.mark.timeout(10)


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.is_terminal()} == {JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED}
    assert JobStatus.RUNNING == "RUNNING" and str(JobStatus.FAILED) == "FAILED"


@pytest.mark.parametrize(("start", "to", "ok"), [
    (JobStatus.PENDING, JobStatus.RUNNING, True),
    (JobStatus.PENDING, JobStatus.FAILED, True),
    (JobStatus.PENDING, JobStatus.STOPPED, True),
    (JobStatus.RUNNING, JobStatus.SUCCEEDED, True),
    (JobStatus.RUNNING, JobStatus.STOPPED, True),
    (JobStatus.RUNNING, JobStatus.PENDING, False),
    (JobStatus.RUNNING, JobStatus.RUNNING, False),
    (JobStatus.STOPPED, JobStatus.FAILED, False),
    (JobStatus.SUCCEEDED, JobStatus.RUNNING, False),
    (JobStatus.FAILED, JobStatus.SUCCEEDED, False),
])
def test_transitions(start: JobStatus, to: JobStatus, ok: bool) -> None:
    details = JobDetails(entrypoint="true", submission_id="a", status=start)
    if ok:
        moved = common.advance(details, to, driver_exit_code=3)
        assert moved.status == to and moved.driver_exit_code == 3
        assert details.status == start  # the original is not changed
    else:
        with pytest.raises(common.InvalidTransition):
            common.advance(details, to)


def test_record_round_trip() -> None:
    details = JobDetails(entrypoint="echo hi", submission_id="job-1", status=JobStatus.RUNNING,
                         metadata={"owner": "me"}, runtime_env={"env_vars": {"A": "1"}}, start_time=5,
                         driver_exit_code=None, entrypoint_resources={"accel": 1.0})
    raw = common.encode(details)
    back = common.decode(raw)
    assert back == details
    assert back.status is JobStatus.RUNNING
    # Unknown fields written by a newer version are ignored, not fatal.
    assert common.decode(raw.replace(b"{", b'{"future_field":1,', 1)) == details


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"entrypoint": "x"}',
                                 b'{"entrypoint": "x", "submission_id": "a", "status": "DANCING"}'])
def test_decode_rejects_non_records(raw: bytes) -> None:
    with pytest.raises(ValueError):
        common.decode(raw)


@pytest.mark.parametrize("good", ["a", "nbrayjob_0123abcd", "My-Job_2", "x" * common.MAX_ID_CHARS])
def test_valid_ids(good: str) -> None:
    assert common.validate_submission_id(good) == good


@pytest.mark.parametrize("bad", ["", "..", "../etc", "a/b", "a\\b", "a.b", "a b", "é", "x" * (common.MAX_ID_CHARS + 1),
                                 "a\x00"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(common.InvalidJobId):
        common.validate_submission_id(bad)


def test_new_ids_are_valid_and_distinct() -> None:
    ids = {common.new_submission_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(common.validate_submission_id(i).startswith(common.SUBMISSION_ID_PREFIX) for i in ids)


@pytest.mark.parametrize(("protocol", "name", "ok"), [
    ("gcs", "_nbray_pkg_0123.zip", True),
    ("gcs", "../x.zip", False),
    ("gcs", "a/b.zip", False),
    ("gcs", "a..zip", False),
    ("s3", "a.zip", False),
    ("gcs", ".hidden", False),
])
def test_package_names(protocol: str, name: str, ok: bool) -> None:
    if ok:
        assert common.validate_package(protocol, name) == f"{protocol}://{name}"
    else:
        with pytest.raises(common.InvalidJobId):
            common.validate_package(protocol, name)


def test_validate_request() -> None:
    req = common.validate_request({"entrypoint": "echo 1", "metadata": {"k": "v"}, "entrypoint_num_cpus": 1})
    assert req["entrypoint"] == "echo 1" and req["metadata"] == {"k": "v"} and req["entrypoint_num_cpus"] == 1
    assert req["submission_id"].startswith(common.SUBMISSION_ID_PREFIX)
    assert common.validate_request({"entrypoint": "x", "job_id": "old-style"})["submission_id"] == "old-style"


@pytest.mark.parametrize("body", [
    None, [], {}, {"entrypoint": ""}, {"entrypoint": "  "}, {"entrypoint": 3},
    {"entrypoint": "x", "submission_id": "../x"},
    {"entrypoint": "x", "metadata": {"k": 1}},
    {"entrypoint": "x", "runtime_env": "env"},
    {"entrypoint": "x", "entrypoint_num_cpus": -1},
    {"entrypoint": "x", "entrypoint_num_gpus": True},
    {"entrypoint": "x", "entrypoint_resources": {"a": "lots"}},
    {"entrypoint": "x", "surprise": 1},
    {"entrypoint": "x" * (common.MAX_ENTRYPOINT_CHARS + 1)},
])
def test_validate_request_rejects(body: object) -> None:
    with pytest.raises(ValueError):
        common.validate_request(body)
