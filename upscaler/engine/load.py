"""A model to an ``Upscaler`` ready on a device, at a precision chosen for that device."""

from __future__ import annotations

from pathlib import Path

import torch

from upscaler.engine.pipeline import Upscaler
from upscaler.models.descriptor import ModelInfo
from upscaler.models.loader import read_model
from upscaler.models.sources import ModelSource, blocks_model
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
    """Whether ``device`` computes bf16 natively: a CUDA GPU of compute capability 8.0 or more
    (Ampere on; older ones only emulate it), or a CPU with AVX512-BF16 or AMX (Linux's
    /proc/cpuinfo flags; elsewhere assumed not)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def fast_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """The reduced precisions that run faster than fp32 on ``device``, best first: bf16 where it
    is native; on a CUDA GPU also fp16 (tensor cores since Volta, and what Real-ESRGAN runs on
    GPUs by default). A CPU without native bf16 has none (its fp16 and bf16 are emulated), nor
    (unmeasured) has MPS."""
    bf16 = (torch.bfloat16,) if native_bf16(device) else ()
    if device.type == "cuda":
        return (*bf16, torch.float16)
    return bf16


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(dtype: torch.dtype) -> str:
    """``fp32``, ``bf16`` or ``fp16``: a dtype as ``--precision`` names it."""
    return next((name for name, d in DTYPES.items() if d == dtype), str(dtype))


def pick_dtype(precision: str, device: torch.device, info: ModelInfo) -> torch.dtype:
    """``auto``: the first of ``fast_dtypes(device)`` that the model supports and whose measured
    output meets the precision rule (``Fidelity.meets_rule``: PSNR >= 50 dB against fp32's and
    no 8-bit value more than 12 levels off, on the probe), the same rule on every device; fp32
    otherwise. An explicit precision the model cannot run is refused."""
    supported = {torch.bfloat16: info.supports_bf16, torch.float16: info.supports_fp16}
    if precision == "auto":
        for dtype in fast_dtypes(device):
            if supported[dtype] and info.fidelity(dtype).meets_rule():
                return dtype
        return torch.float32
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = DTYPES[precision]
    if dtype == torch.bfloat16 and not info.supports_bf16:
        raise ValueError(f"{info.name} does not support bf16")
    if dtype == torch.float16 and not info.supports_fp16:
        raise ValueError(
            f"{info.name} does not support fp16 (it would produce NaN or black output)"
        )
    return dtype


def load_model(
    model: str | Path | ModelSource,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    max_memory: int | None = None,
) -> Upscaler:
    """Load a shipped model by name (``texture-x4``), a known model by name, our ``.safetensors``
    or a community model file (or a ``ModelSource`` already resolved).

    Returns an ``Upscaler``: ``.scale``, and ``upscaler(x)`` maps ``(B, C, H, W)`` in ``[0, 1]`` to
    ``(B, C, H*scale, W*scale)``. Loads on CPU in float32 unless ``device``/``dtype`` say
    otherwise; ``dtype`` may also name a precision (``auto``, ``fp32``, ``bf16``, ``fp16``: see
    ``pick_dtype``). ``max_memory``: the memory budget in bytes (None: from the device). A
    shipped model with weights for block-compressed textures (``ShippedModel.blocks``) comes
    with them loaded too, as ``Upscaler.for_blocks``.
    """
    module, info = read_model(model)
    device = pick_device(device or "cpu")
    precision = dtype
    if isinstance(dtype, str):
        dtype = pick_dtype(dtype, device, info)
    upscaler = Upscaler(
        module, info, device=device, dtype=dtype or torch.float32, max_memory=max_memory
    )
    companion = blocks_model(model)
    if companion:  # a shipped model with its own weights for block-compressed textures
        upscaler.for_blocks = load_model(
            companion, device=device, dtype=precision, max_memory=max_memory
        )
    return upscaler
