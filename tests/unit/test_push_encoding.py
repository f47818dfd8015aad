"""A compact task's or actor call's push written straight to bytes parses into
exactly the request its built spec would have sent (seeded random records)."""

import random

import pytest

from nbray.protocol import common_pb2, core_worker_pb2
from nbray.worker import push_encoding
from nbray.worker.pending_task import PendingTask

pytestmark = pytest.mark.timeout(60)


def _template(rng: random.Random) -> common_pb2.TaskSpec:
    spec = common_pb2.TaskSpec(type=rng.choice([common_pb2.NORMAL_TASK, common_pb2.ACTOR_TASK]),
                               name=rng.choice(["f", "g", "häßlich"]),
                               func_or_class_name="m.f", num_returns=rng.randint(0, 3),
                               max_retries=rng.randint(-1, 5), retry_exceptions=rng.random() < 0.5)
    spec.resources["CPU"] = rng.choice([0.0, 0.5, 1.0])
    if rng.random() < 0.5:
        spec.resources["GPU"] = 1.0
    spec.function.function_id = rng.randbytes(28)
    if rng.random() < 0.3:
        spec.runtime_env.env_vars["A"] = "b"
    if rng.random() < 0.3:
        spec.scheduling_strategy.kind = common_pb2.SchedulingStrategy.SPREAD
    return spec


def _random_task(rng: random.Random, template: common_pb2.TaskSpec, caller: common_pb2.Address) -> PendingTask:
    tid = rng.randbytes(24)
    # Lengths around 127/128 and 16383/16384 cross varint boundaries.
    args = rng.randbytes(rng.choice([0, 1, 100, 127, 128, 129, 16_383, 16_384, 70_000]))
    actor_call = None
    if template.type == common_pb2.ACTOR_TASK:
        actor_call = (rng.randbytes(16), rng.choice([0, 1, 127, 128, 2**20, 2**40]),
                      rng.choice([b"", rng.randbytes(28)]))
    task = PendingTask.compact(template, tid, rng.randbytes(4), rng.choice([b"", rng.randbytes(24)]),
                               rng.choice(["", "cell-7", "ünï"]), rng.choice(["", "ns", "x" * 200]), caller,
                               args, [tid + b"\x01\x00\x00\x00"], tid + b"\x01\x00\x00\x00",
                               rng.choice(["", "", "renamed", template.name]), actor_call=actor_call)
    for _ in range(rng.choice([0, 0, 1, 3, 200])):
        task.next_attempt()
    return task


def test_the_encoded_push_equals_the_built_request_for_random_tasks():
    rng = random.Random(20261207)
    caller = common_pb2.Address(worker_id=rng.randbytes(28), node_id=rng.randbytes(28), host="127.0.0.1",
                                port=43210, unix_path="/tmp/nbray/sockets/w-1.sock")
    actor_calls = 0
    for _ in range(300):
        template = _template(rng)
        worker_id = rng.choice([b"", rng.randbytes(28)])  # actor calls name no worker
        resource_ids = rng.choice([{}, {"CPU": "0"}, {"GPU": "0,1", "CPU": ""}])
        task = _random_task(rng, template, caller)
        data = push_encoding.encode(task, worker_id, resource_ids)
        assert data is not None
        assert not task.spec_built  # encoding built nothing
        sent = core_worker_pb2.PushTaskRequest()
        sent.ParseFromString(data)
        built = task.push_req
        built.intended_worker_id = worker_id
        built.resource_ids.update(resource_ids)
        assert sent == built
        assert sent.spec.name == task.name and sent.spec.attempt_number == task.attempt
        if task.actor_call is not None:
            assert (sent.spec.actor_id, sent.spec.sequence_number) == (task.actor_id, task.sequence_number)
            actor_calls += 1
    assert actor_calls > 100


def test_a_template_that_sets_a_per_task_field_is_not_encoded():
    # Appending could not clear such a field, so these tasks take the built path.
    rng = random.Random(7)
    caller = common_pb2.Address(worker_id=b"w" * 28)
    for field, value in [("namespace", "fixed"), ("context_tag", "tag"), ("job_id", b"j"),
                         ("attempt_number", 2), ("actor_id", b"a"), ("sequence_number", 3)]:
        template = _template(rng)
        setattr(template, field, value)
        assert push_encoding.encode(_random_task(rng, template, caller), b"w" * 28, {}) is None
    template = _template(rng)
    template.caller.port = 1
    assert push_encoding.encode(_random_task(rng, template, caller), b"w" * 28, {}) is None


def test_varints_match_the_protobuf_encoding():
    for n in [1, 127, 128, 300, 16_383, 16_384, 2**21, 2**31 - 1, 2**40]:
        msg = common_pb2.TaskSpec(sequence_number=n)  # an int64 field: tag 19, then the varint
        assert msg.SerializeToString() == push_encoding.varint(19 << 3) + push_encoding.varint(n)
