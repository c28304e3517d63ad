"""The upscaling plan, inspected without a model: padding, circular mode, tiles and items are a
function of the image's shape, the model's contract and the memory budget."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from upscaler.engine import budget
from upscaler.engine.plan import UpscalePlan, plan_costs, plan_upscale
from upscaler.models.descriptor import ModelInfo

INFO = ModelInfo(name="tiny", arch="compact", scale=2, receptive_field=4)
ROOMY = 1 << 30
TINY = 1 << 20  # below what one 32 px tile needs


def _plan(
    image: tuple[int, int, int, int],
    info: ModelInfo = INFO,
    memory: int = ROOMY,
    *,
    tile: int | None = None,
    wrap: tuple[bool, bool] = (False, False),
    context: int = 0,
) -> UpscalePlan:
    return plan_upscale(
        image, info, dtype=torch.float32, budget=memory, weight_bytes=0,
        tile=tile, wrap=wrap, context=context,
    )  # fmt: skip


def test_a_small_image_is_one_tile_in_one_pass() -> None:
    plan = _plan((1, 3, 17, 11))
    assert plan.tiles == 1 and plan.one_pass and not plan.circular
    assert plan.size == (17, 11) and plan.pad == (0, 0)
    assert plan.window == (0, 34, 0, 22)  # the whole output, nothing cropped
    assert plan.chunk == 34  # one tile row: handed on whole
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.tile = 8  # type: ignore[misc]


def test_a_seamless_texture_gets_circular_padding_when_the_model_allows() -> None:
    circular = dataclasses.replace(INFO, circular=True)
    plan = _plan((1, 3, 64, 48), circular, wrap=(True, True))
    assert plan.circular and plan.pad == (0, 0) and plan.size == (64, 48) and plan.one_pass
    # Without the model's word, or wrapping one way only: wrap padding by the receptive field.
    padded = _plan((1, 3, 64, 48), INFO, wrap=(True, True))
    assert not padded.circular and padded.pad == (4, 4) and padded.size == (72, 56)
    assert padded.window == (8, 128, 8, 96)  # the padding is cropped from the output
    one_way = _plan((1, 3, 64, 48), circular, wrap=(False, True))
    assert not one_way.circular and one_way.pad == (0, 4)
    # A circular pass needs the whole texture in one tile.
    assert not _plan((1, 3, 64, 48), circular, wrap=(True, True), tile=32).circular


def test_a_budget_forces_smaller_tiles_and_fewer_items_per_pass() -> None:
    image = (2, 4, 300, 200)  # RGBA through an RGB model: colour and alpha items, two images
    roomy, tight = _plan(image), _plan(image, memory=TINY)
    assert roomy.items == tight.items == 4 and len(roomy.groups) == 2
    assert roomy.tiles == 1 and roomy.items_per_pass == 4
    assert tight.tile < 200 and tight.tiles > 1 and tight.items_per_pass < 4
    assert tight.tile == budget.MIN_TILE  # nothing fits: the smallest tile
    middle = _plan(image, memory=64 << 20)
    assert tight.tile < middle.tile < roomy.tile
    costs = plan_costs(INFO, torch.float32, 0, 64 << 20)
    shape = budget.Shape(300, 200, 4, middle.overlap)
    assert sum(budget.tile_bytes(middle.tile, shape, costs)) + costs.fixed <= 64 << 20
    # A tile the caller set is kept under any budget.
    fixed = _plan(image, memory=TINY, tile=100)
    assert fixed.tile == 100 and fixed.fixed_tile and not tight.fixed_tile


def test_size_multiple_pads_the_image_and_aligns_tiles_and_overlap() -> None:
    info = dataclasses.replace(INFO, receptive_field=5, size_multiple=4, min_size=24)
    plan = _plan((1, 3, 37, 13), info, tile=18)
    assert plan.size == (40, 24)  # to a multiple of 4, and at least 24
    assert plan.tile == 16 and plan.overlap % 4 == 0 and plan.overlap >= 5
    cuts = {t.y0 for row in plan.rows for t in row} | {t.x0 for row in plan.rows for t in row}
    assert all(cut % 4 == 0 for cut in cuts)
    assert plan.window == (0, 74, 0, 26)


def test_context_is_cropped_and_checked() -> None:
    plan = _plan((1, 3, 30, 20), context=3)
    assert plan.window == (6, 48, 6, 28)
    with pytest.raises(ValueError, match="context of 10 px"):
        _plan((1, 3, 30, 20), context=10)
