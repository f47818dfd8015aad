"""A joblib backend that runs ``Parallel`` calls on the cluster (Ray's ray.util.joblib).

::

    import joblib
    from nbray.util.joblib import register_nbray

    register_nbray()
    with joblib.parallel_backend("nbray"):          # or "ray"
        squares = joblib.Parallel(n_jobs=-1)(joblib.delayed(pow)(i, 2) for i in range(100))

Needs joblib: ``pip install "nbray[joblib]"``.
"""

from __future__ import annotations

try:
    import joblib
except ImportError as exc:
    raise ImportError('nbray.util.joblib needs joblib, which is not installed: pip install "nbray[joblib]"') \
        from exc

from nbray.util.joblib.backend import NbrayBackend


def register_nbray() -> None:
    """Register the backend with joblib under the names "nbray" and "ray"."""
    joblib.register_parallel_backend("nbray", NbrayBackend)
    joblib.register_parallel_backend("ray", NbrayBackend)


register_ray = register_nbray  # the name Ray programs call

__all__ = ["NbrayBackend", "register_nbray", "register_ray"]
