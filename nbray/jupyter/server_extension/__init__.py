"""nbray's Jupyter server extension: the cluster dashboard, relayed to JupyterLab.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/nbray.json``.
Settings (``jupyter_server_config.py`` or the command line)::

    c.NbrayExtension.address = "10.0.0.5:6379"        # GCS address; default: choose in the panel
    c.NbrayExtension.auth_token_path = "~/.nbray/token"  # token of that cluster (else NBRAY_AUTH_TOKEN)

Without an address the panel lists the clusters this server can see and
follows the newest one ("auto").

On a Ray 2.x cluster instead (``ray_dashboard.py``)::

    c.NbrayExtension.backend = "ray"                         # or NBRAY_PANEL_BACKEND=ray
    c.NbrayExtension.ray_dashboard_address = "http://10.0.0.5:8265"   # or RAY_DASHBOARD_ADDRESS
    c.NbrayExtension.ray_gcs_address = "10.0.0.5:6379"      # for Kill; or RAY_ADDRESS=HOST:PORT

with Ray's token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) when token
authentication is on.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Unicode, default
from traitlets.config import Configurable

# The handlers (and jupyter_server) are imported only when the extension is
# loaded, so `nbray._jupyter_labextension_paths` stays cheap to import.

LABEXTENSION_NAME = "nbray-labextension"


class NbrayExtension(Configurable):
    """Which cluster the JupyterLab panel shows."""

    address = Unicode("", config=True, help="GCS address (host:port) of the cluster to show; "
                                            "empty: choose among the visible clusters in the panel.")
    auth_token_path = Unicode("", config=True, help="File holding the token of the cluster at `address` "
                                                    "(default: NBRAY_AUTH_TOKEN / NBRAY_AUTH_TOKEN_PATH).")
    backend = Unicode(config=True, help='"nbray" (default) or "ray": the dashboard of a Ray 2.x cluster '
                                        "(default: NBRAY_PANEL_BACKEND).")
    ray_dashboard_address = Unicode("", config=True, help="http://HOST:PORT of the Ray dashboard "
                                                          "(default: RAY_DASHBOARD_ADDRESS, or RAY_ADDRESS if a URL).")
    ray_gcs_address = Unicode("", config=True, help="HOST:PORT of the Ray GCS, used to kill actors "
                                                    "(default: RAY_ADDRESS, or the dashboard host at 6379).")
    ray_auth_token_path = Unicode("", config=True, help="File holding Ray's auth token "
                                                        "(default: RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH).")

    @default("backend")
    def _default_backend(self) -> str:
        return os.environ.get("NBRAY_PANEL_BACKEND", "nbray")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbray.jupyter.server_extension"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension; ``src`` is relative to the ``nbray`` package directory.

    Jupyter looks this hook up on the top-level package (``nbray``), which re-exports it.
    """
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    settings = NbrayExtension(config=server_app.config)
    if settings.backend == "ray":
        _load_ray_backend(server_app, settings)
        return
    if settings.backend != "nbray":
        raise ValueError(f'c.NbrayExtension.backend must be "nbray" or "ray", not {settings.backend!r}')
    from nbray.jupyter.server_extension.clusters import ClusterManager
    from nbray.jupyter.server_extension.handlers import setup_handlers

    manager = ClusterManager(settings.address, settings.auth_token_path)
    from jupyter_server.utils import url_path_join

    from nbray.jupyter.server_extension import jobs

    setup_handlers(server_app.web_app, manager)
    web_app = server_app.web_app
    web_app.add_handlers(".*$", jobs.routes(url_path_join(web_app.settings["base_url"], "nbray")))
    server_app.log.info("nbray: JupyterLab panel API at %snbray/", server_app.web_app.settings["base_url"])


def _load_ray_backend(server_app: Any, settings: NbrayExtension) -> None:
    from nbray.jupyter.server_extension.ray_dashboard import RayDashboard, resolve_settings, setup_ray_handlers

    ray = resolve_settings(settings.ray_dashboard_address, settings.ray_gcs_address, settings.ray_auth_token_path)
    setup_ray_handlers(server_app.web_app, RayDashboard(ray))
    server_app.log.info("nbray: JupyterLab panel API at %snbray/, showing the Ray cluster at %s",
                        server_app.web_app.settings["base_url"], ray.dashboard_url)


# Older Jupyter servers look for this name.
load_jupyter_server_extension = _load_jupyter_server_extension
