"""Remote functions: submission, arguments, returns, options, generators."""

import os
import time

import numpy as np
import pytest

import nbray

pytestmark = pytest.mark.timeout(60)


@nbray.remote
def add(a, b=0):
    return a + b


def test_task_returns_value(shared_cluster):
    assert nbray.get(add.remote(1, 2)) == 3
    assert nbray.get([add.remote(i, i) for i in range(20)]) == [2 * i for i in range(20)]


def test_get_keeps_list_order_with_duplicates(shared_cluster):
    a, b = add.remote(1), add.remote(2)
    assert nbray.get([b, a, b]) == [2, 1, 2]


def test_top_level_refs_are_resolved_nested_refs_are_passed(shared_cluster):
    @nbray.remote
    def kinds(x, nested):
        return type(x).__name__, type(nested[0]).__name__, nbray.get(nested[0])

    ref = nbray.put(5)
    assert nbray.get(kinds.remote(ref, [ref])) == ("int", "ObjectRef", 5)


def test_keyword_ref_arguments_are_resolved(shared_cluster):
    assert nbray.get(add.remote(1, b=nbray.put(41))) == 42


def test_refs_chain_through_tasks(shared_cluster):
    r = add.remote(0, 1)
    for _ in range(10):
        r = add.remote(r, 1)
    assert nbray.get(r) == 11


def test_num_returns(shared_cluster):
    @nbray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    refs = three.remote()
    assert isinstance(refs, list) and nbray.get(refs) == [1, 2, 3]
    assert nbray.get(add.options(num_returns=1).remote(4)) == 4


def test_options_name_and_resources(shared_cluster):
    @nbray.remote
    def context():
        ctx = nbray.get_runtime_context()
        return ctx.get_task_name(), ctx.get_assigned_resources()

    name, resources = nbray.get(context.options(name="custom", num_cpus=0.5, resources={"custom": 1}).remote())
    assert name == "custom"
    assert resources == {"CPU": 0.5, "custom": 1.0}


def test_runtime_env_vars(shared_cluster):
    @nbray.remote(runtime_env={"env_vars": {"NBRAY_TEST_VAR": "hello"}})
    def read_env():
        return os.environ.get("NBRAY_TEST_VAR")

    assert nbray.get(read_env.remote()) == "hello"

    @nbray.remote
    def read_default():
        return os.environ.get("NBRAY_TEST_VAR")

    assert nbray.get(read_default.remote()) is None  # a different worker process


def test_large_arguments_and_returns_go_through_shared_memory(shared_cluster):
    @nbray.remote
    def total(a):
        return float(a.sum()), a.flags.writeable

    @nbray.remote
    def make(n):
        return np.ones(n)

    big = np.arange(2_000_000, dtype=np.float64)
    s, writeable = nbray.get(total.remote(big))
    assert s == float(big.sum()) and writeable is False
    out = nbray.get(make.remote(3_000_000))
    assert out.shape == (3_000_000,) and out.sum() == 3_000_000 and not out.flags.writeable


def test_streaming_generator(shared_cluster):
    @nbray.remote
    def squares(n):
        for i in range(n):
            yield i * i

    gen = squares.remote(5)
    assert isinstance(gen, nbray.ObjectRefGenerator)
    assert [nbray.get(r) for r in gen] == [0, 1, 4, 9, 16]


def test_generator_items_arrive_before_the_task_ends(shared_cluster, tmp_path):
    flag = tmp_path / "go"

    @nbray.remote
    def slow(path):
        yield "first"
        import time as t

        while not os.path.exists(path):
            t.sleep(0.01)
        yield "second"

    gen = slow.remote(str(flag))
    assert nbray.get(next(gen)) == "first"  # while the task still waits for the flag
    flag.write_text("x")
    assert nbray.get(next(gen)) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_error_surfaces_at_its_item(shared_cluster):
    @nbray.remote
    def bad():
        yield 1
        raise KeyError("gen broke")

    items = list(bad.remote())
    assert nbray.get(items[0]) == 1
    with pytest.raises(KeyError):
        nbray.get(items[1])


def test_wait_returns_ready_and_not_ready_in_order(shared_cluster, tmp_path):
    @nbray.remote
    def maybe_wait(i, path):
        while i >= 2 and not os.path.exists(path):
            time.sleep(0.01)
        return i

    flag = str(tmp_path / "release")
    refs = [maybe_wait.remote(i, flag) for i in range(4)]
    ready, not_ready = nbray.wait(refs, num_returns=2, timeout=20)
    assert ready == refs[:2] and not_ready == refs[2:]
    ready, not_ready = nbray.wait(refs, num_returns=4, timeout=0.2)
    assert ready == refs[:2] and not_ready == refs[2:]
    open(flag, "w").close()
    ready, _ = nbray.wait(refs, num_returns=4, timeout=20)
    assert ready == refs


def test_wait_rejects_bad_input(shared_cluster):
    r = add.remote(1)
    with pytest.raises(ValueError, match="unique"):
        nbray.wait([r, r])
    with pytest.raises(ValueError, match="cannot exceed"):
        nbray.wait([r], num_returns=2)
    with pytest.raises(TypeError):
        nbray.wait(r)


def test_get_timeout(shared_cluster, tmp_path):
    @nbray.remote
    def block(path):
        while not os.path.exists(path):
            time.sleep(0.01)
        return 1

    flag = str(tmp_path / "f")
    ref = block.remote(flag)
    with pytest.raises(nbray.exceptions.GetTimeoutError) as info:
        nbray.get(ref, timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    open(flag, "w").close()
    assert nbray.get(ref, timeout=20) == 1


def test_await_and_future(shared_cluster):
    import asyncio

    ref = add.remote(20, 22)
    assert ref.future().result(timeout=20) == 42

    async def main():
        return await add.remote(1, 1)

    assert asyncio.run(main()) == 2


def test_calling_a_remote_function_directly_is_a_type_error(shared_cluster):
    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        add(1)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="Invalid option keyword 'num_cpu'"):
        nbray.remote(num_cpu=1)(lambda: 1)
    with pytest.raises(ValueError, match="num_gpus"):
        add.options(num_gpus=1.5)
