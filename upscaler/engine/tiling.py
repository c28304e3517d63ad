"""Overlapping tiles and their seam-free merge. Pure torch; knows nothing about models.

An image is cut into tiles whose *cores* partition it. Each tile is read with ``overlap`` pixels of
context on every side that has a neighbour. After upscaling, a tile's output is weighted by a ramp
that is zero within ``margin`` pixels of its interior edges (those pixels saw padding instead of
image, so they are wrong) and rises to one inside; the ramps of neighbouring tiles sum to exactly
one. So when ``margin`` is at least the model's receptive field, the merged result equals an
untiled run; with a smaller margin the seams are blended instead of cut. The blend band
(``overlap - margin`` on each side of a core boundary) must be at most half the thinnest core.

Cores can be split into quadrants again (after an out-of-memory error) without disturbing the
partition of unity, because every boundary uses the same ramp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tile:
    """A tile in input pixels: core ``[y0, y1) x [x0, x1)`` read with context ``[in_*)``."""

    y0: int
    y1: int
    x0: int
    x1: int
    in_y0: int
    in_y1: int
    in_x0: int
    in_x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.in_y1 - self.in_y0, self.in_x1 - self.in_x0


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _cuts(length: int, tile: int, multiple: int) -> list[int]:
    """Core boundaries along one axis: near-equal cores of at most about ``tile``, aligned."""
    count = max(1, math.ceil(length / tile))
    cuts = {min(length, _round_up(round(i * length / count), multiple)) for i in range(count)}
    return sorted(cuts | {length})


def make_tile(y0: int, y1: int, x0: int, x1: int, height: int, width: int, overlap: int) -> Tile:
    return Tile(
        y0,
        y1,
        x0,
        x1,
        max(0, y0 - overlap),
        min(height, y1 + overlap),
        max(0, x0 - overlap),
        min(width, x1 + overlap),
    )


def plan_tiles(
    height: int, width: int, tile: int, overlap: int, multiple: int = 1
) -> list[list[Tile]]:
    """Rows of tiles covering ``height x width``; cores of at most about ``tile``, aligned."""
    if tile < multiple or overlap < 0:
        raise ValueError(f"tile {tile} must be >= {multiple} and overlap {overlap} >= 0")
    ys, xs = _cuts(height, tile, multiple), _cuts(width, tile, multiple)
    return [
        [
            make_tile(ya, yb, xa, xb, height, width, overlap)
            for xa, xb in zip(xs, xs[1:], strict=False)
        ]
        for ya, yb in zip(ys, ys[1:], strict=False)
    ]


def split_tile(
    tile: Tile, height: int, width: int, overlap: int, multiple: int = 1, min_side: int = 1
) -> list[Tile]:
    """Split a tile's core into (up to) four quadrants, each with its own context.

    A side shorter than ``2 * min_side`` is not split, so no core gets thinner than ``min_side``.
    """
    h, w = tile.y1 - tile.y0, tile.x1 - tile.x0
    ym = tile.y0 + _round_up(h // 2, multiple) if h >= 2 * max(multiple, min_side) else tile.y1
    xm = tile.x0 + _round_up(w // 2, multiple) if w >= 2 * max(multiple, min_side) else tile.x1
    parts = []
    for ya, yb in ((tile.y0, ym), (ym, tile.y1)):
        for xa, xb in ((tile.x0, xm), (xm, tile.x1)):
            if yb > ya and xb > xa:
                parts.append(make_tile(ya, yb, xa, xb, height, width, overlap))
    return parts


def _ramp(
    core: tuple[int, int],
    extent: tuple[int, int],
    interior: tuple[bool, bool],
    overlap: int,
    margin: int,
    device: torch.device,
) -> torch.Tensor:
    """1-D weights over a tile's output extent; every length is in output pixels.

    Distances are measured from the *nominal* context edges (core -/+ overlap), even where the
    image border clipped the context, so that neighbouring ramps always sum to one.
    """
    pos = torch.arange(extent[0], extent[1], device=device, dtype=torch.float32)
    weights = torch.ones_like(pos)
    for is_interior, dist in (
        (interior[0], pos - (core[0] - overlap)),
        (interior[1], (core[1] + overlap - 1) - pos),
    ):
        if not is_interior:
            continue
        if overlap > margin:
            weights = weights * ((dist - margin + 0.5) / (2 * (overlap - margin))).clamp(0, 1)
        else:  # no room to blend: cut in the middle of the overlap
            weights = weights * (dist >= overlap).float()
    return weights


def tile_weights(
    tile: Tile,
    height: int,
    width: int,
    overlap: int,
    margin: int,
    scale: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Blend weights ``(H_out, W_out)`` for ``tile``'s upscaled output.

    A side is interior when the core does not touch the image border there; only interior sides
    ramp. ``overlap`` and ``margin`` are in input pixels.
    """
    device = device or torch.device("cpu")
    s = scale
    wy = _ramp(
        (tile.y0 * s, tile.y1 * s),
        (tile.in_y0 * s, tile.in_y1 * s),
        (tile.y0 > 0, tile.y1 < height),
        overlap * s,
        margin * s,
        device,
    )
    wx = _ramp(
        (tile.x0 * s, tile.x1 * s),
        (tile.in_x0 * s, tile.in_x1 * s),
        (tile.x0 > 0, tile.x1 < width),
        overlap * s,
        margin * s,
        device,
    )
    return wy[:, None] * wx[None, :]


class BandMerger:
    """Accumulates weighted tile outputs and releases output rows once no later tile touches them.

    Tiles must arrive row by row (any order within a row, sub-tiles included): ``release`` the
    rows above a tile row, ``reserve`` the rows it writes, then ``add`` its tiles. Memory is one
    band of output rows (a tile row with its context), reused from row to row, not the whole
    output.
    """

    def __init__(
        self, batch: int, channels: int, width_out: int, scale: int, device: torch.device
    ) -> None:
        self.batch, self.channels, self.width_out, self.scale = batch, channels, width_out, scale
        self.device = device
        self.buffer = torch.zeros(batch, channels, 0, width_out, device=device)
        self.y0 = 0  # output row at the top of ``buffer``
        self.rows = 0  # rows of ``buffer`` in use
        self._released = 0  # rows at the top handed out by ``release``, dropped by ``reserve``

    def release(self, in_y0: int) -> tuple[int, torch.Tensor] | None:
        """``(y, rows)``: the finished output rows above input row ``in_y0``, or None. The rows
        are a view of the band, valid until the next ``reserve``."""
        first = in_y0 * self.scale
        if first > self.y0 + self.rows:  # cannot happen with a valid plan
            raise RuntimeError(f"output rows {self.y0 + self.rows}..{first} were never written")
        done = min(first, self.y0 + self.rows) - self.y0
        if done <= 0:
            return None
        self._released = done
        return self.y0, self.buffer[:, :, :done]

    def reserve(self, in_y1: int) -> None:
        """Drop the released rows and hold zeroed rows down to input row ``in_y1``."""
        done, self._released = self._released, 0
        kept = self.rows - done
        needed = in_y1 * self.scale - (self.y0 + done)
        if needed < kept:
            raise RuntimeError(f"tile rows out of order (row {in_y1} after {self.y0 + done})")
        if needed > self.buffer.shape[2]:
            rest = self.buffer[:, :, done : self.rows].clone()
            self.buffer = rest  # the old band is freed before the larger one is allocated
            self.buffer = torch.zeros(
                self.batch, self.channels, needed, self.width_out, device=self.device
            )
            self.buffer[:, :, :kept] = rest
        else:
            if done and kept:  # overlapping rows: copy through a temporary
                self.buffer[:, :, :kept] = self.buffer[:, :, done : self.rows].clone()
            self.buffer[:, :, kept:needed].zero_()
        self.y0 += done
        self.rows = needed

    def add(self, tile: Tile, output: torch.Tensor, weights: torch.Tensor, items: int = 0) -> None:
        """Add ``tile``'s output ``(n, C, h*s, w*s)`` for items ``items..items+n``, weighted by
        ``weights`` ``(h*s, w*s)``. ``output`` is scaled in place."""
        s = self.scale
        ys, xs = tile.in_y0 * s - self.y0, tile.in_x0 * s
        if ys < 0 or ys + output.shape[2] > self.rows:
            raise RuntimeError(f"tile at input row {tile.in_y0} lies outside the reserved band")
        region = self.buffer[
            items : items + output.shape[0], :, ys : ys + output.shape[2], xs : xs + output.shape[3]
        ]
        region.add_(output.mul_(weights))

    def finish(self) -> tuple[int, torch.Tensor] | None:
        """The last rows; the merger is empty afterwards."""
        if not self.rows:
            return None
        rows = self.y0, self.buffer[:, :, : self.rows]
        self.buffer = self.buffer[:, :, :0]
        self.y0, self.rows = self.y0 + self.rows, 0
        return rows
