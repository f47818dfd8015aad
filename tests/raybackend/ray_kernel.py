"""A kernel of the Ray venv, driven message by message (jupyter_client)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.notebook.kernels import KERNEL_TIMEOUT_S, LiveKernel


class RayKernel(LiveKernel):
    def __init__(self, kernel_dirs: str) -> None:
        self.km = KernelManager(kernel_name="ray-venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dirs]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBRAY_")}
        self.km.start_kernel(env=dict(env, RAY_USAGE_STATS_ENABLED="0"))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=KERNEL_TIMEOUT_S)
        except RuntimeError:
            self.shutdown()
            raise


@contextlib.contextmanager
def connected_ray_kernel(kernel_dirs: str, address: str) -> Iterator[RayKernel]:
    """A kernel of the Ray venv connected with ``%nbray init --backend ray ADDRESS``; shut down after."""
    kernel = RayKernel(kernel_dirs)
    try:
        reply, _ = kernel.run(f"%load_ext nbray\n%nbray init --backend ray {address}", timeout_s=120)
        assert reply["status"] == "ok", reply
        yield kernel
    finally:
        kernel.shutdown()


@contextlib.contextmanager
def line_driver(args: list[str], cwd: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """A driver process answering one line per line it reads; ready once it printed "ready".
    Closing its stdin ends it (killed if it has not exited within 30 s)."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=cwd, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
