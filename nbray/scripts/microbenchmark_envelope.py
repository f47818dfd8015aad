"""``nbray microbenchmark --envelope``: how far one node stretches.

The dimensions of Ray's single-node scalability envelope, each run to its
full size by default:

* N tasks queued on one node, then gathered: the submit cost per task after
  10k, 100k and N submissions (it should stay flat), the total time, the
  driver's memory per pending task, and what the driver still holds after
  the refs are dropped;
* 10,000 returns from one task;
* 10,000 store objects (200 KiB each) in one ``get``;
* 10,000 ref arguments to one task;
* the largest numpy ``put`` and its read back (4 GiB by default);
* an object larger than the object store (spilled or served by a fallback).

Every case is written against the Ray API through a module parameter
(``rt``), so ``--ray-python`` runs the same cases, under the same names, on
Ray in another interpreter. ``Sizes`` scales every dimension down for the
smoke test.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

KIB = 1024
MB = 1024 * 1024
GIB = 1024 * MB


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The size of each dimension (the defaults are the full envelope)."""

    queued_tasks: int = 1_000_000
    returns: int = 10_000
    get_objects: int = 10_000
    get_object_bytes: int = 200 * KIB
    ref_args: int = 10_000
    put_bytes: int = 4 * GIB
    # The store of the larger-than-store case, and the object put into it.
    small_store_bytes: int = 256 * MB
    larger_than_store_bytes: int = 384 * MB


SMOKE = Sizes(queued_tasks=20_000, returns=1_000, get_objects=1_000, ref_args=1_000, put_bytes=64 * MB,
              small_store_bytes=96 * MB, larger_than_store_bytes=128 * MB)


def _count(n: int) -> str:
    return f"{n:,}"


def case_names(sizes: Sizes) -> list[str]:
    """Every figure the envelope reports, in order."""
    n = sizes.queued_tasks
    marks = [m for m in (10_000, 100_000) if m < n] + [n]
    return ([f"envelope: queued tasks, submit cost at {_count(m)} (us/task)" for m in marks]
            + [f"envelope: {_count(n)} queued tasks, total (s)",
               "envelope: driver memory per pending task (B)",
               "envelope: driver memory at start (MB)",
               "envelope: driver memory peak, vs start (MB)",
               "envelope: driver memory after the refs are dropped, vs start (MB)",
               f"envelope: {_count(sizes.returns)} returns from one task (s)",
               f"envelope: {_count(sizes.get_objects)} store objects in one get (s)",
               f"envelope: {_count(sizes.ref_args)} ref arguments to one task (s)",
               f"envelope: put {_bytes(sizes.put_bytes)} numpy (GB/s)",
               f"envelope: read back {_bytes(sizes.put_bytes)} numpy (GB/s)",
               "envelope: object larger than the store, put and read back (s)"])


def _bytes(n: int) -> str:
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n // MB} MB"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _owned_refs() -> int | None:
    """How many references and values this nbray driver's tables still hold
    (None under another runtime, where only the memory is watched)."""
    try:
        from nbray.object_ref import _core
    except ImportError:
        return None
    core = _core[0]
    return None if core is None else len(core.refs.refs) + len(core.memory_store)


# The memory counts as settled once it fell by less than this over the last
# few samples.
_SETTLED_SAMPLES = 5


def _settled_rss_bytes(refs_at_start: int | None, timeout_s: float) -> int:
    """The driver's memory once dropped refs are released, which happens in
    the background: waits (at most `timeout_s`) for the reference table and
    the values to shrink back to their size at start and the memory to stop
    falling (for a second: freed memory goes back to the system a moment
    after the last release)."""
    deadline = time.monotonic() + timeout_s
    history = [_rss_bytes()]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        gc.collect()
        history.append(_rss_bytes())
        owned = _owned_refs()
        released = refs_at_start is None or owned is None or owned <= refs_at_start
        if released and len(history) > _SETTLED_SAMPLES and history[-1 - _SETTLED_SAMPLES] - history[-1] < MB:
            return history[-1]
    return _rss_bytes()


def queued_tasks(rt: Any, n: int) -> dict[str, float]:
    @rt.remote
    def noop() -> int:
        return 0

    rt.get([noop.remote() for _ in range(100)])
    gc.collect()
    rss_start = _rss_bytes()
    refs_at_start = _owned_refs()
    marks = {m for m in (10_000, 100_000) if m < n} | {n}
    out: dict[str, float] = {}
    refs = []
    start = time.perf_counter()
    for i in range(1, n + 1):
        refs.append(noop.remote())
        if i in marks:
            out[f"envelope: queued tasks, submit cost at {_count(i)} (us/task)"] = \
                (time.perf_counter() - start) / i * 1e6
    # Measured as soon as everything is submitted: most tasks are still pending.
    rss_submitted = _rss_bytes()
    out["envelope: driver memory per pending task (B)"] = (rss_submitted - rss_start) / n
    assert rt.get(refs) == [0] * n
    rss_peak = max(rss_submitted, _rss_bytes())
    out[f"envelope: {_count(n)} queued tasks, total (s)"] = time.perf_counter() - start
    del refs
    gc.collect()
    rss_after = _settled_rss_bytes(refs_at_start, timeout_s=max(10.0, n / 20_000))
    out["envelope: driver memory at start (MB)"] = rss_start / MB
    out["envelope: driver memory peak, vs start (MB)"] = (rss_peak - rss_start) / MB
    out["envelope: driver memory after the refs are dropped, vs start (MB)"] = (rss_after - rss_start) / MB
    return out


def many_returns(rt: Any, n: int) -> float:
    @rt.remote
    def spread(count: int) -> tuple[int, ...]:
        return tuple(range(count))

    rt.get(spread.options(num_returns=2).remote(2))
    start = time.perf_counter()
    refs = spread.options(num_returns=n).remote(n)
    values = rt.get(refs)
    elapsed = time.perf_counter() - start
    assert values == list(range(n))
    return elapsed


def many_objects_in_one_get(rt: Any, n: int, each_bytes: int) -> float:
    import numpy as np

    refs = [rt.put(np.full(each_bytes, i % 251, dtype=np.uint8)) for i in range(n)]
    start = time.perf_counter()
    values = rt.get(refs)
    elapsed = time.perf_counter() - start
    assert all(int(v[-1]) == i % 251 and v.nbytes == each_bytes for i, v in enumerate(values))
    return elapsed


def many_ref_args(rt: Any, n: int) -> float:
    @rt.remote
    def total(*args: int) -> int:
        return sum(args)

    refs = [rt.put(i) for i in range(n)]
    start = time.perf_counter()
    result = rt.get(total.remote(*refs))
    elapsed = time.perf_counter() - start
    assert result == n * (n - 1) // 2
    return elapsed


def large_put(rt: Any, nbytes: int) -> tuple[float, float]:
    import numpy as np

    array = np.ones(nbytes // 8, dtype=np.float64)
    start = time.perf_counter()
    ref = rt.put(array)
    put_s = time.perf_counter() - start
    del array
    start = time.perf_counter()
    value = rt.get(ref)
    total = float(value.sum())  # reads every byte back
    get_s = time.perf_counter() - start
    assert total == nbytes // 8
    del value, ref
    return nbytes / put_s / 1e9, nbytes / get_s / 1e9


def larger_than_store(rt: Any, nbytes: int) -> float:
    import numpy as np

    array = np.arange(nbytes // 8, dtype=np.int64)
    start = time.perf_counter()
    ref = rt.put(array)
    value = rt.get(ref)
    ok = int(value[-1]) == nbytes // 8 - 1 and value.nbytes == array.nbytes
    elapsed = time.perf_counter() - start
    assert ok
    del value, ref
    return elapsed


def run_envelope(rt_name: str, sizes: Sizes, want: Any = None) -> dict[str, float]:
    """Run every envelope case on `rt_name` (``nbray`` or ``ray``); `want`
    filters by case name."""
    import importlib

    rt = importlib.import_module(rt_name)
    want = want or (lambda name: True)
    names = case_names(sizes)
    out: dict[str, float] = {}
    store_bytes = max(2 * sizes.put_bytes + GIB, sizes.get_objects * sizes.get_object_bytes * 2)
    if any(want(name) for name in names[:-1]):
        rt.init(num_cpus=2, object_store_memory=store_bytes)
        try:
            if any(want(name) for name in names if "queued" in name or "driver memory" in name):
                out.update(queued_tasks(rt, sizes.queued_tasks))
            name = f"envelope: {_count(sizes.returns)} returns from one task (s)"
            if want(name):
                out[name] = many_returns(rt, sizes.returns)
            name = f"envelope: {_count(sizes.get_objects)} store objects in one get (s)"
            if want(name):
                out[name] = many_objects_in_one_get(rt, sizes.get_objects, sizes.get_object_bytes)
            name = f"envelope: {_count(sizes.ref_args)} ref arguments to one task (s)"
            if want(name):
                out[name] = many_ref_args(rt, sizes.ref_args)
            put_name, get_name = names[-3], names[-2]
            if want(put_name) or want(get_name):
                out[put_name], out[get_name] = large_put(rt, sizes.put_bytes)
        finally:
            rt.shutdown()
    if want(names[-1]):
        rt.init(num_cpus=1, object_store_memory=sizes.small_store_bytes)
        try:
            out[names[-1]] = larger_than_store(rt, sizes.larger_than_store_bytes)
        except Exception as exc:  # a limit of the runtime measured, reported as such
            print(f"{names[-1]}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            out[names[-1]] = float("nan")
        finally:
            rt.shutdown()
    return {k: v for k, v in out.items() if want(k)}


def envelope_elsewhere(python: str, sizes: Sizes, only: list[str] | None) -> dict[str, float]:
    """The same cases on Ray, installed in another interpreter."""
    code = ("import json, sys\n"
            "from nbray.scripts.microbenchmark_envelope import Sizes, run_envelope, wanted\n"
            "sizes = Sizes(**json.loads(sys.argv[1]))\n"
            "print('RESULTS', json.dumps(run_envelope('ray', sizes, wanted(json.loads(sys.argv[2])))))\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([python, "-c", code, json.dumps(dataclasses.asdict(sizes)), json.dumps(only)],
                            capture_output=True, text=True, env=env, timeout=3600)
    for line in result.stdout.splitlines():
        if line.startswith("RESULTS "):
            return {k: float(v) for k, v in json.loads(line[len("RESULTS "):]).items()}
    raise RuntimeError(f"the Ray envelope failed under {python}: {result.stderr[-2000:]}")


def wanted(only: list[str] | None) -> Any:
    """A case-name filter from ``--only`` substrings (``envelope`` itself picks all)."""
    picks = [o.lower() for o in only or [] if o.lower() != "envelope"]
    return lambda name: not picks or any(p in name.lower() for p in picks)


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv
    print(json.dumps(run_envelope("nbray", SMOKE if smoke else Sizes()), indent=2))
