"""Entry point of a worker process (forked by the node's worker factory)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from nbray.common.config import Config, set_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbray-worker")
    parser.add_argument("--raylet-socket", required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--startup-token", type=int, required=True)
    args = parser.parse_args(argv)
    from nbray.runtime_env.worker_setup import enter

    enter(os.environ.get("NBRAY_RUNTIME_ENV_CONTEXT"))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s worker: %(message)s")
    config = Config.from_json(os.environ.get("NBRAY_CONFIG_JSON", ""))
    set_config(config)
    token = bytes.fromhex(os.environ["NBRAY_AUTH_TOKEN"])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    from nbray.worker.core_worker import CoreWorker
    from nbray.worker.executor import install_task_output

    install_task_output()
    core = CoreWorker(
        is_worker=True, config=config, token=token, gcs_address=args.gcs_address,
        raylet_socket=args.raylet_socket, node_id=bytes.fromhex(args.node_id), node_ip=args.node_ip,
        session_dir=args.session_dir, startup_token=args.startup_token,
    )
    assert core.executor is not None
    profile_dir = os.environ.get("NBRAY_PROFILE_WORKERS_DIR")
    if profile_dir:  # developer aid: dump a cProfile of each worker at exit
        _profile(core, profile_dir)
    core.executor.run()
    return 0


def _profile(core: object, directory: str) -> None:
    import atexit
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()

    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(os.path.join(directory, f"worker-{os.getpid()}.prof"))

    atexit.register(dump)
    def dump_and_exit(*_: Any) -> None:
        dump()
        os._exit(0)

    signal.signal(signal.SIGTERM, dump_and_exit)


if __name__ == "__main__":
    sys.exit(main())
