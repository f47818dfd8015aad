"""The nbray Jupyter server extension: every route, Jupyter's auth and XSRF, the relay."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import tornado.httpclient

import nbray
from nbray.testing import Cluster
from tests.server_extension.conftest import eventually

pytestmark = pytest.mark.timeout(120)

GET_ROUTES = ["clusters", "api/cluster", "api/nodes", "api/tasks", "api/actors", "api/objects", "api/jobs"]
FAKE_TASK = "ab" * 24
FAKE_ACTOR = "cd" * 16
POST_ROUTES = ["clusters/select", f"api/tasks/{FAKE_TASK}/cancel", f"api/actors/{FAKE_ACTOR}/kill"]


def run_workload(address: str) -> dict[str, Any]:
    """Driver side (blocking): a chain of tasks, a failed task, an actor."""
    nbray.init(address=address)

    @nbray.remote
    def double(x: int) -> int:
        return 2 * x

    @nbray.remote
    def fails() -> None:
        raise RuntimeError("relay me this traceback")

    @nbray.remote
    class Box:
        def get(self) -> int:
            return 7

    assert nbray.get(double.remote(double.remote(1))) == 4
    with pytest.raises(RuntimeError):
        nbray.get(fails.remote())
    box = Box.remote()
    assert nbray.get(box.get.remote()) == 7
    return {"box": box, "blob": nbray.put(b"x" * 300_000)}


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def get_json(jp_fetch: Any, *parts: str, **kw: Any) -> Any:
    reply = await jp_fetch("nbray", *parts, **kw)
    return json.loads(reply.body)


@pytest.fixture
def driver() -> Any:
    yield
    if nbray.is_initialized():
        nbray.shutdown()


async def test_every_route_relays_the_cluster(jp_fetch: Any, start_cluster: Callable[..., Cluster], driver: Any) -> None:
    cluster = start_cluster(include_dashboard=True, dashboard_port=0)
    held = await in_thread(run_workload, cluster.address)
    token_hex = cluster.head.token.hex()  # type: ignore[union-attr]

    status = await get_json(jp_fetch, "clusters")
    assert status["selection"] == "auto" and status["connected"]["id"] == cluster.address
    assert status["dashboard"] == "the cluster's"
    assert [c["gcs_address"] for c in status["clusters"]] == [cluster.address]
    assert status["clusters"][0]["has_token"] is True

    summary = await get_json(jp_fetch, "api", "cluster")
    assert summary["gcs_address"] == cluster.address and summary["nodes"]["alive"] == 1
    nodes = (await get_json(jp_fetch, "api", "nodes"))["nodes"]
    assert nodes[0]["object_store"]["capacity_bytes"] == 80 * 1024 * 1024

    async def failed_row() -> Any:
        rows = (await get_json(jp_fetch, "api", "tasks", params={"state": "FAILED"}))["tasks"]
        return rows[0] if rows and rows[0]["node_id"] else None

    failed = await eventually(failed_row)
    detail = await get_json(jp_fetch, "api", "tasks", failed["task_id"])
    assert "RuntimeError: relay me this traceback" in detail["error_traceback"]

    async def doubles() -> Any:
        rows = (await get_json(jp_fetch, "api", "tasks", params={"limit": "100"}))["tasks"]
        found = [t for t in rows if t["name"] == "double" and t["node_id"]]
        return found if len(found) == 2 else None

    first, second = await eventually(doubles)
    assert second["arg_object_ids"] == first["return_object_ids"]
    actors = (await get_json(jp_fetch, "api", "actors"))["actors"]
    assert [a["class_name"] for a in actors] == ["Box"]
    objects = await get_json(jp_fetch, "api", "objects")
    assert objects["objects"][0]["object_id"] == held["blob"].hex()
    assert objects["objects"][0]["size_bytes"] >= 300_000
    jobs = (await get_json(jp_fetch, "api", "jobs"))["jobs"]
    assert len(jobs) == 1

    # Actions go through the relay (token-authenticated requests need no XSRF token).
    killed = await get_json(jp_fetch, "api", "actors", actors[0]["actor_id"], "kill", method="POST", body=b"")
    assert killed == {"actor_id": actors[0]["actor_id"], "killed": True}
    cancel = await get_json(jp_fetch, "api", "tasks", failed["task_id"], "cancel", method="POST", body=b"")
    assert cancel["found"] is False and cancel["state"] == "FAILED"

    # The cluster token never reaches the browser.
    for parts in (["clusters"], ["api", "cluster"], ["api", "tasks"], ["api", "objects"]):
        body = (await jp_fetch("nbray", *parts)).body.decode()
        assert token_hex not in body


@pytest.mark.parametrize("route", GET_ROUTES + [f"api/tasks/{FAKE_TASK}", "events"])
async def test_unauthenticated_get_is_refused(jp_fetch: Any, route: str) -> None:
    reply = await jp_fetch("nbray", *route.split("/"), headers={"Authorization": ""}, raise_error=False)
    assert reply.code == 403
    reply = await jp_fetch("nbray", *route.split("/"), headers={"Authorization": "token wrong"}, raise_error=False)
    assert reply.code == 403


@pytest.mark.parametrize("route", POST_ROUTES)
async def test_unauthenticated_post_is_refused(jp_fetch: Any, route: str) -> None:
    reply = await jp_fetch("nbray", *route.split("/"), method="POST", body=b'{"cluster": "auto"}',
                           headers={"Authorization": ""}, raise_error=False)
    assert reply.code == 403


async def login_cookies(jp_fetch: Any) -> str:
    """The cookies a browser holds after logging in with the token."""
    reply = await jp_fetch("api", "status")
    cookies = [c.split(";", 1)[0] for c in reply.headers.get_list("Set-Cookie")]
    assert any(c.startswith("username-") for c in cookies), cookies
    return "; ".join(cookies)


def xsrf_token() -> str:
    """A well-formed XSRF token (tornado's version 2: mask|masked token|time)."""
    from tornado.util import _websocket_mask

    mask, token = os.urandom(4), os.urandom(16)
    return f"2|{mask.hex()}|{_websocket_mask(mask, token).hex()}|{int(time.time())}"


@pytest.mark.parametrize("route", POST_ROUTES)
async def test_cookie_posts_need_the_xsrf_token(jp_fetch: Any, start_cluster: Callable[..., Cluster],
                                                route: str) -> None:
    start_cluster(include_dashboard=True, dashboard_port=0)
    cookies = await login_cookies(jp_fetch)
    body = b'{"cluster": "auto"}'
    good, other = xsrf_token(), xsrf_token()
    no_xsrf = await jp_fetch("nbray", *route.split("/"), method="POST", body=body, raise_error=False,
                             headers={"Authorization": "", "Cookie": cookies})
    assert no_xsrf.code == 403
    wrong = await jp_fetch("nbray", *route.split("/"), method="POST", body=body, raise_error=False,
                           headers={"Authorization": "", "Cookie": f"{cookies}; _xsrf={good}", "X-XSRFToken": other})
    assert wrong.code == 403
    # With the cookie login and a matching XSRF token the request gets through to the extension.
    ok = await jp_fetch("nbray", *route.split("/"), method="POST", body=body, raise_error=False,
                        headers={"Authorization": "", "Cookie": f"{cookies}; _xsrf={good}", "X-XSRFToken": good})
    assert ok.code != 403, ok.body


async def test_bad_parameters_and_paths_are_refused(jp_fetch: Any, start_cluster: Callable[..., Cluster]) -> None:
    start_cluster(include_dashboard=True, dashboard_port=0)
    for params in ({"url": "http://169.254.169.254/"}, {"state": "SLEEPING"}, {"limit": "0"}, {"job_id": "zz"}):
        reply = await jp_fetch("nbray", "api", "tasks", params=params, raise_error=False)
        assert reply.code == 400, params
    for parts in (("api", "tasks", "not-an-id"), ("api", "proxy"), ("api", "tasks", FAKE_TASK[:-2]),
                  ("api", "..", "..", "api", "status")):
        reply = await jp_fetch("nbray", *parts, raise_error=False)
        assert reply.code == 404, parts
    for body in (b"not json", b'{"cluster": 5}', b"{}"):
        reply = await jp_fetch("nbray", "clusters", "select", method="POST", body=body, raise_error=False)
        assert reply.code == 400
    reply = await jp_fetch("nbray", "clusters", "select", method="POST", body=b'{"cluster": "10.9.9.9:1"}',
                           raise_error=False)
    assert reply.code == 404
    # JupyterLab's cache buster (a bare number) is tolerated.
    reply = await jp_fetch("nbray", "api", "cluster", params={"1795327950176": ""}, raise_error=False)
    assert reply.code == 200


async def test_without_a_cluster_it_says_so(jp_fetch: Any, cluster_root: str) -> None:
    status = await get_json(jp_fetch, "clusters")
    assert status["connected"] is None and status["clusters"] == []
    assert "no nbray cluster found" in status["error"]
    reply = await jp_fetch("nbray", "api", "cluster", raise_error=False)
    assert reply.code == 503 and b"no nbray cluster found" in reply.body


class StopStream(Exception):
    pass


async def read_events(jp_fetch: Any, until: Callable[[list[tuple[str, Any]]], bool], timeout: float = 30,
                      on_event: Callable[[str, Any], None] | None = None) -> list[tuple[str, Any]]:
    """Read nbray/events until `until(events)` holds."""
    events: list[tuple[str, Any]] = []
    buf = [b""]

    def on_chunk(chunk: bytes) -> None:
        buf[0] += chunk
        while b"\n\n" in buf[0]:
            block, buf[0] = buf[0].split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
                if on_event is not None:
                    on_event(*events[-1])
        if until(events):
            raise StopStream()

    try:
        await jp_fetch("nbray", "events", streaming_callback=on_chunk, request_timeout=timeout)
    except (StopStream, tornado.httpclient.HTTPClientError):
        pass
    assert until(events), [e for e, _ in events]
    return events


async def test_event_stream_is_relayed(jp_fetch: Any, start_cluster: Callable[..., Cluster], driver: Any) -> None:
    cluster = start_cluster(include_dashboard=True, dashboard_port=0)
    await in_thread(nbray.init, cluster.address)

    @nbray.remote
    def tick() -> str:
        return "tock"

    submitted: list[Any] = []

    def on_event(event: str, data: Any) -> None:
        if event == "hello" and not submitted:
            submitted.append(tick.remote())

    def done(events: list[tuple[str, Any]]) -> bool:
        return any(e == "tasks" and any(t["name"] == "tick" and t["state"] == "FINISHED" for t in d["tasks"])
                   for e, d in events)

    events = await read_events(jp_fetch, done, on_event=on_event)
    assert events[0] == ("relay", {"connected": True, "cluster": cluster.address})
    assert events[1][0] == "hello" and events[1][1]["gcs_address"] == cluster.address
    assert await in_thread(nbray.get, submitted[0]) == "tock"


async def test_a_cluster_without_a_dashboard_gets_one(jp_fetch: Any, start_cluster: Callable[..., Cluster],
                                                      jp_serverapp: Any) -> None:
    """Like nbray.init() in a kernel: no dashboard; the extension starts one that follows the cluster."""
    cluster = start_cluster()
    status = await get_json(jp_fetch, "clusters")
    assert status["connected"]["id"] == cluster.address
    assert status["dashboard"] == "started by the Jupyter server"
    summary = await get_json(jp_fetch, "api", "cluster")
    assert summary["gcs_address"] == cluster.address
    manager = jp_serverapp.web_app.settings["nbray_clusters"]
    proc = manager._spawned[cluster.address].proc
    assert proc.poll() is None
    await in_thread(cluster.shutdown)
    await eventually(lambda: proc.poll() is not None, timeout=15)


async def test_the_panel_follows_a_cluster_restart(jp_fetch: Any, start_cluster: Callable[..., Cluster]) -> None:
    first = start_cluster(include_dashboard=True, dashboard_port=0)
    assert (await get_json(jp_fetch, "api", "cluster"))["gcs_address"] == first.address
    restarted: list[Cluster] = []
    state = {"phase": "first"}

    def on_event(event: str, data: Any) -> None:
        if state["phase"] == "first" and event == "hello":
            state["phase"] = "stopping"
            first.shutdown()
        elif state["phase"] == "stopping" and event == "relay" and not data["connected"]:
            state["phase"] = "second"
            restarted.append(start_cluster(include_dashboard=True, dashboard_port=0))

    def reconnected(events: list[tuple[str, Any]]) -> bool:
        return bool(restarted) and any(e == "hello" and d["gcs_address"] == restarted[0].address for e, d in events)

    events = await read_events(jp_fetch, reconnected, timeout=60, on_event=on_event)
    kinds = [e for e, _ in events]
    assert kinds.index("hello") < kinds.index("relay", 1)
    assert (await get_json(jp_fetch, "api", "cluster"))["gcs_address"] == restarted[0].address


async def test_choosing_a_cluster(jp_fetch: Any, start_cluster: Callable[..., Cluster]) -> None:
    older = start_cluster(include_dashboard=True, dashboard_port=0)
    newer = start_cluster(include_dashboard=True, dashboard_port=0)
    status = await get_json(jp_fetch, "clusters")
    assert {c["id"] for c in status["clusters"]} == {older.address, newer.address}
    assert status["connected"]["id"] == newer.address  # auto: the newest
    status = await get_json(jp_fetch, "clusters", "select", method="POST",
                            body=json.dumps({"cluster": older.address}).encode())
    assert status["selection"] == older.address and status["connected"]["id"] == older.address
    assert (await get_json(jp_fetch, "api", "cluster"))["gcs_address"] == older.address
    status = await get_json(jp_fetch, "clusters", "select", method="POST", body=b'{"cluster": "auto"}')
    assert status["connected"]["id"] == newer.address


async def test_nbray_address_is_preferred(jp_fetch: Any, start_cluster: Callable[..., Cluster],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    older = start_cluster(include_dashboard=True, dashboard_port=0)
    start_cluster(include_dashboard=True, dashboard_port=0)
    monkeypatch.setenv("NBRAY_ADDRESS", older.address)
    status = await get_json(jp_fetch, "clusters")
    assert status["clusters"][0]["origin"] == "NBRAY_ADDRESS"
    assert status["connected"]["id"] == older.address
