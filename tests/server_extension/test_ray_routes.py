"""The extension set to Ray, against a Ray dashboard address where nothing listens
(the routes on a real Ray head are in tests/raybackend/test_panel_on_ray.py)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from traitlets.config import Config

from tests.server_extension.conftest import EXTENSION

ACTOR = "9d65616fc1c5955ba2c3fb0202000000"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = closed_port()


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {EXTENSION: True}},
                   "NbrayExtension": {"backend": "ray", "ray_dashboard_address": f"http://127.0.0.1:{PORT}",
                                      "ray_gcs_address": f"127.0.0.1:{PORT}"}})


async def test_an_unreachable_ray_dashboard_is_named(jp_fetch: Any) -> None:
    for route in ("nodes", "tasks", "actors", "cluster", "objects", "jobs"):
        reply = await jp_fetch("nbray", "api", route, raise_error=False)
        assert reply.code == 503, route
        assert f"127.0.0.1:{PORT}" in json.loads(reply.body)["error"]
    status = json.loads((await jp_fetch("nbray", "clusters")).body)
    assert status["backend"] == "ray" and status["connected"] is None and str(PORT) in status["error"]


async def test_ray_routes_need_the_jupyter_token_and_valid_input(jp_fetch: Any) -> None:
    reply = await jp_fetch("nbray", "api", "nodes", headers={"Authorization": ""}, raise_error=False)
    assert reply.code == 403
    reply = await jp_fetch("nbray", "api", "actors", ACTOR, "kill", method="POST", body=b"",
                           headers={"Authorization": ""}, raise_error=False)
    assert reply.code == 403
    reply = await jp_fetch("nbray", "api", "tasks", params={"bogus": "1"}, raise_error=False)
    assert reply.code == 400
    reply = await jp_fetch("nbray", "api", "actors", ACTOR, "kill", method="POST", body=b"", raise_error=False)
    assert reply.code == 503 and f"127.0.0.1:{PORT}" in json.loads(reply.body)["error"]
