"""Image files: modes and bit depths survive a read/write round trip; bad files fail clearly."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import make_pixels
from PIL import Image

from upscaler.formats.image import ImageReadError, probe, read_image, write_image


def _save(path: Path, pixels: np.ndarray, **params: object) -> Path:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    data = pixels[:, :, 0] if mode == "L" else pixels
    Image.fromarray(data, mode=mode).save(path, **params)
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tga", ".webp", ".bmp"])
def test_round_trip_keeps_mode(tmp_path: Path, channels: int, suffix: str) -> None:
    if suffix == ".bmp" and channels in (2, 4) or suffix == ".webp" and channels < 3:
        pytest.skip("format cannot hold this mode")
    pixels = make_pixels(17, 11, channels)
    params = {"lossless": True} if suffix == ".webp" else {}
    image = read_image(_save(tmp_path / f"in{suffix}", pixels, **params))
    assert image.pixels.shape == (17, 11, channels) and image.bits == 8
    np.testing.assert_array_equal(image.pixels, pixels)
    write_image(tmp_path / f"out{suffix}", image)
    again = read_image(tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(again.pixels, pixels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_keeps_16_bits(tmp_path: Path, channels: int) -> None:
    import imagecodecs

    pixels = make_pixels(19, 13, channels, bits=16)
    path = tmp_path / "h16.png"
    path.write_bytes(imagecodecs.png_encode(pixels[:, :, 0] if channels == 1 else pixels))
    image = read_image(path)
    assert image.bits == 16 and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)
    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, pixels)


def test_tga_rle_and_bottom_left_origin(tmp_path: Path) -> None:
    pixels = make_pixels(9, 7, 4)
    path = _save(tmp_path / "a.tga", pixels, compression="tga_rle", orientation=-1)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, pixels)  # rows in top-down order in memory
    write_image(tmp_path / "b.tga", image)
    with Image.open(tmp_path / "b.tga") as im:
        assert im.info.get("compression") == "tga_rle" and im.info["orientation"] == -1
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_palette_image_reads_as_rgb_with_palette_kept(tmp_path: Path) -> None:
    rgb = Image.fromarray(make_pixels(16, 12, 3)).quantize(colors=8)
    rgb.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.channels == 3 and image.source_mode == "P"
    assert image.palette is not None and image.palette.shape[1] == 3


def test_icc_profile_is_kept(tmp_path: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _save(tmp_path / "icc.png", make_pixels(8, 8, 3), icc_profile=icc)
    image = read_image(tmp_path / "icc.png")
    write_image(tmp_path / "out.png", image)
    with Image.open(tmp_path / "out.png") as im:
        assert im.info.get("icc_profile") == icc


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG that declares ``width x height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("bomb.png", _png_bomb(100_000, 100_000), "pixel"),
        ("tiff.png", b"II*\x00" + b"\x00" * 100, "content is TIFF"),
        ("eps.png", b"%!PS-Adobe-3.0 EPSF-3.0\n" * 4, "content is EPS"),
        ("text.jpg", b"hello, I am not a jpeg at all" * 4, "not a valid JPEG"),
        ("notes.txt", b"hello", "unsupported file type"),
    ],
)
def test_bad_files_fail_with_one_line_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_truncated_png_is_not_padded_with_gray(tmp_path: Path) -> None:
    path = _save(tmp_path / "full.png", make_pixels(64, 64, 3, seed=3))
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image(cut)


def test_directory_named_like_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path / "x.png")


def test_probe_reads_header_only(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", make_pixels(17, 11, 3))
    assert probe(path) == (17, 11)
