"""sRGB transfer functions (IEC 61966-2-1), for resampling colour maps in linear light."""

from __future__ import annotations

import torch


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in ``[0, 1]`` to linear light, any shape."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB encoding; values are clamped to ``[0, 1]`` first."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
