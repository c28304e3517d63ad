"""Degradations: determinism, ranges, what each one does to an image; normal-map augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from training_helpers import height_field, normals_from_height

from training import codecs
from training.augment import Augmentation, augment, sample_augmentation
from training.config import DegradeConfig
from training.degradations import (
    gaussian_blur,
    gaussian_noise,
    point_sample,
    renormalise_normals,
    resize_down,
    wrap_crop,
)
from training.recipe import degrade, sample_params, stack_params

GAME_MIX = DegradeConfig(blur_prob=0.5, jpeg_prob=0.5, bc_prob=0.5, palette_prob=0.3)
EVERYTHING = dataclasses.replace(GAME_MIX, noise_prob=0.5)


def _image(b: int = 2, h: int = 20, w: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, h, w, generator=g)
    return (base + base.roll(1, 2) + base.roll(1, 3)) / 3  # smooth-ish, odd content


def _batch_params(config: DegradeConfig, seeds: list[int], scale: int) -> dict[str, torch.Tensor]:
    return stack_params(
        [sample_params(config, torch.Generator().manual_seed(s), scale) for s in seeds]
    )


def test_same_seed_same_output_different_seed_different_output() -> None:
    gt = _image(4)
    a = degrade(gt, _batch_params(EVERYTHING, [1, 2, 3, 4], 4), 4)
    b = degrade(gt, _batch_params(EVERYTHING, [1, 2, 3, 4], 4), 4)
    c = degrade(gt, _batch_params(EVERYTHING, [5, 6, 7, 8], 4), 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (4, 3, 5, 3)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.sampled_from([2, 4]))
def test_output_is_in_range_and_on_the_8bit_grid(seed: int, scale: int) -> None:
    gt = _image(2, 4 * scale + 4, 3 * scale, seed=seed % 1000)
    lq = degrade(gt, _batch_params(EVERYTHING, [seed, seed + 1], scale), scale)
    assert lq.min() >= 0 and lq.max() <= 1
    assert torch.equal(lq, (lq * 255).round() / 255)


def test_params_are_drawn_in_a_fixed_order_whatever_the_probabilities() -> None:
    """Turning one degradation on must not reshuffle the others' parameters."""
    quiet = sample_params(DegradeConfig(), torch.Generator().manual_seed(9), 4)
    loud = sample_params(EVERYTHING, torch.Generator().manual_seed(9), 4)
    assert quiet["kernel"] == loud["kernel"] and quiet["noise_seed"] == loud["noise_seed"]
    assert quiet["jpeg"] == 0 and quiet["bc"] == 0 and quiet["palette"] == 0


@pytest.mark.parametrize("kernel", ["area", "bilinear", "bicubic", "lanczos"])
def test_resize_down_keeps_flat_images_flat_and_shrinks_by_the_factor(kernel: str) -> None:
    flat = torch.full((1, 3, 12, 20), 0.3)
    out = resize_down(flat, 4, kernel)
    assert out.shape == (1, 3, 3, 5)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        resize_down(torch.zeros(1, 3, 13, 20), 4, kernel)


def test_area_is_the_box_average_and_point_sampling_picks_texels() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4) / 16
    assert resize_down(x, 2, "area")[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4 / 16)
    assert torch.equal(point_sample(x, 2, 1, 0)[0, 0], x[0, 0, 1::2, 0::2])
    with pytest.raises(ValueError, match="phase"):
        point_sample(x, 2, 2, 0)


def test_point_sampling_aliases_where_filters_average() -> None:
    stripes = torch.zeros(1, 3, 8, 8)
    stripes[..., ::2] = 1.0  # one-texel stripes: exactly what a shrink must not keep
    assert point_sample(stripes, 2, 0, 0).mean().item() == 1.0  # aliased to solid white
    assert resize_down(stripes, 2, "area").mean().item() == pytest.approx(0.5)


def test_blur_is_identity_at_zero_sigma_and_keeps_the_mean_when_wrapped() -> None:
    x = _image(2)
    out = gaussian_blur(x, torch.tensor([0.0, 1.5]))
    assert torch.allclose(out[0], x[0])
    assert out[1].std() < x[1].std()
    wrapped = gaussian_blur(x, torch.tensor([1.0, 2.0]), wrap=True)
    assert torch.allclose(wrapped.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-5)


def test_noise_is_seeded_and_gray_noise_is_equal_in_every_channel() -> None:
    x = torch.full((2, 3, 9, 7), 0.5)
    sigma, seed = torch.tensor([0.1, 0.1]), torch.tensor([5, 6])
    a = gaussian_noise(x, sigma, torch.tensor([True, False]), seed)
    assert torch.equal(a, gaussian_noise(x, sigma, torch.tensor([True, False]), seed))
    assert torch.equal(a[0, 0], a[0, 1]) and not torch.equal(a[1, 0], a[1, 1])
    assert 0.07 < (a - x).std().item() < 0.13


def _blocky(h: int = 16, w: int = 20) -> torch.Tensor:
    """Texture-like: one luminance pattern under a colour tint (channels correlate, as in most
    textures; BC1 stores each block's colours on one line through RGB)."""
    luma = torch.from_numpy(height_field(h, w, 1)).float()
    tint = torch.tensor([0.9, 0.6, 0.3]).view(3, 1, 1)
    return 0.1 + 0.8 * luma * tint


@pytest.mark.parametrize("fmt", ["bc1", "bc3"])
def test_block_compression_round_trip_is_close_and_lossy(fmt: str) -> None:
    x = _blocky()
    out = codecs.bc_roundtrip(x, fmt)
    assert out.shape == x.shape
    error = (out - x).abs().mean().item()
    block_means = (
        torch.nn.functional.avg_pool2d(x[None], 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    )
    assert 0 < error < 0.5 * (block_means[0] - x).abs().mean().item()  # better than flat blocks
    rgba = torch.cat([x, torch.linspace(0, 1, 20).expand(1, 16, 20)])
    out4 = codecs.bc_roundtrip(rgba, fmt)
    assert out4.shape == (4, 16, 20)
    # BC3 interpolates alpha (8 levels per block), BC1 here leaves it as it was.
    assert (out4[3] - rgba[3]).abs().max() < (0.1 if fmt == "bc3" else 1 / 255)


def test_bc1_quantises_each_4x4_block_to_at_most_4_colours_in_565() -> None:
    x = torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(0))
    out = (codecs.bc_roundtrip(x, "bc1") * 255).round().long()
    for by in range(0, 8, 4):
        for bx in range(0, 12, 4):
            block = out[:, by : by + 4, bx : bx + 4].reshape(3, -1).T
            assert len({tuple(c) for c in block.tolist()}) <= 4


def test_jpeg_round_trip_loses_more_at_lower_quality() -> None:
    x = _image(1, 32, 24)[0]
    low, high = codecs.jpeg_roundtrip(x, 20), codecs.jpeg_roundtrip(x, 95)
    assert (low - x).abs().mean() > (high - x).abs().mean() > 0


@pytest.mark.parametrize("dither", [False, True])
def test_palette_has_at_most_n_colours(dither: bool) -> None:
    x = _image(1, 17, 11)[0]
    out = codecs.palette_quantise(x, 8, dither=dither)
    assert len(torch.unique(out.reshape(3, -1), dim=1).T) <= 8
    assert out.shape == x.shape


def test_dithering_differs_from_flat_banding() -> None:
    ramp = torch.linspace(0, 1, 64).expand(3, 16, 64).contiguous()
    flat = codecs.palette_quantise(ramp, 4, dither=False)
    dithered = codecs.palette_quantise(ramp, 4, dither=True)
    assert not torch.equal(flat, dithered)
    # Dithering keeps local averages closer to the ramp than flat bands do.
    blur = torch.nn.functional.avg_pool2d
    assert (blur(dithered[None], 4) - blur(ramp[None], 4)).abs().mean() < (
        blur(flat[None], 4) - blur(ramp[None], 4)
    ).abs().mean()


def test_wrap_crop_continues_across_the_edge() -> None:
    image = torch.arange(5 * 7).view(1, 5, 7)
    crop = wrap_crop(image, 3, 5, 4, 4)
    assert crop[0, 0, 0] == image[0, 3, 5] and crop[0, 2, 2] == image[0, 0, 0]
    assert crop.shape == (1, 4, 4)


def test_normal_maps_stay_unit_length_after_degradation() -> None:
    normal = (
        torch.from_numpy(normals_from_height(height_field(16, 24), 6))
        .permute(2, 0, 1)[None]
        .float()
    )
    gt = torch.cat([normal, normal])
    lq = degrade(gt, _batch_params(GAME_MIX, [3, 4], 4), 4, torch.tensor([True, False]))
    lengths = (lq[0] * 2 - 1).norm(dim=0)
    assert (lengths - 1).abs().max() < 0.02  # 8-bit rounding of a unit vector
    assert torch.allclose(renormalise_normals(gt), gt, atol=1e-5)


# -- augmentation ---------------------------------------------------------------------------------


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()


@pytest.mark.parametrize("convention", ["opengl", "directx"])
@pytest.mark.parametrize(
    "aug",
    [
        Augmentation(flip_x=True),
        Augmentation(flip_y=True),
        Augmentation(quarter_turns=1),
        Augmentation(quarter_turns=3),
        Augmentation(True, True, 1),
        Augmentation(True, False, 2),
    ],
)
def test_augmenting_a_normal_map_equals_the_normals_of_the_augmented_surface(
    aug: Augmentation, convention: str
) -> None:
    """Transform the height field, then derive normals == derive normals, then augment them."""
    y_down = convention == "directx"
    height = height_field(12, 18, seed=2)
    expected_height = augment(torch.from_numpy(height)[None], aug)[0].numpy()
    expected = _as_tensor(normals_from_height(expected_height, y_down=y_down))
    got = augment(
        _as_tensor(normals_from_height(height, y_down=y_down)),
        aug,
        normal=True,
        convention=convention,
    )
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)


def test_plain_augmentation_of_a_normal_map_would_be_wrong() -> None:
    """The test above can fail: treating the map as colour gives different vectors."""
    height = height_field(12, 18, seed=2)
    aug = Augmentation(quarter_turns=1)
    as_colour = augment(_as_tensor(normals_from_height(height)), aug)
    expected = _as_tensor(
        normals_from_height(augment(torch.from_numpy(height)[None], aug)[0].numpy())
    )
    assert not torch.allclose(as_colour, expected, atol=1e-3)


def test_augmentation_sampling_respects_switches_and_is_seeded() -> None:
    draws = {sample_augmentation(torch.Generator().manual_seed(s)) for s in range(400)}
    assert len(draws) == 16  # 2 x 2 x 4
    none = sample_augmentation(torch.Generator().manual_seed(1), flip=False, rotate=False)
    assert none == Augmentation()


def test_a_matte_keeps_part_of_the_picture_over_one_flat_colour():
    from training.augment import matte

    torch.manual_seed(0)
    picture = torch.randint(1, 255, (4, 64, 64), dtype=torch.uint8)  # RGBA, no pure 0 or 255
    backgrounds = set()
    for seed in range(12):
        out = matte(picture, torch.Generator().manual_seed(seed))
        assert torch.equal(out[3], picture[3])  # alpha keeps its meaning
        kept = (out[:3] == picture[:3]).all(dim=0)
        assert 0.15 <= float(kept.float().mean()) <= 0.85
        ground = out[:3][:, ~kept]
        assert bool((ground == ground[:, :1]).all())  # one flat colour
        backgrounds.add(tuple(ground[:, 0].tolist()))
        again = matte(picture, torch.Generator().manual_seed(seed))
        assert torch.equal(out, again)  # the generator decides everything
    assert (255, 255, 255) in backgrounds and (0, 0, 0) in backgrounds


def test_matte_prob_is_checked():
    from training.config import ConfigError, DataConfig

    with pytest.raises(ConfigError, match="matte_prob"):
        DataConfig(matte_prob=1.5)
