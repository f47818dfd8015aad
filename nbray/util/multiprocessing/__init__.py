"""A drop-in for ``multiprocessing.Pool`` whose workers are actors on the cluster.

::

    from nbray.util.multiprocessing import Pool

    with Pool() as pool:                  # one worker per CPU of the cluster
        print(pool.map(square, range(100)))

Ray programs import it as ``ray.util.multiprocessing``.
"""

from __future__ import annotations

from multiprocessing import TimeoutError

from nbray.util.multiprocessing.pool import Pool
from nbray.util.multiprocessing.results import AsyncResult, IMapIterator, RemoteTraceback

__all__ = ["AsyncResult", "IMapIterator", "Pool", "RemoteTraceback", "TimeoutError"]
