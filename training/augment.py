"""Flips and 90-degree rotations that keep normal maps valid.

A normal map stores a direction per texel: mirroring or rotating the picture without turning the
vectors gives bumps lit from the wrong side. For a normal map the tangent-space components are
transformed with the image: a horizontal flip negates X, a vertical flip negates Y, and a quarter
turn rotates (X, Y). Which way Y points on screen depends on the convention (OpenGL: up; DirectX:
down, the green channel flipped), so rotations need to know it; it is never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augmentation:
    flip_x: bool = False  # mirror left-right
    flip_y: bool = False  # mirror top-bottom
    quarter_turns: int = 0  # counter-clockwise, as seen on screen


def sample_augmentation(
    generator: torch.Generator, *, flip: bool = True, rotate: bool = True
) -> Augmentation:
    draws = torch.randint(0, 4, (3,), generator=generator).tolist()  # fixed draw count
    return Augmentation(
        flip_x=flip and draws[0] % 2 == 1,
        flip_y=flip and draws[1] % 2 == 1,
        quarter_turns=draws[2] if rotate else 0,
    )


def _turn_vectors(x: torch.Tensor, y_up: torch.Tensor, turns: int) -> tuple[torch.Tensor, ...]:
    for _ in range(turns % 4):  # counter-clockwise with Y up: (x, y) -> (-y, x)
        x, y_up = -y_up, x
    return x, y_up


def augment(
    image: torch.Tensor,
    aug: Augmentation,
    *,
    normal: bool = False,
    convention: str = "opengl",
) -> torch.Tensor:
    """Apply ``aug`` to ``(..., C, H, W)``; for a ``normal`` map also transform its vectors.

    Normal maps are encoded as ``(v + 1) / 2`` in ``[0, 1]`` (8-bit 128 = zero), RGB = XYZ.
    """
    if convention not in ("opengl", "directx"):
        raise ValueError(f"convention must be opengl or directx, got {convention!r}")
    out = image
    if aug.flip_x:
        out = out.flip(-1)
    if aug.flip_y:
        out = out.flip(-2)
    if aug.quarter_turns % 4:
        out = torch.rot90(out, aug.quarter_turns, dims=(-2, -1))
    if not normal:
        return out
    sign = 1.0 if convention == "opengl" else -1.0
    x = out[..., 0, :, :] * 2 - 1
    y_up = (out[..., 1, :, :] * 2 - 1) * sign
    if aug.flip_x:
        x = -x
    if aug.flip_y:
        y_up = -y_up
    x, y_up = _turn_vectors(x, y_up, aug.quarter_turns)
    channels = [(x + 1) / 2, (y_up * sign + 1) / 2, out[..., 2, :, :]]
    return torch.cat([torch.stack(channels, dim=-3), out[..., 3:, :, :]], dim=-3)
