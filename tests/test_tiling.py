"""Tiling: exact when the overlap covers the receptive field, seamless otherwise, OOM-safe."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from upscaler.engine.pipeline import NotEnoughMemoryError, Upscaler, circular_padding
from upscaler.engine.tiling import plan_tiles, split_tile, tile_weights
from upscaler.models import Compact, CompactConfig, RRDBConfig, RRDBNet
from upscaler.models.descriptor import ModelInfo
from upscaler.models.rrdb import ResidualDenseBlock

torch.manual_seed(0)
COMPACT = {
    s: Compact(CompactConfig(num_features=8, num_blocks=2, scale=s)).eval() for s in (1, 2, 3)
}


def _upscaler(scale: int, module: torch.nn.Module | None = None) -> Upscaler:
    info = ModelInfo(name="tiny", arch="compact", scale=scale, receptive_field=4)
    return Upscaler(module or COMPACT[scale], info)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    tile=st.integers(1, 24),
    extra=st.integers(0, 6),
    scale=st.sampled_from([1, 2, 3]),
    channels=st.sampled_from([1, 3, 4]),
)
def test_tiled_equals_untiled_when_overlap_covers_receptive_field(
    h: int, w: int, tile: int, extra: int, scale: int, channels: int
) -> None:
    up = _upscaler(scale)
    x = torch.rand(2, channels, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    whole = up.upscale(x, tile=max(h, w))
    tiled = up.upscale(x, tile=tile, overlap=4 + extra)
    assert tiled.shape == (2, channels, h * scale, w * scale)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    tile=st.integers(4, 30),
    overlap=st.integers(0, 8),
    blend=st.integers(0, 4),
    scale=st.integers(1, 3),
    split=st.booleans(),
)
def test_blend_weights_sum_to_one(
    h: int, w: int, tile: int, overlap: int, blend: int, scale: int, split: bool
) -> None:
    """Partition of unity, also when some tiles were split after an out-of-memory error."""
    blend = min(blend, overlap, tile // 4)
    margin = overlap - blend
    total = torch.zeros(h * scale, w * scale)
    for row in plan_tiles(h, w, tile, overlap):
        for index, t in enumerate(row):
            parts = (
                split_tile(t, h, w, overlap, 1, max(1, tile // 2)) if split and index % 2 else [t]
            )
            for p in parts:
                weights = tile_weights(p, h, w, overlap, margin, scale)
                total[p.in_y0 * scale : p.in_y1 * scale, p.in_x0 * scale : p.in_x1 * scale] += (
                    weights
                )
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)


def test_small_overlap_blends_without_hard_seams() -> None:
    """With an overlap below the receptive field the result is close, not exact, and no row or
    column is far off (a hard cut would leave a visible line)."""
    torch.manual_seed(1)
    module = Compact(CompactConfig(num_features=8, num_blocks=6, scale=2)).eval()
    up = Upscaler(module, ModelInfo(name="t", arch="compact", scale=2, receptive_field=8))
    x = torch.rand(1, 3, 64, 64)
    diff = (up.upscale(x, tile=32, overlap=4) - up.upscale(x, tile=64)).abs()
    assert diff.max() > 0  # not exact: the overlap is below the receptive field
    assert diff.mean() < 0.01


class FlakyMemory(torch.nn.Module):
    """Raises out-of-memory for inputs above ``limit`` pixels (an injected fault)."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.failures, self.passes = inner, limit, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            self.failures += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.passes += 1
        return self.inner(x)


def test_out_of_memory_halves_the_tile_and_recomputes_it() -> None:
    x = torch.rand(1, 4, 150, 130)
    clean = _upscaler(2).upscale(x)
    flaky = FlakyMemory(COMPACT[2], limit=2 * 90 * 90)  # RGBA = 2 items per tile
    up = _upscaler(2, flaky)
    assert up.plan(x).one_pass  # planned as one pass: the tiles below come from backing off
    out = up.upscale(x)
    assert flaky.failures > 0
    assert flaky.passes > 1
    torch.testing.assert_close(out, clean, atol=1e-5, rtol=0)  # no stale or missing tile


def test_user_tile_is_never_changed_on_out_of_memory() -> None:
    flaky = FlakyMemory(COMPACT[2], limit=50 * 50)
    with pytest.raises(NotEnoughMemoryError, match="tile size you set"):
        _upscaler(2, flaky).upscale(torch.rand(1, 3, 120, 120), tile=100)


def test_out_of_memory_at_the_floor_fails_clearly() -> None:
    flaky = FlakyMemory(COMPACT[2], limit=10)
    with pytest.raises(NotEnoughMemoryError, match="smallest allowed"):
        _upscaler(2, flaky).upscale(torch.rand(1, 3, 100, 100))


def test_other_errors_are_not_treated_as_out_of_memory() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        _upscaler(2, Broken()).upscale(torch.rand(1, 3, 40, 40))


def test_size_multiple_models_pad_and_crop() -> None:
    """RRDB x2 needs even sizes; odd images are padded and cropped back; tiles align."""
    torch.manual_seed(0)
    module = RRDBNet(RRDBConfig(num_features=8, num_blocks=1, growth_channels=4, scale=2)).eval()
    info = ModelInfo(name="r", arch="rrdb", scale=2, receptive_field=36, size_multiple=2)
    up = Upscaler(module, info)
    x = torch.rand(1, 3, 37, 23)
    whole = up.upscale(x)
    assert whole.shape == (1, 3, 74, 46)
    tiled = up.upscale(x, tile=16, overlap=36)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_integer_input_matches_float_input() -> None:
    x = torch.randint(0, 256, (1, 3, 19, 13), dtype=torch.uint8)
    up = _upscaler(2)
    torch.testing.assert_close(up(x), up(x.float() / 255), atol=1e-6, rtol=0)
    x16 = torch.randint(0, 65536, (1, 1, 19, 13), dtype=torch.int32).to(torch.uint16)
    torch.testing.assert_close(up(x16), up(x16.float() / 65535), atol=1e-6, rtol=0)


def test_bad_input_shapes_are_reported() -> None:
    up = _upscaler(2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        up(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="1-4 channels"):
        up(torch.rand(1, 5, 8, 8))


@pytest.mark.parametrize("size", [(3, 5), (7, 7), (12, 9)])
def test_rrdb_blocks_wrap_themselves_as_circular_convolutions_would(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    """Each dense block pads once and runs unpadded convolutions: the output is the middle of
    the endlessly tiled image, as with every convolution padded circularly (also for images
    smaller than the block's 5 px margin)."""
    torch.manual_seed(0)
    net = RRDBNet(RRDBConfig(num_features=8, growth_channels=4, num_blocks=2)).eval()
    for p in net.parameters():  # strong weights: every layer's neighbours matter
        p.data.mul_(4)
    x = torch.rand(1, 3, *size)
    with torch.inference_mode():
        with circular_padding(net):
            blocks = net(x)
        reps = [2 * -(-48 // s) + 1 for s in size]  # radius: 2 x 15 trunk convs + the rest
        tiled = net(x.repeat(1, 1, *reps))
        top, left = (r // 2 * s * 4 for r, s in zip(reps, size, strict=True))
        middle = tiled[..., top : top + size[0] * 4, left : left + size[1] * 4]
        monkeypatch.setattr(ResidualDenseBlock, "wraps_itself", False)
        with circular_padding(net):
            hooks = net(x)
    atol = 1e-5 * float(middle.abs().max())  # float32 rounding (float64 differs by as much)
    torch.testing.assert_close(blocks, hooks, rtol=0, atol=atol)
    torch.testing.assert_close(blocks, middle, rtol=0, atol=atol)
    assert not any(getattr(m, "wrap", False) for m in net.modules())  # restored
