"""nbray's Jupyter server extension: the cluster dashboard, relayed to JupyterLab.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/nbray.json``.
Settings (``jupyter_server_config.py`` or the command line)::

    c.NbrayExtension.address = "10.0.0.5:6379"        # GCS address; default: choose in the panel
    c.NbrayExtension.auth_token_path = "~/.nbray/token"  # token of that cluster (else NBRAY_AUTH_TOKEN)

Without an address the panel lists the clusters this server can see and
follows the newest one ("auto").
"""

from __future__ import annotations

from typing import Any

from traitlets import Unicode
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


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbray.jupyter.server_extension"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension; ``src`` is relative to the ``nbray`` package directory.

    Jupyter looks this hook up on the top-level package (``nbray``), which re-exports it.
    """
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from nbray.jupyter.server_extension.clusters import ClusterManager
    from nbray.jupyter.server_extension.handlers import setup_handlers

    settings = NbrayExtension(config=server_app.config)
    manager = ClusterManager(settings.address, settings.auth_token_path)
    from jupyter_server.utils import url_path_join

    from nbray.jupyter.server_extension import jobs

    setup_handlers(server_app.web_app, manager)
    web_app = server_app.web_app
    web_app.add_handlers(".*$", jobs.routes(url_path_join(web_app.settings["base_url"], "nbray")))
    server_app.log.info("nbray: JupyterLab panel API at %snbray/", server_app.web_app.settings["base_url"])


# Older Jupyter servers look for this name.
load_jupyter_server_extension = _load_jupyter_server_extension
