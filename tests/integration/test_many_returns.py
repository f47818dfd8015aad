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
