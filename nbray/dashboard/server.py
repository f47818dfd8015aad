"""The dashboard process: JSON API and event stream over HTTP (head node).

Started by ``nbray.node.launcher`` (``nbray start --head``, or
``nbray.init(include_dashboard=True)``) and by the Jupyter server
extension for clusters started without one:

    python -m nbray.dashboard --host H --port P --gcs-address A --session-dir S
                              --config-json J --ready-fd FD [--parent-pid PID]

The cluster token arrives in ``NBRAY_AUTH_TOKEN`` and is removed from the
environment at once. Once listening, the process writes ``{"url": ...}``
to the ready fd, and records the URL in the GCS key-value store
(namespace ``dashboard``, key ``url``) so tools that only know the GCS
address can find it. It exits with its parent, on SIGTERM, or when the
GCS stays unreachable.

With TLS on (``NBRAY_USE_TLS=1``) it serves HTTPS with the cluster's
certificate (``https://`` URLs; a plaintext request is closed during the
TLS handshake). Listening off-host without TLS follows the same policy as
every other port (``nbray.rpc.tls.check_bind``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from nbray.common.config import Config, set_config
from nbray.dashboard.events import EventHub
from nbray.dashboard.handlers import ApiContext, NotFoundHandler, routes
from nbray.dashboard.job_manager import JobManager
from nbray.dashboard.jobs import routes as job_routes
from nbray.dashboard.source import ClusterModel, ClusterSource
from nbray.dashboard.utilization import UtilizationSampler
from nbray.dashboard.utilization import routes as utilization_routes
from nbray.protocol import gcs_pb2
from nbray.rpc import auth, tls

logger = logging.getLogger(__name__)

KV_NAMESPACE = "dashboard"
KV_URL_KEY = b"url"


def make_app(ctx: ApiContext, jobs: JobManager | None = None,
             utilization: UtilizationSampler | None = None) -> tornado.web.Application:
    table = routes(ctx) + (job_routes(ctx, jobs) if jobs is not None else [])
    table += utilization_routes(ctx, utilization) if utilization is not None else []
    return tornado.web.Application(
        table, default_handler_class=NotFoundHandler, default_handler_args={"ctx": ctx},
        compress_response=False, serve_traceback=False, xsrf_cookies=False, log_function=log_request)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line, without the query string: a token pasted into a URL must not reach a log."""
    status = handler.get_status()
    log = logger.info if status < 400 else logger.warning if status < 500 else logger.error
    request = handler.request
    log("%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip,
        1000 * request.request_time())


def public_url(host: str, port: int, gcs_address: str, scheme: str = "http") -> str:
    if host in ("", "0.0.0.0", "::"):
        host = gcs_address.rsplit(":", 1)[0]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class Dashboard:
    def __init__(self, host: str, port: int, gcs_address: str, token: bytes, config: Config,
                 session_dir: str) -> None:
        self.host = host
        self.port = port
        self.gcs_address = gcs_address
        self.config = config
        self.model = ClusterModel(config)
        self.hub = EventHub(config.dashboard_sse_replay_events, config.dashboard_sse_max_queued,
                            config.dashboard_sse_flush_interval_ms / 1000, config.dashboard_sse_max_tasks_per_event)
        self.source = ClusterSource(gcs_address, token, config, self.model, self.hub)
        self.info: dict[str, Any] = {"gcs_address": gcs_address, "session_dir": session_dir,
                                     "session_name": os.path.basename(session_dir.rstrip("/"))}
        self.ctx = ApiContext(token, self.source, self.hub, config, self.info, bind_host=host)
        self.jobs = JobManager(self.source, token, session_dir)
        self.utilization = UtilizationSampler(self.model.node_rows, config, lambda: int(time.time() * 1000))
        self.url = ""
        self._server: tornado.httpserver.HTTPServer | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> str:
        await self.source.start()
        self.source.on_gone = self.stop
        tls.check_bind(self.host)
        ssl_context = tls.public_server_context()
        sockets = tornado.netutil.bind_sockets(self.port, address=self.host, family=socket.AF_UNSPEC)
        self._server = tornado.httpserver.HTTPServer(
            make_app(self.ctx, self.jobs, self.utilization), max_body_size=self.config.dashboard_max_body_bytes,
            idle_connection_timeout=60, body_timeout=10, ssl_options=ssl_context)
        self._server.add_sockets(sockets)
        self.utilization.start()
        port = sockets[0].getsockname()[1]
        self.url = public_url(self.host, port, self.gcs_address, "https" if ssl_context is not None else "http")
        self.info["dashboard_url"] = self.url
        await self.source.gcs_call("KVPut", gcs_pb2.KVPutRequest(ns=KV_NAMESPACE, key=KV_URL_KEY,
                                                                  value=self.url.encode(), overwrite=True))
        logger.info("dashboard listening on %s", self.url)
        return self.url

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        if self._server is not None:
            self._server.stop()
        self.hub.close()
        self.jobs.close()
        self.utilization.stop()
        self.source.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _run(args: argparse.Namespace, token: bytes) -> None:
    config = Config.from_json(args.config_json)
    set_config(config)
    dashboard = Dashboard(args.host, args.port, args.gcs_address, token, config, args.session_dir)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, dashboard.stop)
    loop.add_signal_handler(signal.SIGINT, dashboard.stop)
    if args.parent_pid:
        try:
            pidfd = os.pidfd_open(args.parent_pid)
        except OSError:
            return  # the parent is already gone
        loop.add_reader(pidfd, dashboard.stop)
    try:
        url = await dashboard.start()
    except Exception as exc:
        _report_ready(args.ready_fd, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    _report_ready(args.ready_fd, {"url": url, "pid": os.getpid()})
    await dashboard.wait_stopped()
    # Let in-flight responses finish writing before the loop ends.
    await asyncio.sleep(0.05)


def _report_ready(fd: int, info: dict[str, Any]) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nbray-dashboard")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", default="")
    parser.add_argument("--config-json", default="")
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s dashboard: %(message)s")
    text = os.environ.pop(auth.TOKEN_ENV, "")
    if not text:
        _report_ready(args.ready_fd, {"error": f"{auth.TOKEN_ENV} is not set"})
        raise SystemExit(f"{auth.TOKEN_ENV} is not set")
    token = auth.decode_token(text, auth.TOKEN_ENV)
    asyncio.run(_run(args, token))
