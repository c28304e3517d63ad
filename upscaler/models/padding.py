"""Circular padding that keeps the memory format: for the engine's wrap and for blocks that wrap
themselves (``models.rrdb``)."""

from __future__ import annotations

import torch


def wrap_pad(x: torch.Tensor, pad_y: int, pad_x: int) -> torch.Tensor:
    """``(B, C, H, W)`` padded circularly, keeping ``x``'s memory format (``F.pad``'s circular
    mode returns a contiguous copy, which costs a channels-last convolution a conversion).
    Padding wider than the image repeats it as often as needed."""
    h, w = x.shape[-2:]
    if pad_y > h or pad_x > w:
        ry, rx = -(-pad_y // h), -(-pad_x // w)
        tiled = x.repeat(1, 1, 2 * ry + 1, 2 * rx + 1)
        top, left = ry * h - pad_y, rx * w - pad_x
        return tiled[..., top : top + h + 2 * pad_y, left : left + w + 2 * pad_x]
    if pad_y:
        x = torch.cat([x[..., -pad_y:, :], x, x[..., :pad_y, :]], dim=2)
    if pad_x:
        x = torch.cat([x[..., -pad_x:], x, x[..., :pad_x]], dim=3)
    return x
