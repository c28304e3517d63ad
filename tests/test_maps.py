"""Map types on real textures: detection, normal maps as vectors, data maps as linear numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA

from training import maps as training_maps
from upscaler import load_model
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture import maps, normals


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        *[(f"rock_{s}.png", "normal") for s in ("n", "nm", "nrm", "normal", "norm")],
        *[
            (f"rock_{s}.tga", "data")
            for s in ("r", "rough", "m", "metal", "ao", "h", "height", "disp", "mask", "s")
        ],
        ("rock_spec.dds", "data"),
        ("rock_gloss.png", "data"),
        ("T_Rock_N.PNG", "normal"),  # case does not matter
        ("rock_nor_gl.png", "normal"),  # a convention tag after the kind
        ("rock_normal_dx.png", "normal"),
        ("env/rock_ORM.png", "data"),
        ("rock.png", None),
        ("rock_d.png", None),
        ("rock_n2.png", "normal"),  # a second variant: digits after the kind word are dropped
        ("rock_d.png", None),
        ("n.png", None),  # no underscore: a name, not a suffix
        ("normal_rock.png", None),
    ],
)
def test_suffix_rules(name: str, kind: str | None) -> None:
    assert maps.kind_from_name(name) == kind


# Real-world names from game dumps and asset packs, and the map type they hold.
REAL_WORLD_NAMES = [
    ("brick_normals.png", "normal"),  # plural
    ("rock_ddn.png", "normal"),  # CryEngine
    ("bricksNormal.png", "normal"),  # camelCase
    ("T_Wall_NRM.tga", "normal"),  # Unreal
    ("wall03_local.tga", "normal"),  # id Tech 4
    ("stone01_norm.jpg", "normal"),
    ("metal_plate_normal_map.png", "normal"),
    ("Ground_Normal_OpenGL.png", "normal"),
    ("crate_NormalMap2.dds", "normal"),
    ("rock_rough.png", "data"),
    ("crate_mask2.png", "data"),
    ("T_Wall_ORM.tga", "data"),
    ("Metal012_2K_Roughness.jpg", "data"),  # ambientCG
    ("stone_height_map.png", "data"),
    ("tree_opacity.png", "data"),
    ("metal_plate.png", None),  # a colour map of metal, not a metalness map
    ("n64_brick.png", None),
    ("normal_rock.png", None),  # "normal" as the first word is not a suffix
    ("ui_button_normal_hover.png", None),
    ("lava_glow.png", None),  # emissive maps are colour
    ("Wood_BaseColor.png", None),
]


@pytest.mark.parametrize(("name", "kind"), REAL_WORLD_NAMES)
def test_training_and_inference_give_the_same_map_type(name: str, kind: str | None) -> None:
    """The name decides for both sides; the pixels confirm a normal map for both sides."""
    normal = read_image(DATA / "grass01_n.png").pixels
    colour = read_image(DATA / "redrock01_tile.png").pixels
    assert maps.kind_from_name(name) == kind
    for pixels, is_normal in ((normal, True), (colour, False)):
        upscale_kind = maps.detect(name, pixels, 8)[0]
        train_kind = training_maps.classify(name, pixels)
        expected = kind if kind != "normal" or is_normal else None
        assert upscale_kind == (expected or "color")
        assert train_kind == (expected or "color")


def test_normal_by_name_is_confirmed_by_content() -> None:
    normal = read_image(DATA / "grass01_n.png")
    colour = read_image(DATA / "redrock01_tile.png")
    assert maps.detect("grass01_n.png", normal.pixels, 8) == ("normal", False, [])
    kind, two, notes = maps.detect("redrock01_n.png", colour.pixels, 8)
    assert kind == "color" and not two and "not unit vectors" in notes[0]
    gray = read_image(DATA / "sand01_rough.png")
    kind, _, notes = maps.detect("sand01_n.png", gray.pixels, 8)
    assert kind == "color" and "no RGB" in notes[0]
    # Forced: obeyed, with a note when the content disagrees.
    kind, _, notes = maps.detect("redrock01.png", colour.pixels, 8, "normal")
    assert kind == "normal" and "renormalised anyway" in notes[0]
    assert maps.detect("grass01_n.png", normal.pixels, 8, "color") == ("color", False, [])


def test_two_channel_normal_map_is_recognised() -> None:
    bc5 = read_image(DATA / "grass01_ati2_n.dds")
    assert bc5.channels == 3 and int(bc5.pixels[:, :, 2].max()) == 0
    info = plan_texture(bc5, "grass01_ati2_n.dds")
    assert info.kind == "normal" and info.two_channel


def _upscale(model: Path, image: ImageFile, name: str, **options: object) -> ImageFile:
    opts = TextureOptions(**options)  # type: ignore[arg-type]
    info = plan_texture(image, name, opts)
    return upscale_images(load_model(model), [image], opts, infos=[info])[0]


@pytest.mark.parametrize("options", [{}, {"native": True}, {"output_scale": 1.5}])
def test_upscaled_normals_stay_unit_length(blur_x2: Path, options: dict[str, object]) -> None:
    image = read_image(DATA / "grass01_n.png")
    out = _upscale(blur_x2, image, "grass01_n.png", **options)
    as_colour = _upscale(blur_x2, image, "grass01_n.png", map="color", **options)
    before = normals.length_error(image.pixels)
    assert normals.length_error(out.pixels) <= before
    # The blur shortens vectors: treated as colour they come out measurably short.
    assert normals.length_error(as_colour.pixels) > 2 * before
    # Directions survive: the renormalised output is close to the colour-path one in angle.
    a = normals.decode(torch.from_numpy(out.pixels / 255.0).permute(2, 0, 1)[None])
    b = normals.decode(torch.from_numpy(as_colour.pixels / 255.0).permute(2, 0, 1)[None])
    assert normals.angular_error(a, b) < 3


def test_green_is_never_flipped(tiny_x2: Path) -> None:
    """A map and its green-flipped twin (DirectX vs OpenGL) come out as each other's twins."""
    image = read_image(DATA / "grass01_n.png")
    flipped = image.with_pixels(image.pixels.copy())
    flipped.pixels[:, :, 1] = 255 - flipped.pixels[:, :, 1]
    out = _upscale(tiny_x2, image, "a_n.png").pixels.astype(int)
    out_flipped = _upscale(tiny_x2, flipped, "b_n.png").pixels.astype(int)
    mean_g, mean_g_flipped = out[:, :, 1].mean(), out_flipped[:, :, 1].mean()
    assert abs(mean_g + mean_g_flipped - 255) < 8  # mirrored around the middle, not equal
    assert abs(image.pixels[:, :, 1].mean() - mean_g) < 8


def test_two_channel_normals_keep_blue_empty_and_xy_in_the_disc(tiny_x2: Path) -> None:
    bc5 = read_image(DATA / "grass01_ati2_n.dds")
    for options in ({}, {"native": True}):
        out = _upscale(tiny_x2, bc5, "grass01_ati2_n.dds", **options)
        assert out.channels == 3 and int(out.pixels[:, :, 2].max()) == 0
        xy = out.pixels[:, :, :2] / 255 * 2 - 1
        assert np.hypot(xy[:, :, 0], xy[:, :, 1]).max() <= 1 + 2 / 255


def test_native_normals_average_vectors() -> None:
    """Downsampling a field of two opposite tilts gives straight up, not a shortened vector."""
    v = torch.zeros(1, 3, 4, 4)
    v[:, 0] = torch.tensor([0.6, -0.6]).repeat(2)[None, None, :].expand(1, 4, 4)
    v[:, 2] = 0.8
    info = maps.MapInfo(kind="normal")
    filtered = maps.to_filter_space(normals.encode(v), info)
    small = torch.nn.functional.avg_pool2d(filtered, 2)
    codes = maps.quantize_filtered(small, info, 8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(codes[:, :, 0], 128, atol=1)
    assert (codes[:, :, 2] == 255).all()  # renormalised: (0, 0, 1), not (0, 0, 0.8)


def test_data_maps_stay_linear_single_channel_and_16_bit(tiny_x2: Path) -> None:
    for name, bits in (("sand01_rough.png", 8), ("sand01_height16_h.png", 16)):
        image = read_image(DATA / name)
        info = plan_texture(image, name)
        assert info.kind == "data"
        out = _upscale(tiny_x2, image, name, native=True)
        assert out.channels == 1 and out.bits == bits and out.pixels.dtype == image.pixels.dtype
    # Linear: a data checkerboard averages to the middle value, a colour one to sRGB(50%).
    checker = np.zeros((8, 8, 1), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 255
    x = torch.from_numpy(checker / 255.0).permute(2, 0, 1)[None].float()
    for kind, expected in (("data", 128), ("color", 188)):
        info = maps.MapInfo(kind=kind)
        small = torch.nn.functional.avg_pool2d(maps.to_filter_space(x, info), 2)
        assert int(maps.quantize_filtered(small, info, 8).float().mean()) == expected


def test_best_fit_codes_beat_plain_rounding() -> None:
    rng = torch.Generator().manual_seed(0)
    v = normals.normalize(torch.randn(1, 3, 64, 64, generator=rng).abs() + 0.1)
    plain = (normals.encode(v) * 255 + 0.5).floor()
    fitted = normals.quantize(v, 8).float()
    assert normals.length_error(fitted / 255) < 0.75 * normals.length_error(plain / 255)
    assert normals.angular_error(normals.decode(fitted / 255), v) < 0.5  # degrees
