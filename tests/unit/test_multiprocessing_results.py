"""How a Pool's results are assembled from chunk replies, whatever order they come in."""

import concurrent.futures
from multiprocessing import TimeoutError

import pytest

from nbray.util.multiprocessing import plan
from nbray.util.multiprocessing.results import AsyncResult, IMapIterator, RemoteTraceback, decode_reply


def test_async_result_joins_chunks_in_order():
    got = []
    result = AsyncResult(3, single=False, callback=got.append, error_callback=None)
    result.deliver(2, [5], None)
    result.deliver(0, [1, 2], None)
    assert not result.ready()
    result.deliver(1, [3, 4], None)
    assert result.ready() and result.successful()
    assert result.get(timeout=0) == [1, 2, 3, 4, 5]
    assert got == [[1, 2, 3, 4, 5]]


def test_async_result_fails_at_the_first_error():
    errors = []
    result = AsyncResult(3, single=False, callback=None, error_callback=errors.append)
    boom = KeyError("k")
    result.deliver(1, [], boom)
    assert result.ready() and not result.successful()
    result.deliver(0, [1], None)  # later chunks change nothing
    with pytest.raises(KeyError):
        result.get()
    assert errors == [boom]


def test_async_result_edges():
    empty = []
    assert AsyncResult(0, single=False, callback=empty.append, error_callback=None).get(timeout=0) == []
    assert empty == [[]]
    single = AsyncResult(1, single=True, callback=None, error_callback=None)
    with pytest.raises(ValueError, match="not ready"):
        single.successful()
    with pytest.raises(TimeoutError):
        single.get(timeout=0.01)
    single.deliver(0, ["value"], None)
    assert single.get() == "value"


def test_a_raising_callback_still_sets_the_result():
    def bad_callback(value):
        raise RuntimeError("callback bug")

    result = AsyncResult(1, single=True, callback=bad_callback, error_callback=None)
    result.deliver(0, [1], None)
    assert result.get(timeout=0) == 1


class Submissions:
    """Records the chunks an iterator submits; with `answer`, replies at once."""

    def __init__(self):
        self.calls = []
        self.answer = False

    def __call__(self, sink, index, chunk):
        self.calls.append((index, chunk))
        if self.answer:
            sink.deliver(index, [x * x for x in chunk], None)


def test_imap_in_order_with_a_bounded_window():
    submitted = Submissions()
    it = IMapIterator(plan.chunks(range(10), 2), submitted, ordered=True, window=2)
    assert [i for i, _ in submitted.calls] == [0, 1]  # no more than the window before results
    it.deliver(1, [4, 9], None)
    with pytest.raises(TimeoutError):
        it.next(timeout=0.01)  # chunk 0 is not back: nothing may be yielded yet
    it.deliver(0, [0, 1], None)
    assert [it.next(timeout=0), it.next(timeout=0), it.next(timeout=0), it.next(timeout=0)] == [0, 1, 4, 9]
    assert len(submitted.calls) == 4  # the window moved on as results were taken
    for index, chunk in submitted.calls[2:]:
        it.deliver(index, [x * x for x in chunk], None)
    submitted.answer = True
    assert list(it) == [16, 25, 36, 49, 64, 81]
    assert [i for i, _ in submitted.calls] == [0, 1, 2, 3, 4]


def test_imap_unordered_yields_by_arrival_and_goes_on_after_errors():
    submitted = Submissions()
    it = IMapIterator(plan.chunks(range(3), 1), submitted, ordered=False, window=3)
    it.deliver(2, [20], None)
    assert next(it) == 20
    it.deliver(0, [], ValueError("bad item"))
    with pytest.raises(ValueError, match="bad item"):
        next(it)
    it.deliver(1, [10], None)
    assert list(it) == [10]


def test_decode_reply():
    done = concurrent.futures.Future()
    done.set_result(([1, 2], None))
    assert decode_reply(done) == ([1, 2], None)

    failed_item = concurrent.futures.Future()
    failed_item.set_result(([1], (ZeroDivisionError("x"), "Traceback ...\nZeroDivisionError: x\n")))
    values, error = decode_reply(failed_item)
    assert values == [1] and isinstance(error, ZeroDivisionError)
    assert isinstance(error.__cause__, RemoteTraceback) and "ZeroDivisionError: x" in str(error.__cause__)

    lost = concurrent.futures.Future()
    lost.set_exception(ConnectionError("worker gone"))
    values, error = decode_reply(lost)
    assert values == [] and isinstance(error, ConnectionError)
