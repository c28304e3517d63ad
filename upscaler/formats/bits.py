"""Integer pixel depths: the largest level of a depth, and 16 -> 8 bits for formats that hold 8."""

from __future__ import annotations

import numpy as np


def full_scale(bits: int) -> int:
    """The largest level: 255 for 8-bit pixels, 65535 for 16-bit."""
    return 65535 if bits == 16 else 255


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """16-bit levels to the nearest 8-bit ones (``round(v * 255 / 65535)``); 8-bit as is."""
    if pixels.dtype != np.uint16:
        return pixels
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
