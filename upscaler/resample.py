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
    # Pillow's window: taps from round(center - support) up to round(center + support).
    low = (centers - support * stretch + 0.5).floor().long()[:, None]
    high = (centers + support * stretch + 0.5).floor().long()[:, None]
    weights = torch.where((index >= low) & (index < high), weights, torch.zeros_like(weights))
    if not wrap:  # taps beyond the image are dropped and the rest renormalised, as Pillow does
        weights = torch.where((index >= 0) & (index < in_size), weights, torch.zeros_like(weights))
        index = index.clamp(0, in_size - 1)
    else:
        index = index % in_size
    weights = weights / weights.sum(dim=1, keepdim=True)
    return index.to(device), weights.float().to(device)


def _gather(x: torch.Tensor, dim: int, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of ``x`` gathered along ``dim``: one pass per tap."""
    shape = [1] * x.ndim
    shape[dim] = index.shape[0]
    out = torch.zeros(*x.shape[:dim], index.shape[0], *x.shape[dim + 1 :], dtype=x.dtype,
                      device=x.device)  # fmt: skip
    for k in range(index.shape[1]):
        w = weights[:, k]
        if bool((w == 0).all()):
            continue
        out += x.index_select(dim, index[:, k]) * w.view(shape).to(x.dtype)
    return out


def _strided(x: torch.Tensor, dim: int, size: int, kernel: str, wrap: bool) -> torch.Tensor:
    """Integer-factor shrink: every output shares one kernel, applied to strided windows.

    Gives the same numbers as ``filter_taps``; the few border outputs whose taps fall off the
    image (clamped and renormalised there) are recomputed exactly.
    """
    length = x.shape[dim]
    factor = length // size
    fn, support = KERNELS[kernel]
    taps = 2 * math.ceil(support * factor) + 1
    lead = math.floor(0.5 * factor - support * factor)  # first tap of output 0
    offsets = torch.arange(taps, dtype=torch.float64) + lead + 0.5 - 0.5 * factor
    weights = fn(offsets / factor)
    low = math.floor(0.5 * factor - support * factor + 0.5) - lead  # Pillow's window, as above
    high = math.floor(0.5 * factor + support * factor + 0.5) - lead
    weights[:low] = 0
    weights[high:] = 0
    kernel_1d = (weights / weights.sum()).to(x.dtype).to(x.device)
    pad_right = max(0, (size - 1) * factor + lead + taps - length)
    if wrap and max(-lead, pad_right) > length:  # the pad wraps more than once: no shortcut
        index, w = filter_taps(length, size, kernel, wrap=True, device=x.device)
        return _gather(x, dim, index, w)
    positions = torch.arange(lead, length + pad_right, device=x.device)
    positions = positions % length if wrap else positions.clamp(0, length - 1)
    # Rows along the last axis, contiguous: the unfolded windows then multiply fast.
    rows = x.movedim(dim, -1).reshape(-1, length).index_select(1, positions)
    windows = rows.unfold(1, taps, factor)[:, :size]  # (rows, size, taps), a view
    flat = torch.empty(rows.shape[0], size, dtype=x.dtype, device=x.device)
    step = max(1, (1 << 25) // (size * taps))  # bound the matmul's temporary to ~128 MB
    for start in range(0, rows.shape[0], step):
        flat[start : start + step] = windows[start : start + step] @ kernel_1d
    out = flat.reshape(*x.movedim(dim, -1).shape[:-1], size).movedim(-1, dim)
    if not wrap:
        starts = torch.arange(size) * factor + lead
        edge = ((starts < 0) | (starts + taps > length)).nonzero().flatten().to(x.device)
        if len(edge):
            index, w = filter_taps(length, size, kernel, device=x.device)
            out.index_copy_(dim, edge, _gather(x, dim, index[edge], w[edge]))
    return out


def resize_axis(
    x: torch.Tensor, size: int, dim: int, kernel: str = "lanczos3", *, wrap: bool = False
) -> torch.Tensor:
    """Resample ``x`` along ``dim`` to ``size`` samples."""
    if x.shape[dim] == size:
        return x
    if kernel in KERNELS and x.shape[dim] % size == 0 and x.is_floating_point():
        return _strided(x, dim, size, kernel, wrap)
    index, weights = filter_taps(x.shape[dim], size, kernel, wrap=wrap, device=x.device)
    return _gather(x, dim, index, weights)


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
