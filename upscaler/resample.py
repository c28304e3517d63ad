"""Separable resampling with anti-aliasing, edge clamping or wrap-around.

When shrinking by a factor f the filter is stretched by f (as Pillow and ImageMagick do), so every
input pixel contributes and nothing aliases. The default is Lanczos-3: for the "upscale, then
filter back down" of native mode it keeps the detail the model added while cutting everything
above the new Nyquist limit; its small overshoot is clamped by the caller's conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _lanczos3(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(x))


def _cubic(a: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def kernel(x: torch.Tensor) -> torch.Tensor:
        x = x.abs()
        inner = ((a + 2) * x - (a + 3)) * x * x + 1
        outer = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return torch.where(x <= 1, inner, torch.where(x < 2, outer, torch.zeros_like(x)))

    return kernel


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


KERNELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "lanczos3": (_lanczos3, 3.0),
    "bicubic": (_cubic(-0.5), 2.0),  # Keys a = -0.5, as Pillow and torch
    "catmull-rom": (_cubic(-0.5), 2.0),
    "bilinear": (_triangle, 1.0),
    "box": (_box, 0.5),
}


def filter_taps(
    in_size: int,
    out_size: int,
    kernel: str = "lanczos3",
    *,
    wrap: bool = False,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights ``(out_size, taps)`` for resampling one axis."""
    if kernel == "nearest":
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * in_size / out_size).floor()
        return src.long().clamp(max=in_size - 1)[:, None].to(device), torch.ones(
            out_size, 1, device=device
        )
    fn, support = KERNELS[kernel]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    taps = 2 * math.ceil(support * stretch) + 1
    first = (centers - support * stretch).floor().long()
    index = first[:, None] + torch.arange(taps)[None, :]
    weights = fn((index.double() + 0.5 - centers[:, None]) / stretch)
    if not wrap:  # outside the image: the weight goes to the edge pixel (clamp)
        weights = torch.where((index >= 0) & (index < in_size), weights, torch.zeros_like(weights))
        index = index.clamp(0, in_size - 1)
    else:
        index = index % in_size
    weights = weights / weights.sum(dim=1, keepdim=True)
    return index.to(device), weights.float().to(device)


def resize_axis(
    x: torch.Tensor, size: int, dim: int, kernel: str = "lanczos3", *, wrap: bool = False
) -> torch.Tensor:
    """Resample ``x`` along ``dim`` to ``size`` samples."""
    if x.shape[dim] == size:
        return x
    index, weights = filter_taps(x.shape[dim], size, kernel, wrap=wrap, device=x.device)
    shape = [1] * x.ndim
    shape[dim] = size
    out = torch.zeros(*x.shape[:dim], size, *x.shape[dim + 1 :], device=x.device, dtype=x.dtype)
    for k in range(index.shape[1]):
        w = weights[:, k]
        if bool((w == 0).all()):
            continue
        out += x.index_select(dim, index[:, k]) * w.view(shape).to(x.dtype)
    return out


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    kernel: str = "lanczos3",
    *,
    wrap: tuple[bool, bool] = (False, False),
) -> torch.Tensor:
    """Resample ``(..., H, W)`` to ``size`` = (height, width). Values are not clamped."""
    x = resize_axis(x, size[1], x.ndim - 1, kernel, wrap=wrap[1])
    return resize_axis(x, size[0], x.ndim - 2, kernel, wrap=wrap[0])
