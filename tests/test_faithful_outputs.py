"""No silently wrong output: non-finite models, premultiplied alpha, EXIF orientation,
PNG colour keys, BMP alpha, ICC profiles, lossless WebP, padded DDS rows, DDS masks, TGA origins,
sizes a format cannot hold."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels, write_blur
from PIL import Image, ImageOps

from benchmarks.faults import dds_bytes, tga_bytes
from upscaler import save_weights
from upscaler.cli import main
from upscaler.formats.image import ImageReadError, probe, read_image, write_image
from upscaler.models import Compact, CompactConfig
from upscaler.texture import alpha


def _invoke(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _run_ok(*args: object) -> None:
    result = _invoke(*args, "-q")
    assert result.exit_code == 0, result.output


# -- a model that makes NaN or Inf is refused --------------------------------------------------


@pytest.mark.parametrize("factor", [1e18, 1e30])
def test_a_model_that_makes_non_finite_values_is_refused(tmp_path: Path, factor: float) -> None:
    torch.manual_seed(0)
    config = CompactConfig(num_features=8, num_blocks=2, scale=2)
    model = Compact(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)  # finite weights, overflowing activations
    path = tmp_path / "exploding.safetensors"
    save_weights(path, model, arch="compact", config=config)
    for i in range(3):
        Image.fromarray(make_pixels(16, 12, 3, seed=i)).save(tmp_path / f"in{i}.png")
    result = _invoke(
        *(tmp_path / f"in{i}.png" for i in range(3)), "-o", tmp_path / "out", "-m", path
    )
    assert result.exit_code == 3, result.output
    assert "model refused: model exploding produced NaN or Inf" in result.output
    assert not list((tmp_path / "out").glob("*.png"))


# -- premultiplied alpha stays premultiplied ---------------------------------------------------


def _premultiplied_dds(path: Path, h: int = 16, w: int = 20) -> np.ndarray:
    """DX10 R8G8B8A8_UNORM, alpha mode 2: a bright opaque right half, clear left half (colour 0
    there, as premultiplied alpha requires), a half-transparent band between."""
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[:, w // 2 :] = (250, 200, 40, 255)
    rgba[:, w // 2 - 2 : w // 2] = (60, 48, 10, 128)  # premultiplied: colour <= alpha
    path.write_bytes(dds_bytes.dx10_header(w, h, 28, alpha_mode=2) + rgba.tobytes())
    return rgba


def test_premultiplied_dds_stays_premultiplied(tmp_path: Path, blur_x2: Path) -> None:
    """No colour may appear where alpha is 0 (it would glow when blended): the source's clear
    texels are not bled over, and no output texel has more colour than alpha allows."""
    _premultiplied_dds(tmp_path / "glow.dds")
    _run_ok(tmp_path / "glow.dds", "-o", tmp_path / "out", "-m", blur_x2, "--alpha", "blended")
    out = read_image(tmp_path / "out" / "glow.dds")
    assert out.premultiplied and out.info["dds"].alpha_mode == 2
    a = out.pixels[:, :, 3]
    assert a.min() == 0 and (out.pixels[a == 0][:, :3] == 0).all()
    limit = alpha.clamp_premultiplied(out.pixels.copy(), 8, "color")
    np.testing.assert_array_equal(limit, out.pixels)  # already within the bound everywhere


def test_premultiplied_dds_to_png_is_written_straight(tmp_path: Path, blur_x2: Path) -> None:
    _premultiplied_dds(tmp_path / "glow.dds")
    _run_ok(tmp_path / "glow.dds", "-o", tmp_path / "out", "-m", blur_x2, "--format", "png")
    with Image.open(tmp_path / "out" / "glow.png") as im:
        rgba = np.asarray(im.convert("RGBA"))
    assert (rgba[:, 24:36, 3] == 255).all() and (rgba[:, 24:36, 0] == 250).all()  # kept
    assert (rgba[rgba[:, :, 3] == 0][:, :3] == 0).all()
    straight = alpha.unpremultiply(np.array([[[64, 32, 0, 128]]], np.uint8), 8, "data")
    np.testing.assert_array_equal(straight, [[[128, 64, 0, 128]]])


# -- EXIF orientation is applied ---------------------------------------------------------------


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_as_viewers_apply_it(
    tmp_path: Path, orientation: int, fmt: str
) -> None:
    pixels = make_pixels(10, 16, 3, seed=orientation)
    path = tmp_path / f"o{orientation}.{fmt.lower().replace('jpeg', 'jpg')}"
    params = {"quality": 100} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(path, exif=_exif(orientation), **params)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, expected)
    assert probe(path) == image.size
    assert (orientation == 1) == (not image.notes)


def test_exif_rotated_photo_comes_out_as_it_was_seen(tmp_path: Path, tiny_x2: Path) -> None:
    """Stored 16 wide x 10 high, tagged "rotate 90°": seen 10 wide x 16 high. The output is the
    seen picture, upscaled, with no tag left to rotate it again."""
    Image.fromarray(make_pixels(10, 16, 3)).save(tmp_path / "p.jpg", exif=_exif(6), quality=95)
    _run_ok(tmp_path / "p.jpg", "-o", tmp_path / "out", "-m", tiny_x2)
    with Image.open(tmp_path / "out" / "p.jpg") as im:
        assert im.size == (20, 32) and im.getexif().get(0x0112) in (None, 1)


# -- PNG colour keys (tRNS) are kept -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_8_bit_png_colour_key_is_kept(tmp_path: Path, blur_x2: Path, mode: str) -> None:
    c = 3 if mode == "RGB" else 1
    pixels = make_pixels(16, 20, c, seed=3)
    key = (255, 0, 255) if c == 3 else 7
    pixels[:, :8] = key  # a keyed-out left part
    Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, mode).save(
        tmp_path / "k.png", transparency=key
    )
    _run_ok(tmp_path / "k.png", "-o", tmp_path / "out", "-m", blur_x2)
    with Image.open(tmp_path / "out" / "k.png") as im:
        assert im.mode == mode and im.info.get("transparency") == key
        keyed = np.all(np.asarray(im).reshape(32, 40, c) == key, axis=2)
    assert keyed[:, :14].all() and not keyed[:, 18:].any()


def test_16_bit_png_colour_key_stays_a_colour_key(tmp_path: Path, blur_x2: Path) -> None:
    import imagecodecs

    pixels = make_pixels(12, 10, 3, seed=4, bits=16)
    key = (1000, 2000, 3000)
    pixels[:6] = key
    png = bytes(imagecodecs.png_encode(pixels))
    trns = b"tRNS" + struct.pack(">3H", *key)
    chunk = struct.pack(">I", 6) + trns + struct.pack(">I", zlib.crc32(trns))
    (tmp_path / "k16.png").write_bytes(png[:33] + chunk + png[33:])
    _run_ok(tmp_path / "k16.png", "-o", tmp_path / "out", "-m", blur_x2)
    data = (tmp_path / "out" / "k16.png").read_bytes()
    assert data[24:26] == b"\x10\x02"  # 16-bit RGB (colour type 2), not RGBA
    assert b"tRNS" + struct.pack(">3H", *key) in data
    out = imagecodecs.png_decode(data)  # the key turns back into alpha here
    assert out.shape == (24, 20, 4) and (out[:10, :, 3] == 0).all() and (out[14:, :, 3] > 0).all()


# -- BMP alpha is kept -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [2, 4])
def test_bmp_with_alpha_is_written_so_readers_see_the_alpha(
    tmp_path: Path, blur_x2: Path, channels: int
) -> None:
    pixels = make_pixels(12, 10, channels, seed=5)
    pixels[:, :, -1] = 255
    pixels[:4, :, -1] = 0
    Image.fromarray(pixels, "LA" if channels == 2 else "RGBA").save(tmp_path / "a.png")
    _run_ok(
        tmp_path / "a.png",
        "-o",
        tmp_path / "out",
        "-m",
        blur_x2,
        "--format",
        "bmp",
        "--seamless",
        "off",
    )
    with Image.open(tmp_path / "out" / "a.bmp") as im:
        assert im.mode == "RGBA" and im.size == (20, 24)
        a = np.asarray(im)[:, :, 3]
    assert (a[:6] == 0).all() and (a[10:] >= 240).all()
    again = read_image(tmp_path / "out" / "a.bmp")  # and upscale reads its own output so
    assert again.channels == 4


# -- ICC profiles, lossless WebP, padded DDS rows, DDS masks, TGA origin -----------------------


def _icc(space: bytes) -> bytes:
    """A minimal ICC profile header declaring ``space`` (b"CMYK", b"RGB ", b"GRAY")."""
    header = struct.pack(">I4sI", 132, b"none", 0x04300000) + b"mntr" + space + b"XYZ "
    header += bytes(128 - len(header))
    return header + struct.pack(">I", 0)


def test_a_cmyk_profile_is_not_copied_onto_rgb_output(tmp_path: Path, tiny_x2: Path) -> None:
    cmyk = Image.fromarray(make_pixels(12, 10, 4, seed=6), "CMYK")
    cmyk.save(tmp_path / "c.jpg", icc_profile=_icc(b"CMYK"), quality=95)
    Image.fromarray(make_pixels(12, 10, 3)).save(tmp_path / "r.jpg", icc_profile=_icc(b"RGB "))
    _run_ok(tmp_path / "c.jpg", tmp_path / "r.jpg", "-o", tmp_path / "out", "-m", tiny_x2)
    with Image.open(tmp_path / "out" / "c.jpg") as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info
    with Image.open(tmp_path / "out" / "r.jpg") as im:
        assert im.info.get("icc_profile") == _icc(b"RGB ")


def test_16_bit_png_keeps_its_icc_profile(tmp_path: Path, tiny_x2: Path) -> None:
    import imagecodecs

    png = bytes(imagecodecs.png_encode(make_pixels(12, 10, 3, bits=16)))
    profile = _icc(b"RGB ")
    iccp = b"iCCP" + b"mine\0\0" + zlib.compress(profile)
    chunk = struct.pack(">I", len(iccp) - 4) + iccp + struct.pack(">I", zlib.crc32(iccp))
    (tmp_path / "p16.png").write_bytes(png[:33] + chunk + png[33:])
    _run_ok(tmp_path / "p16.png", "-o", tmp_path / "out", "-m", tiny_x2)
    with Image.open(tmp_path / "out" / "p16.png") as im:
        assert im.info.get("icc_profile") == profile
    assert read_image(tmp_path / "out" / "p16.png").bits == 16


def test_lossless_webp_in_the_extended_container_stays_lossless(
    tmp_path: Path, tiny_x2: Path
) -> None:
    pixels = make_pixels(12, 10, 4, seed=7)
    Image.fromarray(pixels, "RGBA").save(
        tmp_path / "l.webp", lossless=True, icc_profile=_icc(b"RGB ")
    )
    assert (tmp_path / "l.webp").read_bytes()[12:16] == b"VP8X"
    assert read_image(tmp_path / "l.webp").save_options["lossless"]
    _run_ok(tmp_path / "l.webp", "-o", tmp_path / "out", "-m", tiny_x2)
    data = (tmp_path / "out" / "l.webp").read_bytes()
    assert b"VP8L" in data and b"VP8 " not in data


@pytest.mark.parametrize(("width", "bitcount"), [(5, 24), (7, 24), (3, 8), (5, 16)])
def test_legacy_dds_rows_padded_to_whole_words_are_read_straight(
    tmp_path: Path, width: int, bitcount: int
) -> None:
    """Direct3D 9 laid uncompressed rows out on 4-byte boundaries; the header's pitch says so."""
    h, step = 6, bitcount // 8
    masks = {24: (0xFF0000, 0xFF00, 0xFF, 0), 8: (0xFF, 0, 0, 0), 16: (0xF800, 0x7E0, 0x1F, 0)}
    flags = dds_bytes.PF_LUMINANCE if bitcount == 8 else dds_bytes.PF_RGB
    row = width * step
    pitch = row + (-row % 4)
    rng = np.random.default_rng(width)
    packed = rng.integers(0, 256, (h, row), dtype=np.uint8)
    padded = np.concatenate([packed, np.full((h, pitch - row), 0xAB, np.uint8)], axis=1)
    header = dds_bytes.legacy_header(
        width, h, pf_flags=flags, bitcount=bitcount, masks=masks[bitcount], pitch=pitch
    )
    (tmp_path / "padded.dds").write_bytes(header + padded.tobytes())
    (tmp_path / "packed.dds").write_bytes(
        dds_bytes.legacy_header(width, h, pf_flags=flags, bitcount=bitcount, masks=masks[bitcount])
        + packed.tobytes()
    )
    np.testing.assert_array_equal(
        read_image(tmp_path / "padded.dds").pixels, read_image(tmp_path / "packed.dds").pixels
    )


def test_dds_masks_that_leave_channels_empty_decode(tmp_path: Path, tiny_x2: Path) -> None:
    """An RGB layout with only a blue mask: red and green are 0, not a crash."""
    data = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6)
    header = dds_bytes.legacy_header(6, 4, bitcount=8, masks=(0, 0, 0xFF, 0))
    (tmp_path / "blue.dds").write_bytes(header + data.tobytes())
    image = read_image(tmp_path / "blue.dds")
    np.testing.assert_array_equal(image.pixels[:, :, 2], data)
    assert not image.pixels[:, :, :2].any()
    _run_ok(tmp_path / "blue.dds", "-o", tmp_path / "out", "-m", tiny_x2)
    assert read_image(tmp_path / "out" / "blue.dds").size == (8, 12)


def test_dds_of_zero_width_says_so(tmp_path: Path) -> None:
    (tmp_path / "zero.dds").write_bytes(
        dds_bytes.legacy_header(0, 4, bitcount=32, masks=(0xFF, 0xFF00, 0xFF0000, 0)) + bytes(64)
    )
    with pytest.raises(ImageReadError, match=r"0x4: an image needs at least 1 pixel each way"):
        read_image(tmp_path / "zero.dds")


@pytest.mark.parametrize("origin", [0, tga_bytes.RIGHT, tga_bytes.TOP | tga_bytes.RIGHT])
@pytest.mark.parametrize("rle", [False, True])
def test_tga_origin_is_kept_and_the_picture_is_not_mirrored(
    tmp_path: Path, blur_x2: Path, origin: int, rle: bool
) -> None:
    pixels = make_pixels(6, 9, 3, seed=8)
    pixels[:, 0] = (255, 0, 0)  # a red left edge, as displayed
    (tmp_path / "t.tga").write_bytes(tga_bytes.tga(pixels, origin=origin, rle=rle))
    (tmp_path / "ref.tga").write_bytes(tga_bytes.tga(pixels, origin=tga_bytes.TOP, rle=rle))
    np.testing.assert_array_equal(read_image(tmp_path / "t.tga").pixels, pixels)
    _run_ok(tmp_path / "t.tga", tmp_path / "ref.tga", "-o", tmp_path / "out", "-m", blur_x2)
    out = (tmp_path / "out" / "t.tga").read_bytes()
    assert out[17] & 0x30 == origin  # the source's corner
    np.testing.assert_array_equal(
        read_image(tmp_path / "out" / "t.tga").pixels,
        read_image(tmp_path / "out" / "ref.tga").pixels,
    )


# -- outputs a format cannot hold, codec warnings ----------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "size", "limit"), [("jpg", (16380, 2), "65,500"), ("tga", (2, 16384), "65,535")]
)
def test_an_output_too_big_for_its_format_says_so(
    tmp_path: Path, blur_x2: Path, fmt: str, size: tuple[int, int], limit: str
) -> None:
    Image.fromarray(np.zeros(size, np.uint8), "L").save(tmp_path / "long.png")
    x4 = tmp_path / "x4.safetensors"
    write_blur(x4, scale=4)
    result = _invoke(tmp_path / "long.png", "-o", tmp_path / "out", "-m", x4, "--format", fmt)
    assert result.exit_code == 1
    line = next(ln for ln in result.output.splitlines() if ln.startswith("failed: "))
    assert f"at most {limit} px per side" in line and "--format png" in line


def test_write_image_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    from upscaler.formats.image import ImageFile, ImageWriteError

    image = ImageFile(np.zeros((2, 65_520, 1), np.uint8), "PNG")
    with pytest.raises(ImageWriteError, match="too big for JPEG"):
        write_image(tmp_path / "wide.jpg", image)
    assert not list(tmp_path.iterdir())


def test_libpng_warnings_print_nothing(
    tmp_path: Path, tiny_x2: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 16-bit PNG with a bad sRGB intent and an impossible tIME: libpng warns about both."""
    import imagecodecs

    png = bytes(imagecodecs.png_encode(make_pixels(8, 8, 3, bits=16)))
    chunks = b""
    for name, data in ((b"sRGB", b"\x09"), (b"tIME", b"\x00\x00\x0d\x20\x00\x00\x00")):
        chunks += struct.pack(">I", len(data)) + name + data
        chunks += struct.pack(">I", zlib.crc32(name + data))
    (tmp_path / "w.png").write_bytes(png[:33] + chunks + png[33:])
    assert read_image(tmp_path / "w.png").bits == 16
    result = _invoke(tmp_path / "w.png", "-o", tmp_path / "out", "-m", tiny_x2)
    captured = capfd.readouterr()
    assert result.exit_code == 0
    lines = (captured.out + captured.err + result.output).splitlines()
    assert not [ln for ln in lines if "warning" in ln.lower()], lines


def test_bmp_buffer_is_the_documented_v4_layout() -> None:
    from upscaler.formats.containers import bmp_with_alpha

    data = bmp_with_alpha(np.array([[[10, 20, 30, 40], [50, 60, 70, 80]]], np.uint8))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), [[[10, 20, 30, 40], [50, 60, 70, 80]]])
