"""Accelerator type names for the ``accelerator_type=`` option (Ray's values).

``@nbray.remote(num_gpus=1, accelerator_type=NVIDIA_H100)`` runs only on
nodes whose accelerator is that type. A node's type comes from its GPU
(read with nvidia-ml-py, the ``gpu`` extra), from a custom resource
``--resources '{"accelerator_type:H100": 1}'``, or from the node label
``ray.io/accelerator-type``. A type that no node has leaves the work
pending, shown as infeasible by ``nbray status``.
"""

from __future__ import annotations

import warnings
from typing import Any

NVIDIA_TESLA_V100 = "V100"
NVIDIA_TESLA_P100 = "P100"
NVIDIA_TESLA_T4 = "T4"
NVIDIA_TESLA_P4 = "P4"
NVIDIA_TESLA_K80 = "K80"
NVIDIA_TESLA_A10G = "A10G"
NVIDIA_L4 = "L4"
NVIDIA_L40S = "L40S"
NVIDIA_A100 = "A100"
NVIDIA_H100 = "H100"
NVIDIA_H200 = "H200"
NVIDIA_H20 = "H20"
NVIDIA_B200 = "B200"
# Sizes of the A100: nodes are not given these automatically (a detected
# A100 is "A100"); add them with --resources where work needs the size.
NVIDIA_A100_40G = "A100-40G"
NVIDIA_A100_80G = "A100-80G"

INTEL_MAX_1550 = "Intel-GPU-Max-1550"
INTEL_MAX_1100 = "Intel-GPU-Max-1100"
INTEL_GAUDI = "Intel-GAUDI"
AMD_INSTINCT_MI100 = "AMD-Instinct-MI100"
AMD_INSTINCT_MI250x = "AMD-Instinct-MI250X"
AMD_INSTINCT_MI250 = "AMD-Instinct-MI250X-MI250"
AMD_INSTINCT_MI210 = "AMD-Instinct-MI210"
AMD_INSTINCT_MI300A = "AMD-Instinct-MI300A"
AMD_INSTINCT_MI300x = "AMD-Instinct-MI300X-OAM"
AMD_INSTINCT_MI300x_HF = "AMD-Instinct-MI300X-HF"
AMD_INSTINCT_MI308x = "AMD-Instinct-MI308X"
AMD_INSTINCT_MI325x = "AMD-Instinct-MI325X-OAM"
AMD_RADEON_R9_200_HD_7900 = "AMD-Radeon-R9-200-HD-7900"
AMD_RADEON_HD_7900 = "AMD-Radeon-HD-7900"
AWS_NEURON_CORE = "aws-neuron-core"
GOOGLE_TPU_V2 = "TPU-V2"
GOOGLE_TPU_V3 = "TPU-V3"
GOOGLE_TPU_V4 = "TPU-V4"
GOOGLE_TPU_V5P = "TPU-V5P"
GOOGLE_TPU_V5LITEPOD = "TPU-V5LITEPOD"
GOOGLE_TPU_V6E = "TPU-V6E"
HUAWEI_NPU_910B = "Ascend910B"
HUAWEI_NPU_910B4 = "Ascend910B4"

# Old names kept working, with a warning naming the new one.
_DEPRECATED = {"NVIDIA_TESLA_A100": "NVIDIA_A100", "NVIDIA_AMPERE_A100": "NVIDIA_A100"}


def __getattr__(name: str) -> Any:
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{name} is deprecated, use {new} instead.", DeprecationWarning, stacklevel=2)
    return globals()[new]


__all__ = [
    "AMD_INSTINCT_MI100",
    "AMD_INSTINCT_MI210",
    "AMD_INSTINCT_MI250",
    "AMD_INSTINCT_MI250x",
    "AMD_INSTINCT_MI300A",
    "AMD_INSTINCT_MI300x",
    "AMD_INSTINCT_MI300x_HF",
    "AMD_INSTINCT_MI308x",
    "AMD_INSTINCT_MI325x",
    "AMD_RADEON_HD_7900",
    "AMD_RADEON_R9_200_HD_7900",
    "AWS_NEURON_CORE",
    "GOOGLE_TPU_V2",
    "GOOGLE_TPU_V3",
    "GOOGLE_TPU_V4",
    "GOOGLE_TPU_V5LITEPOD",
    "GOOGLE_TPU_V5P",
    "GOOGLE_TPU_V6E",
    "HUAWEI_NPU_910B",
    "HUAWEI_NPU_910B4",
    "INTEL_GAUDI",
    "INTEL_MAX_1100",
    "INTEL_MAX_1550",
    "NVIDIA_A100",
    "NVIDIA_A100_40G",
    "NVIDIA_A100_80G",
    "NVIDIA_B200",
    "NVIDIA_H100",
    "NVIDIA_H20",
    "NVIDIA_H200",
    "NVIDIA_L4",
    "NVIDIA_L40S",
    "NVIDIA_TESLA_A10G",
    "NVIDIA_TESLA_K80",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
]
