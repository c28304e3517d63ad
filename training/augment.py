"""Flips and 90-degree rotations that keep normal maps valid; mattes over flat colours.

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


MATTE_CELLS = (3, 8)  # the mask's smooth noise has this many cells across, at random


def matte(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(C, H, W)`` uint8 colour crop drawn over a flat background through a hard-edged mask:
    blobs cut from smooth random noise at a random level, so that between a fifth and four
    fifths of the crop keeps the picture. The background is white (40%), black (40%) or one
    random colour; alpha, if any, is left as it was.

    Why: game textures hold sprites, UI and decals on flat, saturated backgrounds, which photos
    (SPAN's training data) rarely do; on them the official SPAN x2, and texture-x2 fine-tuned
    from it, amplified its features into noise blobs (values from -18 to 23 on a Warzone 2100
    tile, a third of its pixels outside [-0.25, 1.25])."""
    channels, height, width = image.shape
    cells = int(torch.randint(MATTE_CELLS[0], MATTE_CELLS[1] + 1, (), generator=generator))
    noise = torch.rand(1, 1, cells, cells, generator=generator)
    smooth = torch.nn.functional.interpolate(
        noise, size=(height, width), mode="bicubic", align_corners=False
    )[0, 0]
    share = 0.2 + 0.6 * float(torch.rand((), generator=generator))
    keep = smooth >= torch.quantile(smooth.flatten(), 1 - share)
    pick = float(torch.rand((), generator=generator))
    colour = torch.rand(3, generator=generator)
    if pick < 0.4:
        colour = torch.ones(3)
    elif pick < 0.8:
        colour = torch.zeros(3)
    background = (colour * 255).round().to(torch.uint8)[:, None, None]
    out = image.clone()
    rgb = min(channels, 3)
    out[:rgb] = torch.where(keep, image[:rgb], background[:rgb])
    return out
