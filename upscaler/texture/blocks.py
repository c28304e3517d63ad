"""Block compression seen in the pixels: was this texture ever stored as BC1/BC2/BC3?

A BC1-BC3 colour block keeps two endpoint colours and at most two colours between them, so
every decoded 4x4 block (on the grid that starts at the top-left texel) holds at most four
distinct colours. Art that was never block-compressed has up to sixteen in every block with any
texture in it. The test counts, over the blocks with more than one colour, the share with at
most four: DDS files decoded from BC1-BC3, and PNGs exported from them, score about 1; clean,
JPEG'd or resized art scores near 0. Indexed-colour art with few colours per block (pixel art,
16-colour palettes) scores high too, and is treated the same way: flat runs of a few colours with
hard edges, which is what the model for block-compressed inputs was trained on as well.
"""

from __future__ import annotations

import numpy as np

BLOCK = 4
MAX_COLOURS = 4  # BC1-BC3: two endpoints and two colours between them
MIN_BLOCKS = 16  # fewer textured blocks than this decide nothing
THRESHOLD = 0.9  # share of textured blocks with <= 4 colours (BC1 round trips: ~1.0)
MAX_BLOCKS = 1 << 16  # blocks read at most (a 1024 x 1024 texture's), in whole block rows


def block_share(pixels: np.ndarray) -> tuple[float, int]:
    """``(share, textured)``: of the aligned 4x4 blocks of ``(H, W, C)`` integer ``pixels`` (their
    colour: the gray channel, or RGB) holding more than one colour (``textured``), the share that
    hold at most four. Partial blocks at the right or bottom edge are left out; on a texture of
    more than ``MAX_BLOCKS`` blocks, whole rows of blocks spread evenly over it are read."""
    rows, cols = pixels.shape[0] // BLOCK, pixels.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return 0.0, 0
    picked = np.unique(np.linspace(0, rows - 1, min(rows, max(1, MAX_BLOCKS // cols))).round())
    channels = 1 if pixels.shape[2] < 3 else 3
    distinct = np.concatenate([_distinct(pixels, int(r) * BLOCK, cols, channels) for r in picked])
    textured = distinct > 1
    count = int(np.count_nonzero(textured))
    if count == 0:
        return 0.0, 0
    return float(np.count_nonzero(distinct[textured] <= MAX_COLOURS)) / count, count


def _distinct(pixels: np.ndarray, top: int, cols: int, channels: int) -> np.ndarray:
    """The number of distinct colours in each of the ``cols`` blocks of the block row at ``top``."""
    band = pixels[top : top + BLOCK, : cols * BLOCK, :channels].astype(np.uint64)
    packed = np.zeros(band.shape[:2], np.uint64)
    for c in range(channels):
        packed = (packed << np.uint64(16)) | band[:, :, c]
    blocks = np.sort(packed.reshape(BLOCK, cols, BLOCK).swapaxes(0, 1).reshape(cols, -1), axis=1)
    return 1 + np.count_nonzero(np.diff(blocks, axis=1), axis=1)


def looks_block_compressed(pixels: np.ndarray) -> bool:
    """Whether ``pixels`` look decoded from BC1-BC3 colour blocks (see the module's docstring):
    at least ``MIN_BLOCKS`` textured blocks, of which at least ``THRESHOLD`` hold <= 4 colours."""
    share, textured = block_share(pixels)
    return textured >= MIN_BLOCKS and share >= THRESHOLD
