"""Premultiplied outputs: every written texel has colour at most its alpha, in stored levels,
compressed formats and cutout re-thresholding included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels

from benchmarks.faults import dds_bytes
from upscaler import save_weights
from upscaler.cli import main
from upscaler.formats import bcn
from upscaler.formats.image import read_image
from upscaler.models import Compact, CompactConfig


def _brightening_model(path: Path) -> Path:
    """A real x2 model that adds a quarter of full scale to every colour channel: overshoot
    of the kind a sharpening model makes at bright edges, everywhere."""
    config = CompactConfig(num_features=3, num_blocks=0, scale=2)
    model = Compact(config)
    with torch.no_grad():
        first, act, last = model.body
        for weight in (first.weight, first.bias, last.weight):
            weight.zero_()
        act.weight.fill_(1.0)
        last.bias.fill_(0.25)
    save_weights(path, model, arch="compact", config=config)
    return path


def _premultiplied(h: int = 16, w: int = 20) -> np.ndarray:
    """RGBA with alpha ramping 0 -> 255 across, colour = straight colour x alpha (rounded)."""
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    straight = make_pixels(h, w, 3, seed=1).astype(np.float64)
    colour = (straight * alpha[:, :, None] / 255).round().astype(np.uint8)
    return np.dstack([colour, alpha])


def _over(pixels: np.ndarray) -> int:
    """Texels whose colour (any channel) is above their alpha."""
    return int((pixels[:, :, :3].astype(int) > pixels[:, :, 3:]).any(axis=2).sum())


@pytest.mark.parametrize(
    ("dxgi", "alpha"),
    [(28, "cutout"), (29, "cutout"), (77, "auto"), (98, "auto"), (74, "blended")],
)
def test_every_written_premultiplied_texel_has_colour_at_most_alpha(
    tmp_path: Path, dxgi: int, alpha: str
) -> None:
    """DX10 alpha mode 2 sources (RGBA8 UNORM and sRGB, BC3, BC7, BC2), upscaled by a model
    that overshoots, written in their own format. Before: colour maps were bounded by
    ``srgb(alpha)`` (up to 30 levels over in RGBA8 with a cutout) and block compression lifted
    colour over alpha (120 texels of 1280 in BC3)."""
    rgba = _premultiplied()
    assert _over(rgba) == 0
    body = rgba.tobytes() if dxgi in (28, 29) else bcn.encode(rgba, {74: 2, 77: 3, 98: 7}[dxgi])
    source = tmp_path / "smoke.dds"
    source.write_bytes(dds_bytes.dx10_header(20, 16, dxgi, alpha_mode=2) + body)
    model = _brightening_model(tmp_path / "bright.safetensors")
    args = [str(source), "-o", str(tmp_path / "out"), "-m", str(model), "--alpha", alpha, "-q"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "out" / "smoke.dds")
    assert out.premultiplied and out.info["dds"].format.dxgi == dxgi
    assert _over(out.pixels) == 0
    assert out.pixels[:, :, :3].max() > 100  # still bright where opaque: not blacked out


@pytest.mark.parametrize("block", [2, 3, 7])
def test_block_compression_keeps_premultiplied_colour_under_alpha(block: int) -> None:
    """Plain encoding of premultiplied texels at the bound lifts some over it; the
    premultiplied encoder does not, and stays close to the source."""
    rgba = _premultiplied(36, 44)
    rgba[:, :, :3] = np.minimum(rgba[:, :, :3].astype(int) + 40, rgba[:, :, 3:]).astype(np.uint8)
    plain = bcn.decode(bcn.encode(rgba, block), block, 36, 44)
    kept = bcn.decode(bcn.encode_premultiplied(rgba, block), block, 36, 44)
    assert _over(plain) > 0  # the case: compression alone breaks the bound
    assert _over(kept) == 0
    error = np.abs(kept.astype(int) - rgba).mean()
    assert error < 2 * np.abs(plain.astype(int) - rgba).mean() + 1
