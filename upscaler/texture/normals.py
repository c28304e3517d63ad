"""Tangent- or object-space normal maps as vectors, not colours.

Pixels encode a vector per channel as ``c = (v + 1) / 2`` (the usual unsigned convention; a map's
DirectX/OpenGL green direction is whatever the file holds: it is decoded and re-encoded with the
same formula, never flipped). Two-channel (RG, BC5) maps store X and Y only; Z is rebuilt as
``sqrt(1 - x^2 - y^2)``. Tensors are ``(B, 3, H, W)``: encoded values in ``[0, 1]``, vectors in
``[-1, 1]``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from upscaler.texture.levels import full_scale, to_tensor

# Quantising a unit vector to 8 bits per channel by plain rounding leaves |len - 1| ~ 0.002; the
# best of the 8 surrounding codes by length (with this weight on the distance from the exact
# vector) halves that for ~0.1 degree more direction error.
BEST_FIT_DISTANCE_WEIGHT = 0.25
# A map is "unit-ish" when its typical texel decodes to a vector this close to unit length.
MAX_MEDIAN_LENGTH_ERROR = 0.25
MIN_UNIT_SHARE = 0.8  # ... and this share of texels lies within UNIT_BAND of unit length
UNIT_BAND = 0.5  # wide: maps stored with Z = 1 (not renormalised) still count
MAX_XY_LENGTH = 1.05  # two-channel maps: X, Y inside the unit disc (with rounding slack)
CHECK_TEXELS = 1 << 18  # content checks look at a strided sample of at most this many texels


def decode(x: torch.Tensor) -> torch.Tensor:
    """Encoded ``[0, 1]`` to vectors ``[-1, 1]`` (channels 0-2 of dim 1)."""
    return x * 2 - 1


def encode(v: torch.Tensor) -> torch.Tensor:
    """Vectors ``[-1, 1]`` to encoded ``[0, 1]``."""
    return (v * 0.5 + 0.5).clamp(0, 1)


def normalize(v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit vectors along dim 1; a zero vector (no direction left) becomes +Z."""
    length = v.norm(dim=1, keepdim=True)
    unit = v / length.clamp(min=eps)
    up = torch.zeros_like(v)
    up[:, 2] = 1
    return torch.where(length < eps, up, unit)


def rebuild_z(v: torch.Tensor) -> torch.Tensor:
    """Replace Z (channel 2) by ``sqrt(1 - x^2 - y^2)``: the positive hemisphere."""
    out = v.clone()
    out[:, 2] = (1 - v[:, 0] ** 2 - v[:, 1] ** 2).clamp(min=0).sqrt()
    return out


def quantize(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Unit vectors ``(B, 3, H, W)`` to integer codes (uint8, or int32 holding 16-bit values).

    8 bits: of the 8 codes around each vector, the one whose decoded length is closest to 1
    (weighed against its distance from the vector), so stored normals stay unit length.
    """
    top = full_scale(bits)
    scaled = encode(v) * top
    if bits == 16:
        return (scaled + 0.5).floor_().clamp_(0, top).to(torch.int32)
    low = scaled.floor_().clamp_(0, top)
    high = (low + 1).clamp_(max=top)
    # Per channel and choice (low, high): squared decoded value and squared distance to v.
    square, gap = [], []
    for code in (low, high):
        back = code * (2 / top) - 1
        square.append(back * back)
        gap.append((back - v) ** 2)
    best_cost = torch.full_like(v[:, :1], float("inf"))
    best = torch.zeros_like(v[:, :1], dtype=torch.uint8)
    # The same arithmetic as on fresh tensors, in four reused buffers: allocating (and faulting
    # in) new ones for each of the 8 choices cost more than the arithmetic on chunked bands.
    cost, distance = torch.empty_like(best_cost), torch.empty_like(best_cost)
    better = torch.empty_like(best, dtype=torch.bool)
    for choice, (bx, by, bz) in enumerate(itertools.product((0, 1), repeat=3)):
        torch.add(square[bx][:, 0:1], square[by][:, 1:2], out=cost)
        cost.add_(square[bz][:, 2:3]).sqrt_()  # the decoded length
        torch.add(gap[bx][:, 0:1], gap[by][:, 1:2], out=distance)
        distance.add_(gap[bz][:, 2:3]).sqrt_()
        cost.sub_(1).abs_().add_(distance, alpha=BEST_FIT_DISTANCE_WEIGHT)
        torch.lt(cost, best_cost, out=better)
        torch.where(better, cost, best_cost, out=best_cost)
        best.masked_fill_(better, choice)
    bit = torch.stack([(best >> shift) & 1 for shift in (2, 1, 0)], dim=1)[:, :, 0]
    return torch.where(bit.bool(), high, low).to(torch.uint8)


def length_error(pixels: np.ndarray | torch.Tensor, bits: int = 8) -> float:
    """Mean ``| |n| - 1 |`` of an encoded map, ``(H, W, C>=3)`` integers or ``(B, 3, H, W)``
    floats in ``[0, 1]``. A map with an empty blue channel is two-channel: Z is rebuilt."""
    v = _vectors(pixels, bits)
    if float(v[:, 2].max()) <= -1:
        v = rebuild_z(v)
    return float((v.norm(dim=1) - 1).abs().mean())


def angular_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean angle in degrees between the directions of vector fields ``(B, 3, H, W)``."""
    cos = (normalize(a) * normalize(b)).sum(dim=1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def _vectors(pixels: np.ndarray | torch.Tensor, bits: int) -> torch.Tensor:
    if isinstance(pixels, np.ndarray):
        return decode(to_tensor(pixels[:, :, :3], bits))
    return decode(pixels[:, :3].float())


@dataclass(frozen=True)
class NormalCheck:
    """What a map's pixels say about it being a normal map."""

    unit: bool  # texels decode to (roughly) unit vectors
    two_channel: bool  # X, Y only (blue empty): Z must be rebuilt
    median_error: float  # median | |n| - 1 | (two-channel: share of X, Y outside the disc)

    def describe(self) -> str:
        if self.two_channel:
            return "two-channel (RG) normal map"
        return f"median |len-1| {self.median_error:.3f}"


def check_pixels(pixels: np.ndarray, bits: int) -> NormalCheck:
    """Whether ``(H, W, C)`` integer pixels look like an encoded normal map."""
    if pixels.shape[2] < 3:
        return NormalCheck(False, False, math.inf)
    h, w = pixels.shape[:2]
    stride = max(1, math.ceil(math.sqrt(h * w / CHECK_TEXELS)))
    sample = pixels[::stride, ::stride, :3]
    v = _vectors(np.ascontiguousarray(sample), bits)[0]
    if int(sample[:, :, 2].max()) == 0:
        xy = v[:2].norm(dim=0)
        outside = float((xy > MAX_XY_LENGTH).float().mean())
        return NormalCheck(outside <= 1 - MIN_UNIT_SHARE, True, outside)
    error = (v.norm(dim=0) - 1).abs()
    median = float(error.median())
    share = float((error <= UNIT_BAND).float().mean())
    return NormalCheck(median <= MAX_MEDIAN_LENGTH_ERROR and share >= MIN_UNIT_SHARE, False, median)
