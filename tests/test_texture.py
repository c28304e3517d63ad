"""Seamless textures, linear-light resampling and output sizes at the tensor/texture level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from upscaler import load_model
from upscaler.formats.image import ImageFile
from upscaler.process import TextureOptions, output_size, upscale_images
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear
from upscaler.texture.resample import resize
from upscaler.texture.seamless import detect_wrap, seam_error, wrap_pad


def tileable(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth texture that wraps exactly: a sum of waves with whole periods across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(6):
            fy, fx, phase = rng.integers(1, 5), rng.integers(1, 5), rng.random() * 6.28
            img[:, :, c] += np.sin(2 * math.pi * (fy * y / h + fx * x / w) + phase)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


def test_detect_wrap() -> None:
    wrapping = torch.from_numpy(tileable(48, 40)).permute(2, 0, 1)
    assert detect_wrap(wrapping) == (True, True)
    ramp = torch.linspace(0, 1, 40).expand(3, 48, 40)  # left and right edges differ
    assert detect_wrap(ramp) == (True, False)


@pytest.mark.parametrize("scale_model", ["tiny_x2", "tiny_x4"])
def test_seamless_output_still_tiles(scale_model: str, request: pytest.FixtureRequest) -> None:
    upscaler = load_model(request.getfixturevalue(scale_model))
    s = upscaler.scale
    pixels = tileable(36, 28)
    image = ImageFile(pixels, "PNG")
    before = max(seam_error(torch.from_numpy(pixels).permute(2, 0, 1)))
    wrapped = upscale_images(upscaler, [image], TextureOptions(seamless="on"), (True, True))[0]
    plain = upscale_images(upscaler, [image], TextureOptions(seamless="off"), (False, False))[0]
    after = max(seam_error(torch.from_numpy(wrapped.pixels).permute(2, 0, 1), step=s))
    broken = max(seam_error(torch.from_numpy(plain.pixels).permute(2, 0, 1), step=s))
    assert after <= max(before, 1.0) * 1.1
    assert broken > after  # without wrap padding the seam shows: this test can fail
    # Exact: the wrapped result is the middle of the upscaled 3x3 repetition of the texture.
    three = ImageFile(np.tile(pixels, (3, 3, 1)), "PNG")
    reference = upscale_images(upscaler, [three], TextureOptions(), (False, False))[0].pixels
    middle = reference[36 * s : 72 * s, 28 * s : 56 * s]
    assert np.abs(middle.astype(int) - wrapped.pixels.astype(int)).max() <= 1


def test_wrap_pad_beyond_image_size() -> None:
    x = torch.arange(6.0).view(1, 1, 2, 3)
    padded = wrap_pad(x, 3, 4)
    assert padded.shape == (1, 1, 8, 11)
    assert torch.equal(padded[..., 3:5, 4:7], x)
    assert torch.equal(padded[..., 0, 0], x[..., 1, 2])  # (-3, -4) wraps to (1, 2)


def test_downsampling_happens_in_linear_light() -> None:
    checker = torch.zeros(1, 3, 8, 8)
    checker[..., ::2, ::2] = checker[..., 1::2, 1::2] = 1.0
    linear = linear_to_srgb(resize(srgb_to_linear(checker), (4, 4), "box"))
    assert abs(float(linear.mean()) - 0.7354) < 1e-3  # sRGB of 50% light, not 0.5


def test_srgb_round_trip() -> None:
    x = torch.linspace(0, 1, 1001)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (TextureOptions(), (68, 44)),
        (TextureOptions(native=True), (17, 11)),
        (TextureOptions(output_scale=2), (34, 22)),
        (TextureOptions(output_scale=1.5), (26, 16)),
    ],
)
def test_output_sizes(tiny_x4, options: TextureOptions, expected: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert output_size((17, 11), 4, options) == expected
    upscaler = load_model(tiny_x4)
    image = ImageFile(np.zeros((17, 11, 4), np.uint8), "PNG")
    out = upscale_images(upscaler, [image, image], options, (False, False))
    assert [o.pixels.shape for o in out] == [(*expected, 4)] * 2


def test_native_mode_stays_faithful_to_the_input(tiny_x4) -> None:  # type: ignore[no-untyped-def]
    """Upscale-then-filter-down must keep the input's low frequencies (a smooth input comes back
    close to itself) and its bit depth."""
    pixels = tileable(32, 24).astype(np.uint16) * 257
    image = ImageFile(pixels, "PNG", bits=16)
    out = upscale_images(load_model(tiny_x4), [image], TextureOptions(native=True), (True, True))[0]
    assert out.bits == 16 and out.pixels.dtype == np.uint16 and out.pixels.shape == pixels.shape
    error = np.abs(out.pixels.astype(float) - pixels.astype(float)).mean() / 65535
    assert error < 0.08


@pytest.mark.parametrize("kernel", ["lanczos3", "bicubic", "bilinear", "box"])
@pytest.mark.parametrize("size", [(17, 11), (34, 22), (1, 1), (5, 7), (40, 30)])
def test_resize_matches_pillow(kernel: str, size: tuple[int, int]) -> None:
    """Both the general path and the integer-factor shortcut give Pillow's numbers."""
    from PIL import Image

    filters = {
        "lanczos3": Image.LANCZOS,
        "bicubic": Image.BICUBIC,
        "bilinear": Image.BILINEAR,
        "box": Image.BOX,
    }
    x = torch.rand(1, 2, 68, 44, generator=torch.Generator().manual_seed(3))
    ours = resize(x, size, kernel)
    for c in range(2):
        pil = Image.fromarray(x[0, c].numpy(), mode="F").resize(size[::-1], filters[kernel])
        np.testing.assert_allclose(ours[0, c].numpy(), np.asarray(pil), atol=1e-5)


def test_wrapped_integer_shrink_matches_general_path() -> None:
    from upscaler.texture.resample import filter_taps, resize_axis

    x = torch.rand(1, 1, 64, 48, generator=torch.Generator().manual_seed(4))
    for dim, size in ((2, 16), (3, 12), (3, 1)):
        index, weights = filter_taps(x.shape[dim], size, "lanczos3", wrap=True)
        general = (
            x.index_select(dim, index.flatten()).unflatten(dim, index.shape)
            * weights.view(*([1] * (dim)), *weights.shape, *([1] * (3 - dim)))
        ).sum(dim + 1)
        torch.testing.assert_close(resize_axis(x, size, dim, wrap=True), general, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("native", [False, True])
def test_gray_stored_as_rgb_stays_gray(tiny_x4, channels: int, native: bool) -> None:  # type: ignore[no-untyped-def]
    """A colour model fed three equal channels can answer with three different ones (a
    blue/yellow checker on gray chainmail): gray kept in RGB(A) goes through as one channel and
    comes back with R = G = B, alpha kept; within one level of gray (a codec's) counts as gray."""
    from upscaler.process import plan_texture

    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (20, 24), dtype=np.int64)
    rgb = np.stack([gray, np.clip(gray + rng.integers(-1, 2, gray.shape), 0, 255), gray], axis=2)
    alpha = np.where(rng.random(gray.shape) > 0.5, 255, 0)[:, :, None]
    pixels = (np.concatenate([rgb, alpha], axis=2) if channels == 4 else rgb).astype(np.uint8)
    image = ImageFile(pixels, "PNG")
    options = TextureOptions(native=native)
    info = plan_texture(image, "chainmail.png", options)
    assert info.gray_rgb and any("gray stored as RGB" in note for note in info.notes)
    out = upscale_images(load_model(tiny_x4), [image], options, infos=[info])[0].pixels
    assert out.shape[2] == channels
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    if channels == 4:
        coverage = (out[:, :, 3] >= 128).mean()  # alpha kept as alpha: the cutout's coverage
        assert abs(coverage - (pixels[:, :, 3] >= 128).mean()) < 0.05
    colour = pixels.copy()
    colour[::3, ::3, 0] = 255 - colour[::3, ::3, 0]
    assert not plan_texture(ImageFile(colour, "PNG"), "chainmail.png", options).gray_rgb
