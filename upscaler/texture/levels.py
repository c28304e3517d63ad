"""Integer pixel levels <-> float tensors: the one conversion at the edge of the tensor code."""

from __future__ import annotations

import numpy as np
import torch

from upscaler.formats.bits import full_scale

__all__ = ["full_scale", "quantize", "round_to_levels", "to_levels", "to_tensor"]


def to_tensor(pixels: np.ndarray, bits: int) -> torch.Tensor:
    """``(H, W, C)`` integer levels to a ``(1, C, H, W)`` float32 tensor in ``[0, 1]``."""
    x = torch.from_numpy(pixels.astype(np.float32))  # a copy: read-only inputs are fine
    return x.permute(2, 0, 1)[None].div_(full_scale(bits))


def to_levels(x: torch.Tensor) -> np.ndarray:
    """The first image of a ``(B, C, H, W)`` integer tensor as ``(H, W, C)`` numpy levels."""
    return x[0].permute(1, 2, 0).cpu().numpy()


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Float ``[0, 1]`` to integer levels, rounding half up; int32 holds 16-bit values (torch has
    few uint16 ops)."""
    q = (x.clamp(0, 1) * full_scale(bits) + 0.5).floor_()
    return q.to(torch.int32 if bits == 16 else torch.uint8)


def round_to_levels(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """``x`` rounded to the levels a ``bits``-deep file stores, kept as floats in ``[0, 1]``
    (same dtype and device): what a texture looks like after it is saved and read back."""
    top = full_scale(bits)
    return (x.clamp(0, 1) * top + 0.5).floor_().div_(top)
