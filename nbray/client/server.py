"""The client server: where notebook clients (``nbray://HOST:10001``) connect.

``nbray start --head`` runs it on the head node. It authenticates each
connection (cluster token, then nbray and Python versions), reads the
client's Connect request and hands the socket, over a Unix socket with
SCM_RIGHTS, to that client's session process: a new one for a new client,
the existing one when a client resumes after a dropped connection. One
port serves every client, and each client's work runs in its own process
(a crash or a runaway cell affects only that client).

With TLS on (``NBRAY_USE_TLS=1``) clients connect over TLS, verifying this
server's certificate and presenting none (the token authenticates them). A
TLS connection cannot change process, so this server keeps it and relays
plaintext to the session over a Unix socket pair (``tls_relay``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from nbray.client.tls_relay import TlsRelay
from nbray.common.config import Config, start_daemon
from nbray.protocol import client_pb2, method
from nbray.rpc import tls
from nbray.rpc.connection import Connection, Dispatcher
from nbray.rpc.eventloop import EventLoop
from nbray.rpc.handshake import Listener, bind_listener
from nbray.rpc.tls_socket import TlsSocket

logger = logging.getLogger("nbray.client.server")

_CONNECT = method("ClientService.Connect")


class _SessionProcess:
    def __init__(self, session_id: bytes, proc: subprocess.Popen[bytes], control: socket.socket,
                 pidfd: int) -> None:
        self.session_id = session_id
        self.proc = proc
        self.control = control
        self.pidfd = pidfd
        self.alive = True

    def hand_over(self, sock: socket.socket, request: client_pb2.ClientConnectRequest, rid: int,
                  unread: bytes) -> None:
        msg = json.dumps({"request": request.SerializeToString().hex(), "rid": rid, "unread": unread.hex()})
        socket.send_fds(self.control, [msg.encode()], [sock.fileno()])


class ClientServer:
    def __init__(self, host: str, port: int, gcs_address: str, session_dir: str, config: Config,
                 token: bytes) -> None:
        self.gcs_address = gcs_address
        self.session_dir = session_dir
        self.config = config
        self.token = token
        self.loop = EventLoop("nbray-client-server")
        self.dispatcher = Dispatcher()
        self.dispatcher.register(_CONNECT, self._on_connect)
        self.listener = Listener(
            self.loop, bind_listener(f"{host}:{port}"), token, self.dispatcher, lambda conn: None,
            role="client server", handshake_timeout_s=config.handshake_timeout_ms / 1000,
            max_frame_bytes=config.max_frame_bytes, max_trailer_bytes=config.max_trailer_bytes,
            tls_context=tls.public_server_context())
        self.address = self.listener.address
        self.sessions: dict[bytes, _SessionProcess] = {}
        self.relays: set[TlsRelay] = set()
        self.log_dir = os.path.join(session_dir, "logs")
        self._stopping = False

    def start(self) -> None:
        self.loop.post(self.listener.start)

    def _on_connect(self, conn: Connection, req: client_pb2.ClientConnectRequest, rid: int) -> None:
        if req.session_id:
            target = self.sessions.get(req.session_id)
            if target is None or not target.alive:
                grace = self.config.client_reconnect_grace_ms / 1000
                conn.reply(rid, _CONNECT, client_pb2.ClientConnectReply(error=(
                    f"the session {req.session_id.hex()[:12]} has ended: it was closed, or its client "
                    f"stayed disconnected longer than the grace period ({grace:.0f} s). Connect again "
                    "with nbray.init(); objects and actors of the old session are gone.")))
                return None
        else:
            try:
                target = self._spawn(uuid.uuid4().bytes)
            except OSError as exc:
                conn.reply(rid, _CONNECT, client_pb2.ClientConnectReply(
                    error=f"the client server could not start a session: {exc}"))
                return None
        sock, unread = conn.detach()
        relay: TlsRelay | None = None
        if isinstance(sock, TlsSocket):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            relay = TlsRelay(self.loop, sock, ours, on_close=self.relays.discard)
            sock = theirs
        try:
            target.hand_over(sock, req, rid, unread)
        except OSError as exc:
            logger.warning("could not hand a client to session %s: %s", target.session_id.hex()[:12], exc)
            if relay is not None:
                relay.close("hand-over failed")
                relay = None
        finally:
            sock.close()  # the session has its own descriptor now
        if relay is not None:
            self.relays.add(relay)
            relay.start()
        return None

    def _spawn(self, session_id: bytes) -> _SessionProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        short = session_id.hex()[:12]
        env = dict(os.environ)
        env["NBRAY_AUTH_TOKEN"] = self.token.hex()
        env["PYTHONUNBUFFERED"] = "1"
        base = os.path.join(self.log_dir, f"client-session-{short}")
        with open(base + ".out", "ab") as out, open(base + ".err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nbray.client.session", "--gcs-address", self.gcs_address,
                 "--session-dir", self.session_dir, "--session-id", session_id.hex(),
                 "--control-fd", str(theirs.fileno()), "--config-json", self.config.to_json()],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(theirs.fileno(),), env=env,
                start_new_session=True)
        theirs.close()
        pidfd = os.pidfd_open(proc.pid)
        session = _SessionProcess(session_id, proc, ours, pidfd)
        self.sessions[session_id] = session
        self.loop.add_reader(pidfd, lambda mask: self._on_exit(session))
        logger.info("started session %s (pid %d)", short, proc.pid)
        return session

    def _on_exit(self, session: _SessionProcess) -> None:
        self.loop.remove(session.pidfd)
        os.close(session.pidfd)
        session.alive = False
        code = session.proc.wait()
        session.control.close()
        self.sessions.pop(session.session_id, None)
        logger.info("session %s ended (exit code %s)", session.session_id.hex()[:12], code)

    def stop(self) -> None:
        """Stop accepting clients and end every session (they shut their drivers down)."""
        if self._stopping:
            return
        self._stopping = True
        self.listener.close()
        for relay in list(self.relays):
            relay.close("the client server is stopping")
        sessions = list(self.sessions.values())
        for s in sessions:
            if s.alive:
                s.proc.terminate()
        deadline = time.monotonic() + 10
        for s in sessions:
            try:
                s.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
        self.loop.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbray-client-server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10001)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-json", default="")
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    config, token = start_daemon("client-server", args.config_json)
    try:
        server = ClientServer(args.host, args.port, args.gcs_address, args.session_dir, config, token)
    except OSError as exc:
        _report(args.ready_fd, {"error": f"cannot listen on {args.host}:{args.port}: {exc}"})
        return 1
    except (tls.InsecureNetworkError, tls.TlsConfigError) as exc:
        _report(args.ready_fd, {"error": str(exc)})
        return 1
    signal.signal(signal.SIGTERM, lambda *_: server.loop.post(server.stop))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.parent_pid:
        try:
            pidfd = os.pidfd_open(args.parent_pid)
        except OSError:
            return 0

        def parent_exited(mask: int) -> None:
            server.loop.remove(pidfd)
            os.close(pidfd)
            server.stop()

        server.loop.add_reader(pidfd, parent_exited)
    server.start()
    _report(args.ready_fd, {"address": server.address, "pid": os.getpid()})
    server.loop.run_forever()
    server.loop.close()
    return 0


def _report(fd: int, info: dict[str, Any]) -> None:
    if fd < 0:
        return
    os.write(fd, (json.dumps(info) + "\n").encode())
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
