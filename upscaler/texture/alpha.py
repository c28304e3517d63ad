"""What an alpha channel means, and keeping that meaning through upscaling and mip-mapping.

* **cutout** (alpha test: foliage, fences; mostly 0 or 255): the share of texels at or above half
  alpha ("coverage") is what the game sees; it is kept by re-thresholding after every resampling.
* **blended** (glass, smoke, soft decals): upscaled like any other channel.
* **data** (height, gloss... packed into A of a normal or data map): a plain linear channel.
* **absent**: no alpha channel, or one with a single value everywhere (kept as that value).

Under fully transparent texels the colour is garbage that bleeds into the visible edge when the
texture is filtered or upscaled (dark or bright fringes): ``bleed`` fills it from the visible
neighbourhood first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from upscaler.texture.colour import linear_to_srgb, srgb_to_linear
from upscaler.texture.levels import full_scale, quantize, to_levels, to_tensor

# Cutout: at least this share of texels within NEAR_BINARY of 0 or of full, with both present.
MIN_BINARY_SHARE = 0.85
NEAR_BINARY = 8 / 255
MIN_SIDE_SHARE = 0.005
# After re-thresholding, values this close to 0 or full are snapped there (cutouts stay binary).
SNAP = 2 / 255
CONSTANT_SPREAD = 2 / 255  # an alpha plane within this spread holds no information
U16 = 65535


def constant(alpha: np.ndarray, bits: int) -> int | None:
    """The value of an alpha plane that holds (nearly) one value everywhere, else None. Block
    compression leaves opaque alpha at 254/255: that is opaque, kept as 255."""
    top = full_scale(bits)
    low, high = int(alpha.min()), int(alpha.max())
    if high - low > round(CONSTANT_SPREAD * top):
        return None
    return high if high == top else int(np.round(alpha.mean()))


def classify(alpha: np.ndarray, bits: int) -> str:
    """``cutout``, ``blended`` or ``absent`` for an integer alpha plane ``(H, W)``."""
    if constant(alpha, bits) is not None:
        return "absent"
    top = full_scale(bits)
    near = round(NEAR_BINARY * top)
    clear = float(np.mean(alpha <= near))
    solid = float(np.mean(alpha >= top - near))
    if clear >= MIN_SIDE_SHARE and solid >= MIN_SIDE_SHARE and clear + solid >= MIN_BINARY_SHARE:
        return "cutout"
    return "blended"


def coverage(alpha: np.ndarray, bits: int) -> float:
    """Share of texels an alpha test at half alpha lets through (``alpha >= 128`` in 8 bits)."""
    return float(np.mean(alpha >= _reference(bits)))


def soft_share(alpha: np.ndarray, bits: int) -> float:
    """Share of texels that are neither (nearly) transparent nor (nearly) opaque."""
    top = full_scale(bits)
    near = round(NEAR_BINARY * top)
    return float(np.mean((alpha > near) & (alpha < top - near)))


def _reference(bits: int) -> int:
    top = full_scale(bits)
    return (top + 1) // 2


def keep_coverage(
    alpha16: np.ndarray, target: float, bits: int, soft: float | None = None
) -> np.ndarray:
    """Re-threshold ``alpha16`` (integers in ``[0, 65535]``, any shape) so that ``target`` of the
    texels pass the half-alpha test; returns ``bits``-bit integers of the same shape.

    The level t whose share of texels at or above it is closest to ``target`` is found from the
    histogram; values are then mapped piecewise-linearly, ``[0, t) -> [0, ref)`` and
    ``[t, 1] -> [ref, 1]``, so the test passes exactly the chosen texels while soft edges keep a
    ramp. ``soft``: the most texels that may stay in between (the source's ``soft_share``);
    a blurrier ramp is steepened around the threshold until no more are.
    """
    counts = np.bincount(alpha16.ravel(), minlength=U16 + 1)
    at_or_above = np.cumsum(counts[::-1])[::-1]  # texels >= level, per level 0..65535
    share = np.append(at_or_above, 0) / max(1, alpha16.size)  # level 65536: none pass
    miss = np.abs(share - target)
    best = np.flatnonzero(miss == miss.min())  # levels that all pass the same texels
    t = int(best[len(best) // 2])  # mid-gap: the ramp around the test stays centred
    mapped = _remap(t)
    if soft is not None:
        mapped = _steepen(mapped, counts, soft)
    return _quantize(mapped, t, bits)[alpha16]


def _remap(t: int) -> np.ndarray:
    """Per 16-bit level: the piecewise-linear map that puts level t at half alpha."""
    level = np.arange(U16 + 1, dtype=np.float64)
    below = np.minimum(level / max(t, 1) * 0.5, 0.5 - 1e-6)
    above = np.maximum(0.5 + (level - t) / max(U16 - t, 1) * 0.5, 0.5 + 1e-6)
    return np.where(level < t, below, above)  # each side strictly on its side of the test


def _steepen(mapped: np.ndarray, counts: np.ndarray, soft: float) -> np.ndarray:
    """Scale distances from half alpha by the least gain >= 1 that leaves at most ``soft`` of
    the texels (weighted by ``counts``) strictly between the near-binary bands."""
    distance = np.abs(mapped - 0.5)
    order = np.argsort(distance, kind="stable")
    inside = np.cumsum(counts[order]) / max(1, counts.sum())
    k = int(np.searchsorted(inside, soft, side="right"))
    if k >= len(order):
        return mapped
    edge = 0.5 - NEAR_BINARY  # texels closer to half than this count as soft
    gain = edge / max(distance[order[k]], 1e-9)
    if gain <= 1:
        return mapped
    return np.clip((mapped - 0.5) * gain + 0.5, 0, 1)


def _quantize(mapped: np.ndarray, t: int, bits: int) -> np.ndarray:
    """The lookup table from 16-bit levels to ``bits``-bit output."""
    top = full_scale(bits)
    ref = _reference(bits)
    level = np.arange(U16 + 1)
    out = np.where(mapped <= SNAP, 0.0, np.where(mapped >= 1 - SNAP, 1.0, mapped))
    q = np.floor(out * top + 0.5)
    # Rounding must not move a value across the test: keep each side on its side.
    q = np.where(level < t, np.minimum(q, ref - 1), np.maximum(q, ref))
    return q.astype(np.uint16 if bits == 16 else np.uint8)


def to_u16(alpha: torch.Tensor) -> np.ndarray:
    """Float alpha in ``[0, 1]`` to 16-bit integers for ``keep_coverage``."""
    return (alpha.clamp(0, 1) * U16 + 0.5).floor().to(torch.int32).cpu().numpy().astype(np.uint16)


def bleed(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Fill the colour of fully transparent texels from the visible ones around them.

    ``colour`` ``(B, C, H, W)`` and ``alpha`` ``(B, 1, H, W)`` floats in ``[0, 1]``. Push-pull:
    alpha-weighted colour is averaged down a pyramid, and every transparent texel takes the
    smoothly upsampled average of the nearest level that has visible texels. Visible texels are
    returned unchanged; an image with no visible texel is returned as it is.
    """
    hole = alpha <= 0
    if not bool(hole.any()) or bool(hole.all()):
        return colour
    weight = alpha.clamp(min=0)
    return torch.where(hole, _push_pull(colour * weight, weight), colour)


def _push_pull(weighted: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Alpha-weighted colour (and its weight) averaged down a pyramid; back at this level, each
    texel with weight keeps its own colour, the others take the upsampled fill."""
    levels = [(weighted, weight)]
    while max(levels[-1][1].shape[-2:]) > 1:
        c, w = levels[-1]
        pad = (0, c.shape[-1] % 2, 0, c.shape[-2] % 2)
        c, w = F.pad(c, pad), F.pad(w, pad)
        levels.append((F.avg_pool2d(c, 2) * 4, F.avg_pool2d(w, 2) * 4))
    c, w = levels[-1]
    filled = c / w.clamp(min=1e-12)
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(filled, scale_factor=2, mode="bilinear", align_corners=False)
        up = up[..., : c.shape[-2], : c.shape[-1]]
        filled = torch.where(w > 0, c / w.clamp(min=1e-12), up)
    return filled


BLEED_ROWS = 512  # rows of full-resolution floats held at once by ``bleed_levels``


def bleed_levels(
    pixels: np.ndarray, bits: int, channels: list[int], rows: int = BLEED_ROWS
) -> np.ndarray:
    """``bleed`` on integer ``(H, W, C)`` levels (alpha last), band by band.

    The result is that of quantising ``bleed`` of the whole image in floats (up to float
    rounding: at most one level, on a few transparent texels; visible ones are never touched),
    but only the
    quarter-size pyramid and one band of ``rows`` full-resolution rows are ever held as floats:
    a 16384 x 16384 RGBA texture needs about 1.5 GB here instead of some 20 GB. The first
    pyramid level is pooled band by band (2 x 2 blocks never straddle a band), and the last
    upsampling is computed per band from the rows of the level below with a halo, with the same
    bilinear weights as the whole image. Only fully transparent texels change.
    """
    h, w = pixels.shape[:2]
    transparent = pixels[:, :, -1] == 0
    if not transparent.any() or transparent.all():
        return pixels
    rows = max(2, rows - rows % 2)
    h1, w1 = (h + 1) // 2, (w + 1) // 2
    c1 = torch.empty(1, len(channels), h1, w1)
    w1_ = torch.empty(1, 1, h1, w1)
    for r0 in range(0, h, rows):
        band = to_tensor(pixels[r0 : r0 + rows], bits)
        weight = band[:, -1:].clamp(min=0)
        pad = (0, w % 2, 0, band.shape[-2] % 2)
        top, n = r0 // 2, (band.shape[-2] + 1) // 2
        c1[..., top : top + n, :] = F.avg_pool2d(F.pad(band[:, channels] * weight, pad), 2) * 4
        w1_[..., top : top + n, :] = F.avg_pool2d(F.pad(weight, pad), 2) * 4
    filled = _push_pull(c1, w1_)  # at the first level; the full-size step is done per band
    out = pixels.copy()
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        holes = transparent[r0:r1]
        if not holes.any():
            continue
        s0, s1 = max(0, r0 // 2 - 1), min(h1, r1 // 2 + 2)  # a halo row or two each side
        up = F.interpolate(
            filled[..., s0:s1, :], scale_factor=2, mode="bilinear", align_corners=False
        )
        values = to_levels(quantize(up[..., r0 - 2 * s0 : r1 - 2 * s0, :w], bits))
        target = out[r0:r1]
        for k, channel in enumerate(channels):
            target[..., channel][holes] = values[..., k][holes].astype(out.dtype)
    return out


PREMULTIPLIED_ROWS = 1024  # rows converted at once by the premultiplied-alpha helpers


def clamp_premultiplied(pixels: np.ndarray, bits: int, kind: str) -> np.ndarray:
    """Premultiplied ``(H, W, C)`` levels (alpha last) with no colour above its alpha, in place.

    In premultiplied alpha a texel's colour is at most its alpha: more adds light where the
    texture is (partly) transparent, and any colour under alpha 0 glows when blended. Model
    overshoot and resampling can break that; this restores it. The bound is the stored alpha
    level for every map kind: blending reads the stored values (DX10 alpha mode 2 on UNORM
    formats), so a colour map bounded in linear light (``srgb(a)``, above ``a``) still broke it.
    ``kind`` is kept for the callers' symmetry with ``follow_alpha``.
    """
    for r0 in range(0, pixels.shape[0], PREMULTIPLIED_ROWS):
        band = pixels[r0 : r0 + PREMULTIPLIED_ROWS]
        np.minimum(band[:, :, :-1], band[:, :, -1:], out=band[:, :, :-1])
    return pixels


def follow_alpha(pixels: np.ndarray, before16: np.ndarray, bits: int, kind: str) -> np.ndarray:
    """Premultiplied ``(H, W, C)`` levels whose alpha was just changed (a cutout re-threshold)
    from ``before16`` (16-bit levels): colour scaled by new / old alpha (in linear light for
    colour maps), in place, so the straight colour under it stays what it was."""
    top = full_scale(bits)
    for r0 in range(0, pixels.shape[0], PREMULTIPLIED_ROWS):
        band = pixels[r0 : r0 + PREMULTIPLIED_ROWS]
        old = torch.from_numpy(before16[r0 : r0 + PREMULTIPLIED_ROWS].astype(np.float32))[..., None]
        new = torch.from_numpy(band[:, :, -1:].astype(np.float32)) / top
        x = torch.from_numpy(band[:, :, :-1].astype(np.float32)) / top
        colour = srgb_to_linear(x) if kind == "color" else x
        ratio = torch.where(old > 0, new * U16 / old.clamp(min=1), torch.zeros_like(new))
        colour = (colour * ratio).clamp(0, 1)
        colour = linear_to_srgb(colour) if kind == "color" else colour
        band[:, :, :-1] = (colour * top + 0.5).floor().numpy().astype(pixels.dtype)
    return pixels


def unpremultiply(pixels: np.ndarray, bits: int, kind: str) -> np.ndarray:
    """Premultiplied ``(H, W, C)`` levels (alpha last) to straight alpha, as a new array: colour
    divided by alpha (in linear light for colour maps); 0 where alpha is 0."""
    top = full_scale(bits)
    out = pixels.copy()
    for r0 in range(0, pixels.shape[0], PREMULTIPLIED_ROWS):
        band = out[r0 : r0 + PREMULTIPLIED_ROWS]
        x = torch.from_numpy(band.astype(np.float32)) / top
        a = x[:, :, -1:]
        colour = srgb_to_linear(x[:, :, :-1]) if kind == "color" else x[:, :, :-1]
        straight = torch.where(a > 0, colour / a.clamp(min=1e-12), torch.zeros_like(colour))
        straight = linear_to_srgb(straight) if kind == "color" else straight.clamp(0, 1)
        band[:, :, :-1] = (straight * top + 0.5).floor().numpy().astype(pixels.dtype)
    return out
