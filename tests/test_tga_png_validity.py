"""Valid TGA files Pillow refuses are read (packets across rows, 15-bit colour); invalid TGA and
PNG files it accepts are refused (no colour map, an unknown critical PNG chunk)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image, UnidentifiedImageError

from benchmarks.faults import tga_bytes
from upscaler.cli import main
from upscaler.formats import tga
from upscaler.formats.image import ImageReadError, probe, read_image

HEADER = struct.Struct("<BBBHHBHHHHBB")


def _runs_across_rows(stored: np.ndarray) -> bytes:
    """Run-length packets over ``(H, W, B)`` stored texel bytes taken as one stream: runs of
    equal texels and raw stretches, both free to run on into the next row (as TGA 1.0 allowed)."""
    texels = [bytes(t) for t in stored.reshape(-1, stored.shape[2])]
    out, i = [], 0
    while i < len(texels):
        n = 1
        while i + n < len(texels) and n < 128 and texels[i + n] == texels[i]:
            n += 1
        if n > 1:
            out.append(bytes([0x80 | (n - 1)]) + texels[i])
        else:
            while i + n < len(texels) and n < 128 and texels[i + n] != texels[i + n - 1]:
                n += 1
            out.append(bytes([n - 1]) + b"".join(texels[i : i + n]))
        i += n
    return b"".join(out)


def _crossing(plain: bytes, stored: np.ndarray) -> bytes:
    """``plain`` (an uncompressed TGA from ``tga_bytes``) with its pixels re-packed as runs that
    cross rows: same header (image type + 8), colour map and stored rows."""
    id_len, map_type, kind, _, length, map_bits = HEADER.unpack_from(plain)[:6]
    start = HEADER.size + id_len + (length * ((map_bits + 7) // 8) if map_type else 0)
    head = plain[:2] + bytes([kind | tga.RLE]) + plain[3:start]
    return head + _runs_across_rows(stored)


def _stored(pixels: np.ndarray, origin: int) -> np.ndarray:
    """The texel bytes as ``tga_bytes.tga`` stores them (bottom-up unless TOP; BGR order)."""
    rows = pixels if origin & tga_bytes.TOP else pixels[::-1]
    rows = rows[:, ::-1] if origin & tga_bytes.RIGHT else rows
    if rows.shape[2] >= 3:
        rows = np.concatenate([rows[:, :, 2::-1], rows[:, :, 3:]], axis=2)
    return np.ascontiguousarray(rows)


def _blocky(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """Pixels with runs that span row ends (flat stretches) and noisy stretches."""
    pixels = make_pixels(h, w, c, seed=seed)
    pixels[: h // 2, :] = pixels[0, 0]  # one long run over several whole rows
    pixels[h // 2 :, w // 3 :] = pixels[-1, -1]
    return pixels


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("origin", [0, tga_bytes.TOP, tga_bytes.TOP | tga_bytes.RIGHT])
def test_run_length_packets_across_rows_are_read(
    tmp_path: Path, channels: int, origin: int
) -> None:
    """TGA 1.0 let run-length packets run on into the next row; GIMP and ImageMagick read such
    files, Pillow stops with "buffer overrun". The same pixels as the uncompressed file."""
    pixels = _blocky(11, 17, channels)
    plain = tga_bytes.tga(pixels, origin=origin)
    (tmp_path / "plain.tga").write_bytes(plain)
    (tmp_path / "runs.tga").write_bytes(_crossing(plain, _stored(pixels, origin)))
    with Image.open(tmp_path / "runs.tga") as im, pytest.raises(OSError, match="overrun"):
        im.load()  # the case: Pillow refuses this file
    image = read_image(tmp_path / "runs.tga")
    np.testing.assert_array_equal(image.pixels, read_image(tmp_path / "plain.tga").pixels)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.save_options["compression"] == "tga_rle"  # written back compressed
    assert probe(tmp_path / "runs.tga") == (11, 17)


def test_colour_mapped_runs_across_rows_are_read(tmp_path: Path) -> None:
    palette = make_pixels(1, 7, 3, seed=3)[0]
    indices = (np.arange(11 * 17) // 13 % 7).astype(np.uint8).reshape(11, 17, 1)
    plain = tga_bytes.tga(indices, palette=palette)
    (tmp_path / "plain.tga").write_bytes(plain)
    (tmp_path / "runs.tga").write_bytes(_crossing(plain, indices))
    image = read_image(tmp_path / "runs.tga")
    np.testing.assert_array_equal(image.pixels, read_image(tmp_path / "plain.tga").pixels)
    np.testing.assert_array_equal(image.pixels, palette[indices[:, :, 0]])
    assert image.source_mode == "P" and image.palette is not None


def test_runs_that_overrun_the_image_are_still_refused(tmp_path: Path) -> None:
    """Packets may cross rows but not the end of the image; cut data is truncated."""
    pixels = _blocky(5, 7, 3)
    plain = tga_bytes.tga(pixels)
    runs = _crossing(plain, _stored(pixels, tga_bytes.TOP))
    (tmp_path / "short.tga").write_bytes(runs[:-4])
    (tmp_path / "over.tga").write_bytes(runs + bytes([0xFF, 1, 2, 3]))  # trailing: ignored
    with pytest.raises(ImageReadError, match=r"short\.tga: corrupt TGA run-length data") as info:
        read_image(tmp_path / "short.tga")
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(read_image(tmp_path / "over.tga").pixels, pixels)


def _x555(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB to 16-bit x-5-5-5 words (blue lowest), and the 8-bit values they stand for."""
    five = rgb.astype(np.uint16) >> 3
    words = (five[..., 0] << 10) | (five[..., 1] << 5) | five[..., 2]
    return words.astype("<u2")


def _expanded(rgb: np.ndarray) -> np.ndarray:
    """5-bit levels widened to 8 bits as Pillow widens 16-bit maps (x * 255 // 31)."""
    five = (rgb >> 3).astype(np.uint32)
    return (five * 255 // 31).astype(np.uint8)


@pytest.mark.parametrize("rle", [False, True])
def test_a_15_bit_colour_map_is_read(tmp_path: Path, rle: bool) -> None:
    """A 15-bit colour map is valid TGA (5 bits each of red, green and blue); Pillow knows
    only 16, 24 and 32-bit maps and refuses the file. It reads as the 16-bit map does."""
    palette = make_pixels(1, 9, 3, seed=5)[0]
    indices = (np.arange(11 * 17) % 9).astype(np.uint8).reshape(11, 17, 1)
    plain = tga_bytes.tga(indices, palette=palette, rle=rle)
    start = HEADER.size + 9 * 3
    table = _x555(palette).tobytes()
    for bits in (15, 16):
        header = bytearray(plain[: HEADER.size])
        header[7] = bits
        (tmp_path / f"map{bits}.tga").write_bytes(bytes(header) + table + plain[start:])
    with pytest.raises(UnidentifiedImageError):  # the case: Pillow alone refuses it
        Image.open(tmp_path / "map15.tga", formats=["TGA"])
    image = read_image(tmp_path / "map15.tga")
    np.testing.assert_array_equal(image.pixels, _expanded(palette)[indices[:, :, 0]])
    np.testing.assert_array_equal(image.pixels, read_image(tmp_path / "map16.tga").pixels)
    assert probe(tmp_path / "map15.tga") == (11, 17)


def test_15_bit_texels_are_read(tmp_path: Path) -> None:
    rgb = make_pixels(11, 17, 3, seed=6)
    header = HEADER.pack(0, 0, 2, 0, 0, 0, 0, 0, 17, 11, 15, tga_bytes.TOP)
    (tmp_path / "t15.tga").write_bytes(header + _x555(rgb).tobytes())
    np.testing.assert_array_equal(read_image(tmp_path / "t15.tga").pixels, _expanded(rgb))


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("origin", [0, tga_bytes.TOP | tga_bytes.RIGHT])
def test_the_rewrite_reads_as_pillow_reads_ordinary_files(
    tmp_path: Path, channels: int, origin: int
) -> None:
    """On run-length files Pillow reads, the rewritten file reads exactly the same, an
    extension area that marks the alpha as absent included."""
    pixels = _blocky(11, 17, channels, seed=channels)
    data = tga_bytes.tga(pixels, origin=origin, rle=True)
    extension = bytearray(tga.EXTENSION_BYTES)
    extension[:2] = struct.pack("<H", tga.EXTENSION_BYTES)  # attributes type (494) 0: no alpha
    data += bytes(extension) + struct.pack("<II", len(data), 0) + tga.FOOTER
    rewritten = tga.rewritten(data)
    assert rewritten is not None and rewritten[2] == data[2] & ~tga.RLE
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(rewritten)) as b:
        assert a.mode == b.mode and a.info["orientation"] == b.info["orientation"]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        if channels == 4:
            assert (np.asarray(b)[:, :, 3] == 255).all()  # the extension area was honoured


def test_a_crossing_tga_goes_through_the_command(tmp_path: Path, tiny_x2: Path) -> None:
    pixels = _blocky(11, 17, 3)
    plain = tga_bytes.tga(pixels)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "wall.tga").write_bytes(_crossing(plain, _stored(pixels, tga_bytes.TOP)))
    result = CliRunner().invoke(
        main, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tiny_x2), "-q"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "wall.tga") as im:
        assert im.size == (34, 22) and im.info.get("compression") == "tga_rle"


@pytest.mark.parametrize("kind", [1, 9])
def test_a_colour_mapped_tga_with_a_zero_length_map_is_refused(tmp_path: Path, kind: int) -> None:
    header = HEADER.pack(0, 1, kind, 0, 0, 24, 0, 0, 4, 3, 8, tga_bytes.TOP)
    body = bytes(range(12)) if kind == 1 else bytes([0x8B, 5])
    (tmp_path / "nomap.tga").write_bytes(header + body)
    for read in (read_image, probe):
        with pytest.raises(ImageReadError, match="nomap.tga: a colour-mapped TGA .* without"):
            read(tmp_path / "nomap.tga")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_png_with_an_unknown_critical_chunk_is_refused(
    tmp_path: Path, bits: int, where: str
) -> None:
    """A chunk type with an upper-case first letter is critical: a decoder that does not know
    it must refuse the file (PNG spec, 5.4); Pillow skipped it and decoded the rest. Unknown
    ancillary chunks (lower-case first letter) are still skipped."""
    pixels = make_pixels(11, 17, 3, seed=1)
    im = (
        Image.fromarray(pixels)
        if bits == 8
        else Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257)
    )
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    png = buffer.getvalue()
    at = png.index(b"IDAT") - 4 if where == "before" else png.index(b"IEND") - 4
    (tmp_path / "crit.png").write_bytes(png[:at] + _chunk(b"ZOOM", b"\x02") + png[at:])
    (tmp_path / "anc.png").write_bytes(png[:at] + _chunk(b"zoOm", b"\x02") + png[at:])
    for read in (read_image, probe):
        with pytest.raises(ImageReadError, match="crit.png: unknown critical PNG chunk 'ZOOM'"):
            read(tmp_path / "crit.png")
    assert read_image(tmp_path / "anc.png").size == (11, 17)
