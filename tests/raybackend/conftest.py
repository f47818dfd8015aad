"""Ray-backend tests: the notebook layer against a real Ray head, through a
real kernel running the Ray venv's Python (``scripts/setup_ray_env.sh``).

Marked ``ray_backend`` (their own CI step: ``pytest -m ray_backend``); without
the Ray venv they fail with the command that builds it rather than skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Ray 2.60's `ray start` turns token authentication on by itself when
# ~/.ray/auth_token exists (any earlier local `ray.init()` on the machine
# writes one); these heads, their drivers and kernels run without it unless
# a test asks for it (the token-auth panel tests set RAY_AUTH_MODE=token).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from tests.raybackend.ray_cluster import RAY_PYTHON, RayHead, start_ray_head, write_kernelspec
from tests.raybackend.ray_kernel import RayKernel, connected_ray_kernel


@pytest.fixture(scope="package")
def ray_head() -> Iterator[RayHead]:
    if not RAY_PYTHON.exists():
        pytest.fail(f"{RAY_PYTHON} is missing: build it with scripts/setup_ray_env.sh")
    head = start_ray_head(num_cpus=2)
    try:
        yield head
    finally:
        head.stop()
        assert not head.processes(), "the Ray head left processes behind"


@pytest.fixture(scope="package")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_kernelspec(str(tmp_path_factory.mktemp("kernelspec")))


@pytest.fixture(scope="package")
def ray_kernel(ray_head: RayHead, kernel_dirs: str) -> Iterator[RayKernel]:
    """A kernel connected to the head with ``%nbray init --backend ray``."""
    with connected_ray_kernel(kernel_dirs, ray_head.address) as kernel:
        yield kernel
