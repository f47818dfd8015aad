"""The dashboard: a JSON API and live event stream about the cluster (head node).

``server`` runs the process, ``source`` reads the GCS and raylets,
``tasks`` and ``nodes`` hold the model, ``events`` streams changes,
``handlers`` are the HTTP routes and ``security`` the checks every
request passes first. The Jupyter server extension
(``nbray.jupyter.server_extension``) relays this API to JupyterLab.
"""
