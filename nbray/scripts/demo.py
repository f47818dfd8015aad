"""``nbray demo``: a small task and actor program on a local cluster."""

from __future__ import annotations

import time

import nbray


@nbray.remote
def estimate_pi(samples: int, seed: int) -> float:
    import random

    rng = random.Random(seed)
    inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    return 4.0 * inside / samples


@nbray.remote
class Accumulator:
    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> int:
        self.values.append(value)
        return len(self.values)

    def mean(self) -> float:
        return sum(self.values) / len(self.values)


@nbray.remote
def fib(n: int) -> int:
    if n < 2:
        return n
    return sum(nbray.get([fib.remote(n - 1), fib.remote(n - 2)]))


def run_demo() -> int:
    started = time.perf_counter()
    ctx = nbray.init()
    print(f"Started a local cluster: {ctx}")
    estimates = [estimate_pi.remote(100_000, seed) for seed in range(8)]
    acc = Accumulator.remote()  # type: ignore[attr-defined]  # (class decorators hide .remote from mypy)
    counts = [acc.add.remote(e) for e in estimates]  # object refs passed straight to the actor
    print(f"Accumulated {nbray.get(counts)[-1]} estimates; mean pi = {nbray.get(acc.mean.remote()):.4f}")
    data = nbray.put(list(range(1000)))
    print(f"Sum of a shared list, computed remotely: {nbray.get(_total.remote(data))}")
    print(f"fib(10) computed with nested tasks: {nbray.get(fib.remote(10))}")
    nbray.shutdown()
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


@nbray.remote
def _total(values: list[int]) -> int:
    return sum(values)


if __name__ == "__main__":
    raise SystemExit(run_demo())
