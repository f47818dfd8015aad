"""The object layout shared by inline and shared-memory objects."""

import threading

import numpy as np
import pytest

from nbray.common.serialization import deserialize, serialize


def roundtrip(value):
    return deserialize(serialize(value).to_bytes())


@pytest.mark.parametrize("value", [1, "text", b"bytes", None, [1, 2.5, "x"], {"a": (1, 2)}, 10**30])
def test_plain_values(value):
    assert roundtrip(value) == value


def test_numpy_arrays_are_read_only_views_of_the_buffer():
    a = np.arange(100_000, dtype=np.float64)
    s = serialize(a)
    assert s.buffers, "large arrays travel out of band"
    data = s.to_bytes()
    b = deserialize(data)
    np.testing.assert_array_equal(a, b)
    assert not b.flags.writeable
    assert np.shares_memory(b, np.frombuffer(data, dtype=np.uint8))


def test_buffers_are_64_byte_aligned():
    s = serialize([np.ones(10_000), np.zeros(5_000, dtype=np.int32)])
    buf = bytearray(s.total_bytes)
    s.write_into(memoryview(buf))
    x, y = deserialize(memoryview(buf))
    assert x.ctypes.data % 64 == (np.frombuffer(buf, np.uint8).ctypes.data % 64)
    assert x.sum() == 10_000 and y.sum() == 0


def test_main_module_functions_travel_by_value():
    ns = {}
    exec("def f(x):\n    return x + 1\n", {"__name__": "__main__"}, ns)
    g = roundtrip(ns["f"])
    assert g(1) == 2


def test_unpicklable_value_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="lock"):
        serialize({"a": threading.Lock()})


def test_error_flag_is_kept():
    s = serialize(ValueError("x"), is_error=True)
    from nbray.common.serialization import is_error_layout

    assert is_error_layout(s.to_bytes())
    assert isinstance(deserialize(s.to_bytes()), ValueError)
