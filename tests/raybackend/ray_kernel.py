"""A kernel of the Ray venv, driven message by message (jupyter_client)."""

from __future__ import annotations

import os

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
