"""The memory budget: --max-memory parsing, tiles sized to fit, and bounded-memory streaming that
gives the same output as the whole-image path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image

from upscaler.arguments import MemorySize
from upscaler.cli import _load, main
from upscaler.engine import budget
from upscaler.engine.pipeline import Upscaler
from upscaler.engine.tiling import plan_tiles
from upscaler.models import Compact, CompactConfig
from upscaler.models.descriptor import ModelInfo
from upscaler.models.sources import resolve
from upscaler.texture.resample import RowResampler, resize_axis

torch.manual_seed(0)
MODEL = Compact(CompactConfig(num_features=8, num_blocks=2, scale=2)).eval()
INFO = ModelInfo(name="tiny", arch="compact", scale=2, receptive_field=4)
TINY = 1 << 20  # below what one 32 px tile needs: smallest tiles, one item per pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 << 30),
        ("512M", 512 << 20),
        ("1.5GiB", 3 << 29),
        ("2gb", 2 << 30),
        ("2097152", 2 << 20),
    ],
)
def test_max_memory_sizes_parse(text: str, expected: int) -> None:
    assert MemorySize().convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["lots", "", "4X", "-1G", "0", "512K", "nan", "inf"])
def test_bad_max_memory_is_a_one_line_usage_error(tmp_path: Path, tiny_x2: Path, text: str) -> None:
    Image.fromarray(make_pixels(), "RGB").save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main, [str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(tiny_x2),
               "--max-memory", text],
    )  # fmt: skip
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2
    assert len(errors) == 1 and "--max-memory" in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_max_memory_reaches_the_upscaler(tiny_x2: Path) -> None:
    cpu = torch.device("cpu")
    assert _load(resolve(tiny_x2), cpu, "fp32", 5 << 20).budget == 5 << 20
    assert _load(resolve(tiny_x2), cpu, "fp32", None).budget == budget.memory_budget(
        torch.device("cpu")
    )


def test_smaller_budget_picks_smaller_tiles() -> None:
    shape = budget.Shape(height=4096, width=4096, items=2, overlap=20)
    costs = budget.Costs(item=2000.0, band=192.0, fixed=10 << 20)
    sides = [budget.auto_tile(shape, costs, b) for b in (8 << 30, 1 << 30, 256 << 20, TINY)]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)
    assert sides[-1] == budget.MIN_TILE
    for side, b in zip(sides[:-1], (8 << 30, 1 << 30, 256 << 20), strict=True):
        assert sum(budget.tile_bytes(side, shape, costs)) + costs.fixed <= b

    x = torch.rand(1, 3, 70, 50, generator=torch.Generator().manual_seed(1))
    roomy, tight = Upscaler(MODEL, INFO), Upscaler(MODEL, INFO, max_memory=TINY)
    assert roomy.plan(x).tiles == 1 and tight.plan(x).tiles > 1
    assert tight.plan(x).tile < roomy.plan(x).tile


def test_a_tile_you_set_is_kept_under_any_budget() -> None:
    x = torch.rand(1, 3, 45, 38, generator=torch.Generator().manual_seed(2))
    tight = Upscaler(MODEL, INFO, max_memory=TINY)
    plan = tight.plan(x, tile=40)
    planned = sum(len(row) for row in plan_tiles(45, 38, 40, 8, 1))
    assert plan.tile == 40 and plan.fixed_tile and plan.tiles == planned == 2
    assert tight.upscale(x, tile=40).shape == (1, 3, 90, 76)


@pytest.mark.parametrize("wrap", [(False, False), (True, True)])
def test_streaming_under_a_tiny_budget_gives_the_same_bits(wrap: tuple[bool, bool]) -> None:
    x = torch.rand(1, 3, 61, 47, generator=torch.Generator().manual_seed(3))
    roomy, tight = Upscaler(MODEL, INFO), Upscaler(MODEL, INFO, max_memory=TINY)
    chunks = list(tight.upscale_bands(x, tile=16, wrap=wrap))
    assert len(chunks) >= 4  # released band by band (one per tile row here), in order
    assert max(rows.shape[2] for _, rows in chunks) < 61
    assert [y for y, _ in chunks] == [
        sum(r.shape[2] for _, r in chunks[:i]) for i in range(len(chunks))
    ]
    streamed = torch.cat([rows for _, rows in chunks], dim=2)
    assert torch.equal(streamed, roomy.upscale(x, tile=16, wrap=wrap))


def test_streaming_several_items_one_per_pass_rounds_alike() -> None:
    # RGBA through an RGB model (colour and alpha are items), two images: four items, which a
    # tiny budget runs one per pass; convolutions on one item round differently, by an ulp.
    x = torch.rand(2, 4, 33, 29, generator=torch.Generator().manual_seed(4))
    roomy, tight = Upscaler(MODEL, INFO), Upscaler(MODEL, INFO, max_memory=TINY)
    torch.testing.assert_close(
        tight.upscale(x, tile=16), roomy.upscale(x, tile=16), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(("size", "out"), [(124, 31), (96, 48), (90, 37)])
@pytest.mark.parametrize("wrap", [False, True])
def test_row_resampler_matches_whole_image_resampling(size: int, out: int, wrap: bool) -> None:
    g = torch.Generator().manual_seed(size + out)
    x = torch.rand(2, 3, size, 13, generator=g)
    whole = resize_axis(x, out, 2, wrap=wrap)

    def run(cuts: list[int]) -> torch.Tensor:
        resampler, result = RowResampler(size, out, wrap=wrap), torch.full_like(whole, -1.0)
        pieces = []
        for y0, y1 in zip([0, *cuts], [*cuts, size], strict=True):
            pieces += list(resampler.push(y0, x[:, :, y0:y1]))
        for j, rows in pieces + list(resampler.finish()):
            result[:, :, j : j + rows.shape[2]] = rows
        return result

    assert torch.equal(run([]), whole)  # all rows at once: the same computation
    cuts = sorted(set(torch.randint(1, size, (9,), generator=g).tolist()))
    torch.testing.assert_close(run(cuts), whole, atol=1e-6, rtol=0)  # in bands: rounding only
