"""A task with thousands of returns: values right, everything freed afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nbray
from nbray.testing import wait_for_condition

pytestmark = pytest.mark.timeout(120)


def test_many_returns_mixed_sizes_are_right_and_freed(ray_start: Any) -> None:
    from nbray.api import _state

    core = _state.core
    base = len(core.refs.refs)

    @nbray.remote
    def spread(n: int) -> tuple[Any, ...]:
        # small values inline, every 500th one large enough for the store
        return tuple(np.full(200_000, i % 7, dtype=np.uint8) if i % 500 == 0 else i for i in range(n))

    n = 5_000
    refs = spread.options(num_returns=n).remote(n)
    values = nbray.get(refs)
    for i, v in enumerate(values):
        if i % 500 == 0:
            assert v.nbytes == 200_000 and int(v[0]) == i % 7
        else:
            assert v == i
    del refs, values, v
    wait_for_condition(lambda: len(core.refs.refs) <= base, timeout=30, message="driver refs freed")
    wait_for_condition(lambda: all(node.object_store_used_bytes == 0
                                   for node in core.gcs.call("GetClusterStatus").nodes),
                       timeout=30, message="store emptied")


def test_two_thousand_returns_of_every_kind_arrive_in_order(ray_start: Any) -> None:
    from nbray.api import _state

    core = _state.core
    base_refs, base_values = len(core.refs.refs), len(core.memory_store)
    inner = nbray.put("inner")

    @nbray.remote
    def spread(n: int, held: list[Any]) -> tuple[Any, ...]:
        # atoms, small containers, a ref inside a value, and one failure-free large value
        kinds = (lambda i: i, lambda i: f"s{i}", lambda i: [i, {"k": i}], lambda i: held, lambda i: float(i))
        return tuple(np.full(200_000, 3, dtype=np.uint8) if i == 1_000 else kinds[i % 5](i) for i in range(n))

    n = 2_000
    refs = spread.options(num_returns=n).remote(n, [inner])
    dropped = refs[1::2]  # half of them dropped before (or while) the task runs
    refs = refs[::2]
    del dropped
    values = nbray.get(refs)
    for i, v in zip(range(0, n, 2), values):
        if i == 1_000:
            assert v.nbytes == 200_000 and int(v[-1]) == 3
        elif i % 5 == 3:
            assert nbray.get(v[0]) == "inner"
        else:
            assert v == (i, f"s{i}", [i, {"k": i}], None, float(i))[i % 5]
    del refs, values, v, inner
    wait_for_condition(lambda: len(core.refs.refs) <= base_refs and len(core.memory_store) <= base_values,
                       timeout=30, message="driver refs and values freed")
