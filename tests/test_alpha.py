"""Alpha on real textures: classification, bleeding (no fringes), cutout coverage kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from upscaler import load_model
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture import alpha

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("grate01_skin.png", "cutout"),
        ("grate01_dxt5.dds", "cutout"),
        ("grate01_dxt1a.dds", "cutout"),
        ("jar_diffuse2.png", "blended"),
        ("jar_a8r8g8b8.dds", "blended"),
        ("redrock01_bc7_srgb.dds", "absent"),  # BC7 left opaque alpha at 254/255
        ("redrock01_tile.png", "absent"),  # no alpha channel
    ],
)
def test_classification_of_real_textures(name: str, mode: str) -> None:
    info = plan_texture(read_image(DATA / name), name)
    assert info.alpha == mode
    assert (info.coverage is not None) == (mode == "cutout")


def test_alpha_in_a_normal_map_is_data_unless_cutout() -> None:
    normal = read_image(DATA / "grass01_n.png")
    jar = read_image(DATA / "jar_diffuse2.png")
    grate = read_image(DATA / "grate01_skin.png")
    h, w = 32, 36
    smooth = np.dstack([normal.pixels[:h, :w], jar.pixels[:h, :w, 3:]])
    binary = np.dstack([normal.pixels[:h, :w], grate.pixels[:h, :w, 3:]])
    assert plan_texture(ImageFile(smooth, "PNG"), "x_n.png").alpha == "data"
    assert plan_texture(ImageFile(binary, "PNG"), "x_n.png").alpha == "cutout"
    forced = plan_texture(ImageFile(smooth, "PNG"), "x_n.png", TextureOptions(alpha="blended"))
    assert forced.alpha == "blended"


def test_bleed_fills_only_transparent_texels_from_visible_colour() -> None:
    image = read_image(DATA / "grate01_skin.png")
    x = torch.from_numpy(image.pixels / 255.0).permute(2, 0, 1)[None].float()
    colour, a = x[:, :3], x[:, 3:]
    filled = alpha.bleed(colour, a)
    visible = a[0, 0] > 0
    assert torch.equal(filled[0][:, visible], colour[0][:, visible])
    hidden = filled[0][:, ~visible]
    assert float(colour[0][:, ~visible].max()) == 0  # the source hides black under alpha 0
    low = colour[0][:, visible].amin(dim=1, keepdim=True) - 1e-6
    high = colour[0][:, visible].amax(dim=1, keepdim=True) + 1e-6
    assert bool(((hidden >= low) & (hidden <= high)).all())
    assert float(hidden.mean()) > 0.5 * float(colour[0][:, visible].mean())


def test_no_dark_fringes(blur_x2: Path) -> None:
    """The blur model mixes neighbours like any SR model: without bleeding, the black hidden
    under fully transparent texels darkens the visible texels next to them."""
    image = read_image(DATA / "grate01_skin.png")
    visible = image.pixels[:, :, 3] > 0
    touches_clear = np.zeros_like(visible)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            touches_clear |= ~np.roll(visible, (dy, dx), axis=(0, 1))
    edge = np.repeat(np.repeat(visible & touches_clear, 2, axis=0), 2, axis=1)
    model = load_model(blur_x2)
    brightness = {}
    for mode in ("cutout", "data"):  # data: alpha as a plain channel, no bleeding
        options = TextureOptions(alpha=mode)
        info = plan_texture(image, "grate01_skin.png", options)
        out = upscale_images(model, [image], options, infos=[info])[0]
        brightness[mode] = float(out.pixels[:, :, :3][edge].mean())
    assert brightness["cutout"] > 1.25 * brightness["data"]


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("tiny_x2", {}),
        ("tiny_x4", {}),
        ("blur_x2", {}),
        ("tiny_x4", {"native": True}),
        ("tiny_x4", {"output_scale": 1.5}),
        ("tiny_x4", {"output_scale": 0.5}),
        ("tiny_x2", {"tile": 16}),
    ],
)
def test_cutout_coverage_is_kept(
    model: str, options: dict[str, object], request: pytest.FixtureRequest
) -> None:
    upscaler = load_model(request.getfixturevalue(model))
    for name in ("grate01_skin.png", "grate01_dxt5.dds"):
        image = read_image(DATA / name)
        opts = TextureOptions(**options)  # type: ignore[arg-type]
        info = plan_texture(image, name, opts)
        out = upscale_images(upscaler, [image], opts, infos=[info])[0]
        before = alpha.coverage(image.pixels[:, :, 3], 8)
        after = alpha.coverage(out.pixels[:, :, 3], 8)
        assert abs(after - before) <= 0.01, (name, before, after)
        assert alpha.classify(out.pixels[:, :, 3], 8) == "cutout"  # still a cutout
        assert alpha.soft_share(out.pixels[:, :, 3], 8) <= info.soft + 0.01


def test_16_bit_cutout_keeps_coverage_and_depth(tiny_x2: Path) -> None:
    image = read_image(DATA / "grate01_skin.png")
    wide = image.with_pixels(image.pixels.astype(np.uint16) * 257)
    for options in (TextureOptions(), TextureOptions(native=True)):
        info = plan_texture(wide, "grate01_skin.png", options)
        assert info.alpha == "cutout"
        out = upscale_images(load_model(tiny_x2), [wide], options, infos=[info])[0]
        assert out.bits == 16 and out.pixels.dtype == np.uint16
        before = alpha.coverage(wide.pixels[:, :, 3], 16)
        assert abs(alpha.coverage(out.pixels[:, :, 3], 16) - before) <= 0.01


def test_without_rethreshold_coverage_drifts(tiny_x4: Path) -> None:
    """The same resampling with alpha left as blended moves coverage: the check above can fail."""
    image = read_image(DATA / "grate01_skin.png")
    options = TextureOptions(alpha="blended", output_scale=0.5)
    out = upscale_images(load_model(tiny_x4), [image], options)[0]
    before = alpha.coverage(image.pixels[:, :, 3], 8)
    assert abs(alpha.coverage(out.pixels[:, :, 3], 8) - before) > 0.01


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 1.0),
    st.sampled_from([8, 16]),
    st.sampled_from([None, 0.0, 0.05, 0.5]),
)
def test_keep_coverage_hits_the_target(
    seed: int, target: float, bits: int, soft: float | None
) -> None:
    rng = np.random.default_rng(seed)
    values = (rng.beta(0.3, 0.3, size=(23, 17)) * 65535).astype(np.uint16)
    out = alpha.keep_coverage(values, target, bits, soft)
    assert out.dtype == (np.uint16 if bits == 16 else np.uint8) and out.shape == values.shape
    # Exact up to ties: no other threshold would pass a share closer to the target.
    shares = {float(np.mean(values >= t)) for t in np.unique(values)} | {0.0}
    best = min(abs(s - target) for s in shares)
    assert abs(alpha.coverage(out, bits) - target) <= best + 1e-9
    # Order is kept: a brighter texel never ends up below a darker one across the test.
    passed = out >= (32768 if bits == 16 else 128)
    if passed.any() and (~passed).any():
        assert values[passed].min() > values[~passed].max()
    if soft is not None:
        assert alpha.soft_share(out, bits) <= soft + 1e-9


def _bleed_whole(pixels: np.ndarray, bits: int) -> np.ndarray:
    from upscaler.texture.levels import quantize, to_levels, to_tensor

    x = to_tensor(pixels, bits)
    x[:, :3] = alpha.bleed(x[:, :3], x[:, -1:])
    return to_levels(quantize(x, bits)).astype(pixels.dtype)


@pytest.mark.parametrize("rows", [2, 18, 64, 512])
@pytest.mark.parametrize("crop", [(128, 128), (97, 83)])
def test_banded_bleed_equals_the_whole_image_bleed(rows: int, crop: tuple[int, int]) -> None:
    """The bands a 16k texture is bled in give exactly the whole-image result, odd sizes too."""
    pixels = read_image(ROOT / "samples" / "textures" / "grate01_skin.png").pixels
    pixels = np.ascontiguousarray(pixels[: crop[0], : crop[1]])
    assert (pixels[:, :, 3] == 0).any() and (pixels[:, :, 3] > 0).any()
    banded = alpha.bleed_levels(pixels, 8, [0, 1, 2], rows=rows)
    whole = _bleed_whole(pixels, 8)
    visible = pixels[:, :, 3] > 0
    np.testing.assert_array_equal(banded[visible], pixels[visible])  # untouched, exactly
    diff = np.abs(banded.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float rounding on hidden texels
    assert (banded[~visible][:, :3] != pixels[~visible][:, :3]).any()  # the holes were filled


def test_banded_bleed_16_bit() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (61, 40, 4), dtype=np.uint16)
    pixels[10:40, 5:30, 3] = 0
    banded = alpha.bleed_levels(pixels, 16, [0, 1, 2], rows=8).astype(int)
    assert np.abs(banded - _bleed_whole(pixels, 16).astype(int)).max() <= 1
