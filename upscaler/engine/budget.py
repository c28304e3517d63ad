"""How much memory the upscaling may use, and the tile size and batch that fit in it.

One budget covers everything the pipeline holds on its device while it upscales: the weights,
the tiles in flight (input, activations, float output), the band of output rows being merged
(``rows x width x scale`` of every item) and the chunks converted out of that band. The default
is a share of the device's *total* memory (not its free memory), so the tile grid, and with it
every output bit, is the same from run to run on one machine; ``--max-memory`` sets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

CPU_BUDGET_CAP = 4 << 30
CUDA_SHARE = 0.5
MIN_TILE = 32
# Float copies of one converted chunk alive at once: quantising normals (best-fit codes) holds
# about ten, resampling and plain quantising fewer.
CHUNK_PARTS = 12
# Chunks of tens of MB: small ones cost more in per-operation overhead (thread barriers, page
# faults) than their arithmetic; 8 MB chunks of a normal map converted 3-6x slower than one
# 192 MB band on 2 shared cores, 64 MB ones within 1.5x.
MAX_CHUNK_BYTES = 64 << 20
MIN_CHUNK_BYTES = 64 << 10


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )


def memory_budget(device: torch.device) -> int:
    """Default bytes for the upscaling: half a GPU, a quarter of RAM (at most 4 GiB)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(total * CUDA_SHARE)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(total // 4, CPU_BUDGET_CAP))


def chunk_bytes(budget: int) -> int:
    """Float bytes of one chunk of output rows converted at once (the model's band is cut into
    such chunks, however large it is): its ``CHUNK_PARTS`` copies take at most a quarter of the
    budget."""
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, budget // (4 * CHUNK_PARTS)))


@dataclass(frozen=True)
class Costs:
    """Bytes per input pixel: ``item`` for one item in a forward pass (activations and float
    outputs), ``band`` for one item's merged output rows; ``fixed``: weights and chunks."""

    item: float
    band: float
    fixed: int


@dataclass(frozen=True)
class Shape:
    """The padded input every tile is cut from: ``height x width`` with ``items`` model items."""

    height: int
    width: int
    items: int
    overlap: int


def tile_bytes(tile: int, shape: Shape, costs: Costs) -> tuple[float, float]:
    """(bytes of one item in a forward pass, bytes of the merged band) for cores of ``tile``."""
    h, w, overlap = shape.height, shape.width, shape.overlap
    context = min(h, tile + 2 * overlap) * min(w, tile + 2 * overlap)
    # The band spans a tile row with its context, plus the rows carried over from the row above.
    band_rows = min(h, tile + 4 * overlap)
    return context * costs.item, shape.items * band_rows * w * costs.band


def auto_tile(shape: Shape, costs: Costs, budget: int) -> int:
    """The largest core side (the whole image, a multiple of 64, or at least ``MIN_TILE``) whose
    band and one forward item fit in ``budget``."""
    spare = budget - costs.fixed
    side = max(shape.height, shape.width)
    if sum(tile_bytes(side, shape, costs)) <= spare:
        return side
    candidates = [*range(side // 64 * 64, 127, -64), *range(min(side, 127), MIN_TILE - 1, -1)]
    for tile in candidates:
        if sum(tile_bytes(tile, shape, costs)) <= spare:
            return tile
    return MIN_TILE


def items_per_pass(tile: int, shape: Shape, costs: Costs, budget: int, most: int) -> int:
    """How many model items (tiles x channel groups x images) one forward pass may take."""
    item, band = tile_bytes(tile, shape, costs)
    return max(1, min(most, int((budget - costs.fixed - band) // item)))
