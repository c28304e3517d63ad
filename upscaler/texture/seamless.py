"""Tileable (wrap-around) textures: detection, wrap padding and the seam metric."""

from __future__ import annotations

import torch

# A texture wraps along an axis when the jump across its opposite edges is no larger than the
# ordinary step between neighbouring rows/columns inside it (with some slack for noise).
WRAP_TOLERANCE = 1.5
MIN_WRAP_SIZE = 8
_SLICE = 256  # lines per slice when measuring: bounds the float copies to a few MB per 1k px


def _edge_ratio(x: torch.Tensor, dim: int, step: int = 1) -> float:
    """Jump across the wrap boundary along ``dim`` over the mean jump between neighbours.

    With ``step`` > 1 only the boundaries at multiples of ``step`` count as neighbours: in an
    image upscaled by ``step`` those are the ones between source pixels, like the wrap seam.
    Computed in slices across the other axis, so memory stays small for 16k textures.
    """
    n = x.shape[dim]
    other = x.ndim - 1 if dim == x.ndim - 2 else x.ndim - 2
    starts = torch.arange(step - 1, n - 1, step, device=x.device)
    if not len(starts):
        starts = torch.arange(0, n - 1, device=x.device)
    total, count = 0.0, 0
    for begin in range(0, x.shape[other], _SLICE):
        part = x.narrow(other, begin, min(_SLICE, x.shape[other] - begin)).float()
        jumps = (part.narrow(dim, 1, n - 1) - part.narrow(dim, 0, n - 1)).abs()
        jumps = jumps.index_select(dim, starts)
        total += float(jumps.sum(dtype=torch.float64))
        count += jumps.numel()
    inner = total / count if count else float("nan")
    wrap = float((x.narrow(dim, 0, 1).float() - x.narrow(dim, n - 1, 1).float()).abs().mean())
    if inner < 1e-6:
        return 0.0 if wrap < 1e-6 else float("inf")
    return wrap / inner


def seam_error(x: torch.Tensor, step: int = 1) -> tuple[float, float]:
    """Wrap seam error per axis (rows, columns) of ``(B, C, H, W)`` or ``(C, H, W)``.

    The mean absolute jump across the wrap boundary divided by the mean jump between neighbouring
    pixels inside: about 1 for a texture that tiles, much larger when a seam shows. Pass the
    upscaling factor as ``step`` to compare like with like in an upscaled image.
    """
    return _edge_ratio(x, x.ndim - 2, step), _edge_ratio(x, x.ndim - 1, step)


def detect_wrap(x: torch.Tensor) -> tuple[bool, bool]:
    """Whether ``x`` (``(..., H, W)``) tiles vertically and horizontally, judged from its edges."""
    h, w = x.shape[-2], x.shape[-1]
    rows, cols = seam_error(x)
    return (
        h >= MIN_WRAP_SIZE and rows <= WRAP_TOLERANCE,
        w >= MIN_WRAP_SIZE and cols <= WRAP_TOLERANCE,
    )


def wrap_index(size: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Source positions of an axis of ``size`` padded circularly by ``pad`` on both sides (the
    pad may exceed the size: it wraps repeatedly)."""
    return torch.arange(-pad, size + pad, device=device) % size


def wrap_pad(x: torch.Tensor, pad_y: int, pad_x: int) -> torch.Tensor:
    """Pad ``(..., H, W)`` circularly; the pad may exceed the image size (it wraps repeatedly)."""
    h, w = x.shape[-2], x.shape[-1]
    if pad_y:
        x = x.index_select(x.ndim - 2, wrap_index(h, pad_y, x.device))
    if pad_x:
        x = x.index_select(x.ndim - 1, wrap_index(w, pad_x, x.device))
    return x
