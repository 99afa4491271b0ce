"""Numeric precision: resolve "auto" for the machine, and the autocast context that applies it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matmuls (AVX512-BF16 or AMX), where bf16 autocast runs ~2-3x faster than fp32."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_bf16(device: torch.device) -> bool:
    """True on GPUs of compute capability 8.0 or newer (Ampere+), whose tensor cores run bf16 at the fp16 rate.
    torch.cuda.is_bf16_supported() is not used: it also says True on older GPUs that emulate bf16."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(requested: str, device: torch.device) -> str:
    """'auto' → bf16 on a GPU that computes it natively (compute capability 8.0+: A100, A10, L4, H100), fp16 on
    older GPUs (T4, V100, P100: no loss scaling is needed with bf16's fp32 range, but they emulate it slowly), bf16
    on a CPU that has it, else fp32; explicit choices are checked against the device."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_has_bf16(device) else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
    return requested


def autocast(precision: str, device: torch.device):
    """Autocast to the resolved precision; fp32 runs without autocast."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
