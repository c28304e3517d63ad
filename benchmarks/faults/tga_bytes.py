"""Hand-built TGA files: every image type and origin, as other tools write them."""

from __future__ import annotations

import struct

import numpy as np

# Image types: 1 colour-mapped, 2 true colour, 3 gray; +8 run-length encoded.
MAPPED, TRUE_COLOUR, GRAY, RLE = 1, 2, 3, 8
TOP, RIGHT = 0x20, 0x10  # image descriptor: origin at the top, rows stored right to left


def tga(
    pixels: np.ndarray,
    *,
    origin: int = TOP,
    rle: bool = False,
    id_field: bytes = b"",
    palette: np.ndarray | None = None,
) -> bytes:
    """A TGA file for ``(H, W, C)`` uint8 pixels in display order (C = 1 gray, 3 BGR-stored
    RGB, 4 RGBA; with ``palette`` ``(N, 3)``, ``pixels`` ``(H, W, 1)`` hold indices), stored
    from the corner ``origin`` names (bottom-left when 0)."""
    h, w, c = pixels.shape
    rows = pixels if origin & TOP else pixels[::-1]
    rows = rows[:, ::-1] if origin & RIGHT else rows
    if palette is not None:
        kind, depth, bits = MAPPED, 8, 0
        cmap = struct.pack("<HHB", 0, len(palette), 24)
        table = np.ascontiguousarray(palette[:, ::-1]).tobytes()
    else:
        kind = GRAY if c == 1 else TRUE_COLOUR
        depth, bits = 8 * c, 8 if c == 4 else 0
        cmap, table = bytes(5), b""
        if c >= 3:
            rows = np.concatenate([rows[:, :, 2::-1], rows[:, :, 3:]], axis=2)
    header = struct.pack(
        "<BBB5sHHHHBB",
        len(id_field),
        1 if palette is not None else 0,
        kind + (RLE if rle else 0),
        cmap,
        0,
        0,
        w,
        h,
        depth,
        bits | origin,
    )
    data = np.ascontiguousarray(rows).tobytes()
    if rle:  # raw packets of at most 128 texels, never across a row
        step = depth // 8
        packets = []
        for row in np.ascontiguousarray(rows).reshape(h, w * step):
            for x in range(0, w, 128):
                n = min(128, w - x)
                packets.append(bytes([n - 1]) + row[x * step : (x + n) * step].tobytes())
        data = b"".join(packets)
    return header + id_field + table + data
