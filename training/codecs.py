"""Lossy codec round trips with real encoders, as degradations: JPEG, BC1/BC3 (DXT1/DXT5), palette.

Textures reach games through these codecs, so the model should learn to undo their artefacts: the
4x4 blocks and 565 colour banding of block compression, JPEG ringing, and the banding or dither
patterns of a reduced palette. The encoders are real ones: libjpeg and Pillow's median-cut
quantiser, and for block compression the encoders ``upscale`` writes DDS files with
(``upscaler.formats.bcn``): maintained, fast enough for loader workers, and deterministic.

This module is the training side's only user of Pillow; it never touches files. Each function takes
one ``(C, H, W)`` float image in ``[0, 1]`` on CPU (C = 3 or 4) and returns the decoded image of the
same shape, quantised to 8 bits.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from upscaler.formats import bcn
from upscaler.texture.levels import quantize, round_to_levels

BC_BLOCKS = {"bc1": 1, "bc3": 3}


def _to_pil(x: torch.Tensor) -> Image.Image:
    if x.ndim != 3 or x.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3|4, H, W) image, got {tuple(x.shape)}")
    array = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = np.ascontiguousarray(array.permute(1, 2, 0).numpy())
    return Image.fromarray(pixels, "RGBA" if x.shape[0] == 4 else "RGB")


def _from_pil(im: Image.Image, channels: int, like: torch.Tensor) -> torch.Tensor:
    im = im.convert("RGBA" if channels == 4 else "RGB")
    array = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return (array.float() / 255).to(like.device, like.dtype)


def jpeg_roundtrip(x: torch.Tensor, quality: int, *, subsampling: int = 2) -> torch.Tensor:
    """Encode as JPEG at ``quality`` (1..95) and decode. Alpha, if any, passes through.

    ``subsampling``: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (what most encoders default to).
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    buffer = io.BytesIO()
    _to_pil(x[:3]).save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as im:
        rgb = _from_pil(im, 3, x)
    return torch.cat([rgb, round_to_levels(x[3:])]) if x.shape[0] == 4 else rgb


def bc_roundtrip(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """Block-compress as ``bc1`` (DXT1: 565 endpoints, 2-bit indices per texel of each 4x4
    block) or ``bc3`` (DXT5: the same colour block plus an interpolated 8-level alpha block), and
    decode, with the encoders ``upscale`` writes DDS files with (``upscaler.formats.bcn``). Any
    size works; partial blocks are padded. BC1 is opaque here (its 1-bit alpha would punch
    holes); a fourth channel passes through it rounded to 8 bits."""
    if fmt not in BC_BLOCKS:
        raise ValueError(f"unknown block format {fmt!r}; known: {', '.join(BC_BLOCKS)}")
    if x.ndim != 3 or x.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3|4, H, W) image, got {tuple(x.shape)}")
    block = BC_BLOCKS[fmt]
    levels = quantize(x.detach().float().cpu(), 8).permute(1, 2, 0).numpy()
    kept = levels if block == 3 else levels[:, :, :3]
    decoded = bcn.round_trip(np.ascontiguousarray(kept), block)
    out = torch.from_numpy(decoded).permute(2, 0, 1)
    out = (out.float() / 255).to(x.device, x.dtype)
    if x.shape[0] == 4 and block == 1:
        return torch.cat([out, round_to_levels(x[3:])])
    return out


def palette_quantise(x: torch.Tensor, colours: int, *, dither: bool) -> torch.Tensor:
    """Reduce the RGB of ``x`` to at most ``colours`` (2..256) colours, with Floyd-Steinberg
    dithering or without (flat bands), as old and pixel-art textures are stored. Alpha is kept."""
    if not 2 <= colours <= 256:
        raise ValueError(f"palette size must be in [2, 256], got {colours}")
    im = _to_pil(x[:3])
    quantised = im.quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT)
    if dither:  # Pillow dithers only when mapping onto a given palette: map again onto this one
        quantised = im.quantize(palette=quantised, dither=Image.Dither.FLOYDSTEINBERG)
    rgb = _from_pil(quantised, 3, x)
    return torch.cat([rgb, round_to_levels(x[3:])]) if x.shape[0] == 4 else rgb
