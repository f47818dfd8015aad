"""A Jupyter server (main venv) with the panel's extension set to a Ray head, for the
Ray panel tests; requests carry the Jupyter token."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from nbray.testing import wait_for_condition
from tests.raybackend.ray_cluster import RayHead, free_port

JUPYTER_TOKEN = "nbray-ray-panel-test"
SERVER_START_TIMEOUT_S = 60


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, route: str) -> tuple[int, Any]:
        req = urllib.request.Request(f"{self.url}/nbray/{route}", method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {JUPYTER_TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, route: str) -> Any:
        status, body = self.request("GET", route)
        assert status == 200, (route, status, body)
        return body

    def post(self, route: str) -> Any:
        status, body = self.request("POST", route)
        assert status == 200, (route, status, body)
        return body


class JupyterProcess:
    """A started Jupyter server process; ``wait_up`` waits until it answers."""

    def __init__(self, head: RayHead, tmp: pathlib.Path, ray_token: str | None) -> None:
        """``ray_token`` is the server's ``RAY_AUTH_TOKEN`` (None: not set)."""
        for sub in ("config", "runtime", "root"):
            (tmp / sub).mkdir()
        (tmp / "config" / "jupyter_server_config.py").write_text(
            "c.ServerApp.jpserver_extensions = {'nbray.jupyter.server_extension': True}\n"
            "c.NbrayExtension.backend = 'ray'\n")
        port = free_port()
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "RAY_DASHBOARD_ADDRESS": f"http://127.0.0.1:{head.dashboard_port}", "RAY_ADDRESS": head.address}
        for name in ("NBRAY_PANEL_BACKEND", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(name, None)
        if ray_token is not None:
            env["RAY_AUTH_TOKEN"] = ray_token
        self.log_path = tmp / "server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                 "--allow-root", f"--IdentityProvider.token={JUPYTER_TOKEN}", f"--ServerApp.root_dir={tmp / 'root'}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.server = Server(f"http://127.0.0.1:{port}")

    def wait_up(self) -> Server:
        def up() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()
            with urllib.request.urlopen(f"{self.server.url}/api/status?token={JUPYTER_TOKEN}", timeout=2) as r:
                return r.status == 200

        wait_for_condition(up, timeout=SERVER_START_TIMEOUT_S, retry_interval_ms=200,
                           message="the Jupyter server started")
        return self.server

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@contextlib.contextmanager
def jupyter_servers(head: RayHead, tmp: pathlib.Path, ray_tokens: list[str | None]) -> Iterator[list[Server]]:
    """Servers on ``head``, one per entry of ``ray_tokens``, started side by side."""
    started: list[JupyterProcess] = []
    try:
        for i, token in enumerate(ray_tokens):
            (tmp / str(i)).mkdir()
            started.append(JupyterProcess(head, tmp / str(i), token))
        yield [p.wait_up() for p in started]
    finally:
        for p in started:
            p.stop()
