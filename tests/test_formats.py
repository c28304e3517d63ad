"""Formats through the whole command, on real textures: palette, ICC, TGA layouts, 16 bits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DATA
from PIL import Image, ImageCms

from upscaler.cli import main
from upscaler.formats.image import read_image


def _upscale(source: Path, out: Path, model: Path, *flags: str) -> None:
    args = [source, "-o", out, "--model", model, "-q", *flags]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _palette(path: Path) -> set[tuple[int, ...]]:
    with Image.open(path) as im:
        assert im.mode == "P"
        used = sorted(set(np.asarray(im).ravel().tolist()))
        entries = np.asarray(im.getpalette("RGB")).reshape(-1, 3)
        return {tuple(entries[i]) for i in used}


@pytest.mark.parametrize("mode", ["rgb", "keep"])
def test_palette_images(tmp_path: Path, tiny_x2: Path, mode: str) -> None:
    shutil.copy(DATA / "redrock01_palette.png", tmp_path)
    _upscale(tmp_path / "redrock01_palette.png", tmp_path / "out", tiny_x2, "--palette", mode)
    source = read_image(DATA / "redrock01_palette.png")
    assert source.source_mode == "P" and source.palette is not None
    out = tmp_path / "out" / "redrock01_palette.png"
    if mode == "keep":
        allowed = {tuple(c) for c in source.palette.tolist()}
        assert _palette(out) <= allowed  # re-quantised to the source palette
    else:
        with Image.open(out) as im:
            assert im.mode == "RGB" and im.size == (80, 48)
            assert len(set(map(tuple, np.asarray(im).reshape(-1, 3).tolist()))) > 16


def test_palette_with_transparency_keeps_its_alpha(tmp_path: Path, tiny_x2: Path) -> None:
    grate = Image.open(DATA / "grate01_skin.png")
    grate.quantize(colors=12, method=Image.Quantize.FASTOCTREE).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P" and "transparency" in im.info
    _upscale(tmp_path / "p.png", tmp_path / "out", tiny_x2, "--palette", "keep")
    with Image.open(tmp_path / "out" / "p.png") as im:
        assert im.mode == "P" and "transparency" in im.info
        rgba = np.asarray(im.convert("RGBA"))
    source = read_image(tmp_path / "p.png")
    allowed = {tuple(c) for c in source.palette.tolist()}
    assert {tuple(c) for c in rgba.reshape(-1, 4).tolist()} <= allowed


def test_icc_profile_survives_the_command(tmp_path: Path, tiny_x2: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(DATA / "redrock01_tile.png") as im:
        im.save(tmp_path / "rock.png", icc_profile=icc)
    _upscale(tmp_path / "rock.png", tmp_path / "out", tiny_x2)
    with Image.open(tmp_path / "out" / "rock.png") as im:
        assert im.info.get("icc_profile") == icc


def test_tga_rle_bottom_left_through_the_command(tmp_path: Path, tiny_x2: Path) -> None:
    with Image.open(DATA / "grate01_skin.png") as im:
        im.save(tmp_path / "grate01_skin.tga", compression="tga_rle", orientation=-1)
        top_row = np.asarray(im)[0]
    source = read_image(tmp_path / "grate01_skin.tga")
    np.testing.assert_array_equal(source.pixels[0], top_row)  # rows in top-down order
    _upscale(tmp_path / "grate01_skin.tga", tmp_path / "out", tiny_x2)
    with Image.open(tmp_path / "out" / "grate01_skin.tga") as im:
        assert im.info.get("compression") == "tga_rle" and im.info["orientation"] == -1
        assert im.size == (96, 80) and im.mode == "RGBA"


def test_16_bit_png_height_map_stays_16_bit(tmp_path: Path, tiny_x2: Path) -> None:
    shutil.copy(DATA / "sand01_height16_h.png", tmp_path)
    _upscale(tmp_path, tmp_path / "out", tiny_x2, "--native")
    out = read_image(tmp_path / "out" / "sand01_height16_h.png")
    source = read_image(DATA / "sand01_height16_h.png")
    assert out.bits == 16 and out.channels == 1 and out.size == source.size
    assert (out.pixels % 257 != 0).mean() > 0.5  # real 16-bit values, not 8-bit ones widened
