"""The worker factory: a pre-imported process that forks workers.

Starting a Python worker from scratch costs ~150 ms here (interpreter and
imports); forking this process costs a few ms. The raylet starts one zygote
per node, as early as it can (``zygote_process.py``), and asks it for
workers. The zygote imports everything a worker runs before its first task
(``PRELOADED_MODULES``) once, before it forks any; it has no threads, so
forking is safe. Each child connects its stdout and stderr to the raylet's log socket
(so output reaches the driver, tagged with the running task) and then runs
the worker main loop.

The zygote reaps its children and reports each exit to the raylet, and it
exits when the raylet goes away (EOF on its socket, or SIGKILL through
PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

from nbray.protocol import method, raylet_pb2
from nbray.rpc.connection import HEADER, HEADER_SIZE, KIND_ONEWAY, KIND_REPLY, KIND_REQUEST

_SPAWN = method("ZygoteService.SpawnWorker")
_EXITED = method("ZygoteEventsService.WorkerExited")
PR_SET_PDEATHSIG = 1
# What every worker imports before its first task: loaded once here, so a
# forked worker starts with it instead of importing it again. Not the
# executor module itself: it reads the worker's environment (which the
# spawn request sets) when imported. Not asyncio either: only async actors
# use it, and it costs a worker factory a third more to start.
PRELOADED_MODULES = (
    "nbray.worker.main",
    "nbray.worker.core_worker",
    "concurrent.futures.thread",
    "nbray.raylet.log_router",
    "nbray.runtime_env.worker_setup",
    "nbray.api",
    "nbray.actor",
    "nbray.remote_function",
)
LOG_PREFACE = struct.Struct("<32sqB")  # token, startup token, stream (1 out, 2 err)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _send_frame(sock: socket.socket, method_id: int, kind: int, rid: int, body: bytes) -> None:
    sock.sendall(HEADER.pack(len(body), 0, method_id, kind, rid) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        data = sock.recv(n)
        if not data:
            return None
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def connect_log_stream(log_socket: str, token: bytes, startup_token: int, stream: int) -> int:
    """Open a stream to the raylet's log socket; returns its fd."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(log_socket)
    s.sendall(LOG_PREFACE.pack(token, startup_token, stream))
    return s.detach()


def preload() -> Any:
    """Import what workers run; returns the worker's main module.

    Importing starts no thread, so forking stays safe. The objects made so
    far are frozen out of the garbage collector, so that collections in the
    workers do not touch (and copy) the pages they share with the zygote.
    """
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    gc.freeze()
    return sys.modules["nbray.worker.main"]


def run_zygote(control_fd: int, log_socket: str, worker_args: list[str]) -> None:
    """Main loop of the zygote process."""
    set_parent_death_signal()
    worker_main = preload()
    token = bytes.fromhex(os.environ["NBRAY_AUTH_TOKEN"])
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_w, False)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    children: set[int] = set()
    while True:
        watched: list[Any] = [control, sig_r]
        ready, _, _ = select.select(watched, [], [])
        if sig_r in ready:
            try:
                os.read(sig_r, 4096)
            except BlockingIOError:
                pass
            _reap(control, children)
        if control in ready:
            header = _recv_exact(control, HEADER_SIZE)
            if header is None:
                return  # the raylet is gone
            body_len, _, mid, kind, rid = HEADER.unpack(header)
            body = _recv_exact(control, body_len) or b""
            if mid != _SPAWN.id or kind != KIND_REQUEST:
                continue
            request = raylet_pb2.SpawnWorkerRequest()
            request.ParseFromString(body)
            pid = os.fork()
            if pid == 0:
                _child(control, sig_r, sig_w, log_socket, token, request, worker_args, worker_main)
            children.add(pid)
            reply = raylet_pb2.SpawnWorkerReply(pid=pid)
            _send_frame(control, _SPAWN.id, KIND_REPLY, rid, reply.SerializeToString())
            _reap(control, children)


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        msg = raylet_pb2.WorkerExitedRequest(pid=pid, status=code)
        try:
            _send_frame(control, _EXITED.id, KIND_ONEWAY, 0, msg.SerializeToString())
        except OSError:
            return


def _child(control: socket.socket, sig_r: int, sig_w: int, log_socket: str, token: bytes,
           request: Any, worker_args: list[str], worker_main: Any) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        control.close()
        os.close(sig_r)
        os.close(sig_w)
        set_parent_death_signal()
        os.setpgid(0, 0)
        for key, value in request.env.items():
            os.environ[key] = value
        out_fd = connect_log_stream(log_socket, token, request.startup_token, 1)
        err_fd = connect_log_stream(log_socket, token, request.startup_token, 2)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # line buffered
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        args = worker_args + ["--startup-token", str(request.startup_token)]
        code = worker_main.main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code or 0)


def main() -> None:
    control_fd = int(sys.argv[1])
    log_socket = sys.argv[2]
    worker_args = sys.argv[3:]
    run_zygote(control_fd, log_socket, worker_args)


if __name__ == "__main__":
    main()
