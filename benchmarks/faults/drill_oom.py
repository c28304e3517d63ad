"""Drill 8: out-of-memory injected at random tiles (CPU; the model is wrapped, nothing mocked).

Real textures go through the real texture path (``upscale_images``) with a tile chosen from a small
memory budget, and ``torch.OutOfMemoryError`` is raised at random forward calls. Expected: the
failed chunk halves (items, then tile quadrants) and is recomputed; the output matches a clean run
(and a clean run at half the tile) within 1 LSB everywhere, so no tile is stale or missing; with a
tile size set by the user the tile is never changed: the file fails with a clear message instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from upscaler.engine.pipeline import NotEnoughMemoryError, Upscaler
from upscaler.formats.image import ImageFile
from upscaler.models.loader import read_model
from upscaler.process import TextureOptions, upscale_images

from .corpus import load_patches, source_textures
from .oom import BUDGET, InjectedOOM, max_lsb_difference, repeat_to, upscale_under_budget


def _spread(rng: np.random.Generator, calls: int, count: int, gap: int = 6) -> set[int]:
    """``count`` random call numbers at least ``gap`` apart, so each fault meets a fresh tile
    (faults in a row on one tile walk it down to the floor, which ``_floor`` checks apart)."""
    chosen: set[int] = set()
    for index in rng.permutation(calls):
        if len(chosen) < count and all(abs(int(index) - c) >= gap for c in chosen):
            chosen.add(int(index))
    return chosen


def run(model_path: Path, injections: int, images: int = 4, seed: int = 0) -> dict[str, Any]:
    module, info = read_model(model_path)
    rng = np.random.default_rng(seed)
    patches = [repeat_to(p, 200) for p in load_patches(source_textures(), rng, images, (200, 300))]
    figures: dict[str, Any] = dict.fromkeys(
        (
            "injections",
            "extra_forward_calls",
            "files_failed",
            "max_lsb_diff_vs_clean",
            "max_lsb_diff_vs_clean_half_tile",
            "user_tile_injections",
            "user_tile_overridden",
            "user_tile_failures",
            "user_tile_clear_errors",
        ),
        0,
    )
    per_image = -(-injections // images)
    for patch in patches:
        image = ImageFile(patch, "PNG")
        clean_model = InjectedOOM(module)
        clean = upscale_under_budget(clean_model, info, image, None)
        auto_tile = max(max(s[-2:]) for s in clean_model.shapes)
        half = upscale_under_budget(InjectedOOM(module), info, image, max(16, auto_tile // 2))
        faulty = InjectedOOM(module, _spread(rng, clean_model.calls, per_image))
        try:
            out = upscale_under_budget(faulty, info, image, None)
        except NotEnoughMemoryError:
            figures["files_failed"] += 1
            continue
        figures["injections"] += faulty.injected
        figures["extra_forward_calls"] += faulty.calls - clean_model.calls
        figures["max_lsb_diff_vs_clean"] = max(
            figures["max_lsb_diff_vs_clean"], max_lsb_difference(out, clean)
        )
        figures["max_lsb_diff_vs_clean_half_tile"] = max(
            figures["max_lsb_diff_vs_clean_half_tile"], max_lsb_difference(out, half)
        )
        _user_tile(module, info, image, rng, figures)
    figures.update(_floor(module, info, ImageFile(patches[0], "PNG")))
    return figures


def _floor(module: nn.Module, info: Any, image: ImageFile) -> dict[str, Any]:
    """Out of memory on every call: the file fails naming the tile size; the next file on the
    same upscaler starts again at the normal tile."""
    always = InjectedOOM(module, set(range(10_000)))
    upscaler = Upscaler(always, info)
    upscaler.budget = BUDGET
    message = ""
    try:
        upscale_images(upscaler, [image], TextureOptions(), (False, False))
    except NotEnoughMemoryError as exc:
        message = str(exc)
    always.fail_at.clear()
    first_failing_shape = always.shapes[0]
    always.shapes.clear()
    upscale_images(upscaler, [image], TextureOptions(), (False, False))
    return {
        "floor_error": message,
        "next_file_back_at_normal_tile": always.shapes[0][-2:] == first_failing_shape[-2:],
    }


def _user_tile(
    module: nn.Module, info: Any, image: ImageFile, rng: np.random.Generator, figures: dict
) -> None:
    """With ``--tile`` set, an injected OOM must fail the file, never shrink the tile."""
    tile = 64
    clean = InjectedOOM(module)
    upscale_under_budget(clean, info, image, tile)
    faulty = InjectedOOM(module, {int(rng.integers(0, clean.calls))})
    try:
        upscale_under_budget(faulty, info, image, tile)
    except NotEnoughMemoryError as exc:  # RGBA has two items per tile: halving those is fine
        figures["user_tile_failures"] += 1
        figures["user_tile_clear_errors"] += "tile size you set" in str(exc)
    figures["user_tile_injections"] += faulty.injected
    allowed = {s[1:] for s in clean.shapes}
    figures["user_tile_overridden"] += sum(s[1:] not in allowed for s in faulty.shapes)
