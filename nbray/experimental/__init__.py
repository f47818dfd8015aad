"""Experimental APIs with Ray's names: ``nbray.experimental.tqdm_ray``.

::

    from nbray.experimental.tqdm_ray import tqdm

    @nbray.remote
    def work(n):
        for _ in tqdm(range(n), desc="work"):   # the driver draws the bar
            ...
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["tqdm_ray"]


def __getattr__(name: str) -> Any:
    # loaded on first use: the runtime imports this package for the bar display
    if name == "tqdm_ray":
        return importlib.import_module("nbray.experimental.tqdm_ray")
    raise AttributeError(f"module 'nbray.experimental' has no attribute {name!r}")
