"""How one image is upscaled, decided before any pixel moves: a pure function of the image's
shape, the model's contract and the memory budget.

``plan_upscale`` picks the channel groups fed to the model, the wrap padding or circular mode of a
tileable texture, the size padding, the tile grid with its overlap and blend margin, the items per
forward pass and the output window; the pipeline then only carries the plan out (and backs off
on out-of-memory). Tests inspect a plan without running a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch

from upscaler.engine import budget as budget_
from upscaler.engine.budget import MIN_TILE, Costs, Shape
from upscaler.engine.tiling import Tile, plan_tiles
from upscaler.models.descriptor import ModelInfo

DEFAULT_BLEND = 4  # input pixels of cross-fade beyond the receptive field at tile seams
MAX_BLEND = MIN_TILE // 4  # the blend band must fit in half of the thinnest core
# What circular padding costs over a plain forward (a padded copy of every activation): small
# beside fp32 convolutions, a third to a half beside bf16 ones on a CPU with AMX (measured on a
# 64 x 16 compact at 96 px); wrap padding costs the extra pixels. The cheaper one is used.
CIRCULAR_COST = {True: 1.05, False: 1.5}  # keyed by "runs in fp32"
MAX_OVERLAP = 64  # input pixels; measured receptive fields stay below (see models.measurement)


class PlanOptions(TypedDict, total=False):
    """A caller's choices for one call (see ``plan_upscale``)."""

    tile: int | None
    overlap: int | None
    wrap: tuple[bool, bool]
    context: int


@dataclass(frozen=True)
class Group:
    """Image channels fed to the model together; ``replicate`` feeds one channel as all inputs."""

    channels: tuple[int, ...]
    replicate: bool


@dataclass(frozen=True)
class UpscalePlan:
    """Everything decided about one ``(B, C, H, W)`` image before the model runs.

    Lengths are in input pixels unless named otherwise. The model sees ``size`` (the image, wrap
    padded by ``pad`` per side along (rows, columns), then replicate padded at the end to the
    model's multiple and minimum) as ``items`` batch items (``groups`` per image), cut into
    ``rows`` of tiles; ``circular``: one pass with every convolution padded circularly instead.
    """

    image: tuple[int, int, int, int]  # (B, C, H, W)
    groups: tuple[Group, ...]
    pad: tuple[int, int]
    circular: bool
    size: tuple[int, int]
    tile: int
    fixed_tile: bool  # the caller set ``tile``: out of memory fails rather than shrink it
    overlap: int
    margin: int  # output within this of a tile's cut edge is discarded (see ``tile_weights``)
    rows: tuple[tuple[Tile, ...], ...]
    items_per_pass: int  # at the start: out of memory halves it
    window: tuple[int, int, int, int]  # the output crop: (top, height, left, width), output px
    chunk: int  # output rows converted and handed on at once

    @property
    def items(self) -> int:
        return len(self.groups) * self.image[0]

    @property
    def tiles(self) -> int:
        return sum(len(row) for row in self.rows)

    @property
    def one_pass(self) -> bool:
        """One tile and all items in one forward: no band to merge into."""
        return self.tiles == 1 and self.items_per_pass >= self.items


def plan_upscale(
    image: tuple[int, int, int, int],
    info: ModelInfo,
    *,
    dtype: torch.dtype,
    budget: int,
    weight_bytes: int,
    tile: int | None = None,
    overlap: int | None = None,
    wrap: tuple[bool, bool] = (False, False),
    context: int = 0,
) -> UpscalePlan:
    """Plan the upscaling of an image of shape ``image`` = ``(B, C, H, W)``.

    ``dtype``: the model's precision; ``budget`` and ``weight_bytes``: bytes (see ``budget``).
    ``tile``, ``overlap``, ``wrap``, ``context``: as in ``Upscaler.upscale``.
    """
    b, c, h, w = image
    check_context(context, wrap, h, w)
    s, m, rf = info.scale, info.size_multiple, info.receptive_field
    overlap = min(rf + DEFAULT_BLEND, MAX_OVERLAP) if overlap is None else overlap
    overlap = -(-overlap // m) * m
    groups = channel_groups(c, info.in_channels)
    items = len(groups) * b
    costs = plan_costs(info, dtype, weight_bytes, budget)
    pad = (wrap_width(info, h) if wrap[0] else 0, wrap_width(info, w) if wrap[1] else 0)
    one = Shape(h, w, items, overlap)
    circular = wrap == (True, True) and _runs_circular(one, pad, info, costs, budget, dtype, tile)
    if circular:
        pad = (0, 0)
    hp = padded_length(h, pad[0], m, info.min_size)
    wp = padded_length(w, pad[1], m, info.min_size)
    shape = Shape(hp, wp, items, overlap)
    chosen = budget_.auto_tile(shape, costs, budget) if tile is None else tile
    chosen = max(m, chosen // m * m)
    # Pixels within ``margin`` of a tile's cut edge are discarded; past it they are exact when
    # margin >= receptive field, and the rest of the overlap is cross-faded.
    margin = max(min(rf, overlap), overlap - min(MAX_BLEND, chosen // 4))
    rows = tuple(tuple(row) for row in plan_tiles(hp, wp, chosen, overlap, m))
    # At most one tile's items per pass, as before: convolutions on one item and on several
    # round differently, so larger passes would change output bits for little gain on CPU.
    per_pass = budget_.items_per_pass(chosen, shape, costs, budget, items)
    row_bytes = items * info.out_channels * wp * s * 4
    chunk = max(1, budget_.chunk_bytes(budget) // row_bytes)
    if len(rows) == 1:
        # One tile row: the band is the whole output and is already paid for; handing it on
        # whole keeps resampling it (--native) the same to the bit as on a whole image.
        chunk = hp * s
    edge = context * s
    window = (pad[0] * s + edge, h * s - 2 * edge, pad[1] * s + edge, w * s - 2 * edge)
    return UpscalePlan(
        image=(b, c, h, w), groups=tuple(groups), pad=pad, circular=circular, size=(hp, wp),
        tile=chosen, fixed_tile=tile is not None, overlap=overlap, margin=margin, rows=rows,
        items_per_pass=per_pass, window=window, chunk=chunk,
    )  # fmt: skip


def _runs_circular(
    one: Shape,
    pad: tuple[int, int],
    info: ModelInfo,
    costs: Costs,
    budget: int,
    dtype: torch.dtype,
    tile: int | None,
) -> bool:
    """Whether a texture that wraps both ways runs in one pass with circular padding in every
    convolution instead of wrap padding ``pad``: exactly the middle of an endless tiling, no
    extra pixels. Only when the model allows it, one pass over the unpadded ``one`` fits and
    it costs less."""
    h, w, m = one.height, one.width, info.size_multiple
    if not (info.circular and h % m == 0 and w % m == 0):
        return False
    side = budget_.auto_tile(one, costs, budget) if tile is None else tile
    fits = side >= max(h, w)
    padded = (h + 2 * pad[0]) * (w + 2 * pad[1]) / (h * w)
    cheaper = CIRCULAR_COST[dtype == torch.float32] < padded
    return fits and cheaper and min(h, w) >= info.min_size


def channel_groups(image_channels: int, model_channels: int) -> list[Group]:
    """How an image's channels become model items: all at once when the counts match, alpha as
    a gray item beside RGB, RGB padded with opaque alpha, else each channel as a gray item."""
    if image_channels == model_channels:
        return [Group(tuple(range(image_channels)), False)]
    if model_channels == 3 and image_channels == 4:
        return [Group((0, 1, 2), False), Group((3,), True)]
    if model_channels == 4 and image_channels == 3:
        return [Group((0, 1, 2), False)]  # padded with opaque alpha by the pipeline
    return [Group((c,), True) for c in range(image_channels)]


def plan_costs(info: ModelInfo, dtype: torch.dtype, weight_bytes: int, budget: int) -> Costs:
    """Planned bytes per input pixel: one item in a forward pass (activations plus the float
    output, kept up to three times), one item's merged band; weights and chunks."""
    activations = info.activation_bytes(dtype)
    out = 4 * info.out_channels * info.scale**2
    chunks = budget_.CHUNK_PARTS * budget_.chunk_bytes(budget)
    return Costs(activations + 3 * out, out, weight_bytes + chunks)


def wrap_width(info: ModelInfo, size: int) -> int:
    """Texels of surroundings a side of ``size`` texels is padded with when it wraps: the
    model's effective receptive field in whole size multiples, at most the side itself
    (rounded up). Cube faces get their neighbours' edges this wide."""
    m = info.size_multiple
    return min(-(-(info.wrap_field or info.receptive_field) // m) * m, -(-size // m) * m)


def padded_length(size: int, pad: int, multiple: int, minimum: int) -> int:
    """An axis of ``size`` wrap padded by ``pad`` per side, then padded at the end to a multiple
    of ``multiple`` and at least ``minimum``."""
    n = size + 2 * pad
    return max(-(-n // multiple) * multiple, -(-minimum // multiple) * multiple)


def check_context(context: int, wrap: tuple[bool, bool], h: int, w: int) -> None:
    if context < 0 or (context and (any(wrap) or 2 * context >= min(h, w))):
        raise ValueError(f"a context of {context} px does not fit a {w}x{h} image with {wrap=}")
