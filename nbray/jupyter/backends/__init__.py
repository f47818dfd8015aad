"""Which cluster runtime the notebook layer talks to.

Runs in the notebook kernel. ``current()`` is the nbray runtime unless
``%nbray init --backend ray ...`` (or ``use(make("ray"))``) chose Ray; the
interface is ``base.NotebookBackend``.
"""

from __future__ import annotations

from nbray.jupyter.backends.base import BackendUnavailable, CellOutcome, NodeInfo, NotebookBackend

__all__ = ["BACKEND_NAMES", "BackendUnavailable", "CellOutcome", "NodeInfo", "NotebookBackend", "current", "make",
           "use"]

BACKEND_NAMES = ("nbray", "ray")
_current: list[NotebookBackend | None] = [None]


def current() -> NotebookBackend:
    """The chosen backend (the nbray runtime until another is chosen)."""
    backend = _current[0]
    if backend is None:
        from nbray.jupyter.backends.nbray_runtime import NbrayRuntimeBackend

        backend = _current[0] = NbrayRuntimeBackend()
    return backend


def make(name: str) -> NotebookBackend:
    """A new backend by name. Raises ValueError for an unknown name and
    BackendUnavailable when its runtime is missing or too old."""
    if name == "nbray":
        from nbray.jupyter.backends.nbray_runtime import NbrayRuntimeBackend

        return NbrayRuntimeBackend()
    if name == "ray":
        from nbray.jupyter.backends.ray_backend import RayBackend

        return RayBackend()
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")


def use(backend: NotebookBackend) -> None:
    """Make `backend` the one the notebook layer uses from now on."""
    _current[0] = backend
