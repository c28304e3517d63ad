"""A model file to an ``Upscaler`` ready on a device, at a precision chosen for that device."""

from __future__ import annotations

from pathlib import Path

import torch

from upscaler.engine.pipeline import Upscaler
from upscaler.models.contract import BF16_AGREEMENT, ModelInfo
from upscaler.models.loader import read_model
from upscaler.options import PRECISIONS


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was asked for but no CUDA device is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"{device} asked for, but there are {torch.cuda.device_count()} GPUs")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("MPS was asked for but is not available on this machine")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (Linux's /proc/cpuinfo flags; elsewhere assumed not)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def pick_dtype(precision: str, device: torch.device, info: ModelInfo) -> torch.dtype:
    """``auto``: bf16 where the device computes it natively and the model supports it - on a
    GPU always, on a CPU only when its measured bf16 output agrees with fp32
    (``info.bf16_agreement`` >= ``BF16_AGREEMENT``: 99.9% of 8-bit pixels within one level);
    fp32 otherwise. An explicit precision the model cannot run is refused."""
    if precision == "auto":
        if not info.supports_bf16 or not native_bf16(device):
            return torch.float32
        if device.type == "cpu" and info.bf16_agreement < BF16_AGREEMENT:
            return torch.float32
        return torch.bfloat16 if device.type in ("cpu", "cuda") else torch.float32
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = dtypes[precision]
    if dtype == torch.bfloat16 and not info.supports_bf16:
        raise ValueError(f"{info.name} does not support bf16")
    if dtype == torch.float16 and not info.supports_fp16:
        raise ValueError(
            f"{info.name} does not support fp16 (it would produce NaN or black output)"
        )
    return dtype


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Upscaler:
    """Load a shipped model by name (``texture-x4``), our ``.safetensors`` or a community model.

    Returns an ``Upscaler``: ``.scale``, and ``upscaler(x)`` maps ``(B, C, H, W)`` in ``[0, 1]`` to
    ``(B, C, H*scale, W*scale)``. Loads on CPU in float32 unless ``device``/``dtype`` say otherwise.
    """
    module, info = read_model(name_or_path)
    return Upscaler(module, info, device=pick_device(device or "cpu"), dtype=dtype or torch.float32)
