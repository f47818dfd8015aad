"""What this machine offers: CPUs, GPUs, memory, shared memory, its IP."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

MAX_DEFAULT_OBJECT_STORE_BYTES = 200 * 1024**3


def host_key() -> str:
    """Identifies "this host" as peers see it: one kernel boot, one network
    namespace, one mount namespace. Processes with equal keys can reach each
    other's Unix sockets by path; anything else must use the network."""
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
    except OSError:
        parts.append(socket.gethostname())
    for ns in ("net", "mnt"):
        try:
            parts.append(str(os.stat(f"/proc/self/ns/{ns}").st_ino))
        except OSError:
            parts.append("?")
    return "/".join(parts)


def num_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def gpu_ids() -> list[str]:
    """Ids of the NVIDIA GPUs this process may use ([] without hardware)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() not in ("", "-1", "NoDevFiles")]
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver or no GPU
        return []


def gpu_model() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() == 0:
                return ""
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else str(name)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return ""


# The node label naming a node's accelerator type (as Ray labels nodes).
ACCELERATOR_TYPE_LABEL = "ray.io/accelerator-type"
# A node of accelerator type T carries one unit of this resource + T; the
# accelerator_type=T option asks for a sliver of it.
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"
# Words in NVIDIA device names that are brands or families, not the model.
_GPU_NAME_BRANDS = frozenset({"NVIDIA", "TESLA", "QUADRO", "GEFORCE", "TITAN", "RTX", "GTX"})


def accelerator_type_from_gpu_name(name: str) -> str:
    """The accelerator type of an NVIDIA device name, as Ray names it:
    "NVIDIA H100 80GB HBM3" -> "H100", "Tesla V100-SXM2-16GB" -> "V100",
    "NVIDIA A100-SXM4-40GB" -> "A100"; "" when no model is recognizable."""
    for word in re.split(r"[\s\-_]+", name.strip()):
        if word.upper() in _GPU_NAME_BRANDS:
            continue
        model = re.match(r"[A-Z0-9]+", word)
        return model.group(0) if model else ""
    return ""


def gpu_accelerator_type() -> str:
    """This machine's GPU type from nvidia-ml-py ("" without one)."""
    return accelerator_type_from_gpu_name(gpu_model())


def accelerator_resources(detected_type: str, labels: Mapping[str, str] | None) -> dict[str, float]:
    """The resources that tell the scheduler a node's accelerator type: the
    detected GPU's, and the one its ``ray.io/accelerator-type`` label names."""
    out: dict[str, float] = {}
    for accelerator_type in (detected_type, (labels or {}).get(ACCELERATOR_TYPE_LABEL, "")):
        if accelerator_type:
            out[ACCELERATOR_RESOURCE_PREFIX + accelerator_type] = 1.0
    return out


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def total_memory_bytes() -> int:
    return _meminfo().get("MemTotal", 8 * 1024**3)


def available_memory_bytes() -> int:
    info = _meminfo()
    return info.get("MemAvailable", info.get("MemTotal", 8 * 1024**3))


def shm_size_bytes() -> int:
    try:
        st = os.statvfs("/dev/shm")
        return st.f_frsize * st.f_blocks
    except OSError:
        return total_memory_bytes()


def default_object_store_bytes(fraction: float) -> int:
    """30% of memory by default, capped by /dev/shm and 200 GiB (as Ray)."""
    size = int(total_memory_bytes() * fraction)
    return max(1, min(size, shm_size_bytes(), MAX_DEFAULT_OBJECT_STORE_BYTES))


def default_memory_resource_bytes(object_store_bytes: int) -> int:
    return max(0, int((available_memory_bytes() - object_store_bytes) * 0.7))


def node_ip_address() -> str:
    """Loopback unless configured: nbray binds to 127.0.0.1 by default."""
    return os.environ.get("NBRAY_NODE_IP_ADDRESS", "127.0.0.1")


def routable_ip_address() -> str:
    """The address other machines would reach this one at (best effort)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()
