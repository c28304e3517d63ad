"""Mip chains generated per map type: colour in linear light, normals averaged as vectors and
renormalised at every level, data as is, cutout alpha re-thresholded at every level so an
alpha-tested texture keeps its coverage in the distance."""

from __future__ import annotations

import numpy as np

from upscaler.texture import alpha as alpha_
from upscaler.texture.levels import to_levels, to_tensor
from upscaler.texture.maps import MapInfo, quantize_filtered, to_filter_space
from upscaler.texture.resample import resize


def chain_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of every level of a full chain, down to 1x1."""
    sizes = [(height, width)]
    while sizes[-1] != (1, 1):
        h, w = sizes[-1]
        sizes.append((max(1, h // 2), max(1, w // 2)))
    return sizes


def build_chain(
    pixels: np.ndarray, bits: int, info: MapInfo | None, levels: int
) -> list[np.ndarray]:
    """The top level ``pixels`` ``(H, W, C)`` and ``levels - 1`` smaller ones, same dtype.

    Each level is box-filtered from the one above in filter space (so a normal's average keeps
    its shortening until it is renormalised for storage, exactly like averaging the top level).
    """
    info = info or MapInfo()
    sizes = chain_sizes(*pixels.shape[:2])[:levels]
    chain = [pixels]
    if len(sizes) == 1:
        return chain
    x = to_tensor(pixels, bits)
    cutout = info.alpha == "cutout" and pixels.shape[2] in (2, 4)
    target = alpha_.coverage(pixels[:, :, -1], bits) if cutout else None
    soft = alpha_.soft_share(pixels[:, :, -1], bits) if cutout else None
    x = to_filter_space(x, info)
    for size in sizes[1:]:
        x = resize(x, size, "box", wrap=info.wrap)
        level = to_levels(quantize_filtered(x, info, bits)).astype(pixels.dtype)
        if target is not None:
            before = alpha_.to_u16(x[0, -1])
            level[:, :, -1] = alpha_.keep_coverage(before, target, bits, soft)
            if info.premultiplied:
                alpha_.follow_alpha(level, before, bits, info.kind)
        if info.premultiplied:
            alpha_.clamp_premultiplied(level, bits, info.kind)
        chain.append(np.ascontiguousarray(level))
    return chain
