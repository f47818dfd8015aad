"""What ``nbray.init()`` returns: the connection and how to show it."""

from __future__ import annotations

import sys
from typing import Any

from nbray._version import __version__


class RayContext:
    """Address and facts of the cluster a driver is connected to.

    Usable as a context manager (``with nbray.init(): ...`` shuts down on
    exit). Shows as a table in notebooks.
    """

    def __init__(self, core: Any, node: Any = None) -> None:
        self._core = core
        self.dashboard_url = getattr(node, "extra", {}).get("dashboard_url", "") if node is not None else ""
        self.python_version = "{}.{}.{}".format(*sys.version_info[:3])
        self.ray_version = __version__
        self.nbray_version = __version__
        self.ray_commit = ""
        self.address_info = {
            "node_ip_address": core.node_ip,
            "gcs_address": core.gcs_address,
            "address": core.gcs_address,
            "session_dir": core.session_dir,
            "node_id": core.node_id.hex(),
            "webui_url": self.dashboard_url,
        }

    @property
    def address(self) -> str:
        return str(self._core.gcs_address)

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.address_info.get(key, default)

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        from nbray.api import shutdown

        shutdown()

    def disconnect(self) -> None:
        from nbray.api import shutdown

        shutdown()

    def _summary(self) -> dict[str, Any]:
        from nbray.api import cluster_resources, nodes

        try:
            resources = cluster_resources()
            alive = sum(1 for n in nodes() if n["Alive"])
        except Exception:
            resources, alive = {}, 0
        return {
            "Python version": self.python_version,
            "nbray version": self.nbray_version,
            "Address": self.address,
            "Nodes": alive,
            "CPUs": resources.get("CPU", 0),
            "GPUs": resources.get("GPU", 0),
            "Dashboard": self.dashboard_url or "",
        }

    def __repr__(self) -> str:
        info = self._summary()
        return "RayContext(" + ", ".join(f"{k}={v!r}" for k, v in info.items() if v != "") + ")"

    def _repr_html_(self) -> str:
        from nbray.jupyter.reprs import context_html

        return context_html(self._summary())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from nbray.jupyter.reprs import context_mimebundle

        return context_mimebundle(self, include, exclude)
