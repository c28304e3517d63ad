"""Palette (indexed-colour) textures: snapping upscaled colours back to the source's palette."""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 1 << 18  # texels per distance computation (keeps the distance matrix small)


def snap(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Each texel of ``(H, W, C)`` uint8 ``pixels`` replaced by its nearest ``(N, C)`` palette
    entry (Euclidean distance over the C channels: RGB, or RGBA for palettes with alpha)."""
    if pixels.shape[2] != palette.shape[1]:
        raise ValueError(
            f"pixels have {pixels.shape[2]} channels but the palette {palette.shape[1]}"
        )
    flat = torch.from_numpy(pixels.reshape(-1, pixels.shape[2]).astype(np.float32))
    entries = torch.from_numpy(palette.astype(np.float32))
    index = torch.empty(flat.shape[0], dtype=torch.long)
    for start in range(0, flat.shape[0], CHUNK):
        part = flat[start : start + CHUNK]
        index[start : start + CHUNK] = torch.cdist(
            part, entries, compute_mode="donot_use_mm_for_euclid_dist"
        ).argmin(dim=1)
    return palette[index.numpy()].reshape(pixels.shape)
