"""The raylet process's entry: flags, start-up, readiness report and parent watch."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from nbray.common.config import start_daemon
from nbray.raylet.raylet import Raylet
from nbray.rpc import tls


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="nbray-raylet")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--resources-json", default="{}")
    parser.add_argument("--gpu-ids", default="")
    parser.add_argument("--object-store-bytes", type=int, required=True)
    parser.add_argument("--config-json", default="")
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--node-name", default="")
    parser.add_argument("--labels-json", default="{}")
    args = parser.parse_args(argv)
    config, token = start_daemon("raylet", args.config_json)
    try:
        raylet = Raylet(
            node_id=bytes.fromhex(args.node_id), gcs_address=args.gcs_address, node_ip=args.node_ip,
            port=args.port, session_dir=args.session_dir, resources=json.loads(args.resources_json),
            gpu_ids=[g for g in args.gpu_ids.split(",") if g], object_store_bytes=args.object_store_bytes,
            config=config, token=token, is_head=args.head, node_name=args.node_name,
            labels=json.loads(args.labels_json),
        )
    except (tls.InsecureNetworkError, tls.TlsConfigError) as exc:
        # A setting the user must change: report it rather than a traceback.
        _report_ready(args.ready_fd, {"error": str(exc)})
        raise SystemExit(1) from None
    signal.signal(signal.SIGTERM, lambda *_: raylet.loop.post(raylet.shutdown, "SIGTERM"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.parent_pid:
        _watch_parent(raylet, args.parent_pid)
    try:
        raylet.start()
    except Exception as exc:
        _report_ready(args.ready_fd, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    _report_ready(args.ready_fd, {"raylet_port": raylet.port, "raylet_socket": raylet.socket_path,
                                  "pid": os.getpid(), "node_id": raylet.node_id.hex()})
    raylet.run()
    raylet.loop.close()


def _watch_parent(raylet: Raylet, pid: int) -> None:
    """Exit when the process that started this one exits (embedded clusters)."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        raylet.loop.post(raylet.shutdown, "parent process is gone")
        return
    def parent_exited(mask: int) -> None:
        raylet.loop.remove(fd)  # stays readable: watch it once
        os.close(fd)
        raylet.shutdown("parent process exited")

    raylet.loop.add_reader(fd, parent_exited)


def _report_ready(fd: int, info: dict[str, Any]) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.close(fd)
    except OSError:
        pass
