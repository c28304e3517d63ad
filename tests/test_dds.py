"""DDS on real files written by other tools: reading, refusing, and writing back with mips."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DATA
from PIL import Image

from upscaler.cli import main
from upscaler.formats import bcn, blockencoders, dds, ddsheader
from upscaler.formats.image import ImageFile, ImageReadError, probe, read_image, write_image
from upscaler.texture import alpha, normals
from upscaler.texture.maps import MapInfo
from upscaler.texture.mips import build_chain, chain_sizes

FIXTURES = {
    # name: (format name, channels, mips, Pillow's pixel_format or None if Pillow cannot read it)
    "redrock01_dxt1.dds": ("DXT1", 3, 6, "DXT1"),
    "grate01_dxt1a.dds": ("DXT1", 4, 6, "DXT1"),
    "grate01_dxt5.dds": ("DXT5", 4, 6, "DXT5"),
    "sand01_ati1_rough.dds": ("ATI1", 1, 6, "BC4"),
    "grass01_ati2_n.dds": ("ATI2", 3, 6, "BC5"),
    "redrock01_bc7_srgb.dds": ("BC7_UNORM_SRGB", 4, 6, "BC7"),
    "jar_a8r8g8b8.dds": ("A8R8G8B8", 4, 6, ""),
    "sand01_r16_h.dds": ("R16_UNORM", 1, 1, None),
}


def _header_facts(path: Path) -> tuple[int, int, int, bytes, int]:
    """(height, width, mip count, FourCC, DXGI format) read with struct, not with our reader."""
    data = path.read_bytes()
    flags, height, width = struct.unpack_from("<3I", data, 8)
    mips = struct.unpack_from("<I", data, 28)[0] if flags & 0x20000 else 1
    fourcc = data[84:88]
    dxgi = struct.unpack_from("<I", data, 128)[0] if fourcc == b"DX10" else 0
    return height, width, mips, fourcc, dxgi


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reads_real_dds_files_like_pillow(name: str) -> None:
    fmt, channels, mips, pillow_format = FIXTURES[name]
    image = read_image(DATA / name)
    info = image.info["dds"]
    assert (info.format.name, image.channels, info.mip_count) == (fmt, channels, mips)
    assert image.size == probe(DATA / name) == _header_facts(DATA / name)[:2]
    if pillow_format is None:
        return
    with Image.open(DATA / name) as im:
        assert getattr(im, "pixel_format", "") == pillow_format
        theirs = np.asarray(im)
    theirs = theirs[:, :, None] if theirs.ndim == 2 else theirs
    if channels == 3 and theirs.shape[2] == 4:
        assert (theirs[:, :, 3] == 255).all()  # BC1 without transparency: RGB
        theirs = theirs[:, :, :3]
    diff = np.abs(image.pixels.astype(int) - theirs.astype(int))
    assert diff.max() <= 1, f"decoders disagree by {diff.max()}"


def test_srgb_flag_and_16_bits_are_read() -> None:
    assert read_image(DATA / "redrock01_bc7_srgb.dds").info["dds"].format.srgb
    assert not read_image(DATA / "grate01_dxt5.dds").info["dds"].format.srgb
    height = read_image(DATA / "sand01_r16_h.dds")
    assert height.bits == 16 and height.pixels.dtype == np.uint16
    png = read_image(DATA / "sand01_height16_h.png")  # the same data, written as a PNG
    np.testing.assert_array_equal(height.pixels, png.pixels)


def _dds_bytes(
    width: int,
    height: int,
    fourcc: bytes = b"DXT1",
    caps2: int = 0,
    dx10: tuple[int, int, int, int] | None = None,
    depth: int = 0,
) -> bytes:
    flags = 0x1 | 0x2 | 0x4 | 0x1000 | (0x800000 if depth else 0)
    head = b"DDS " + struct.pack("<7I", 124, flags, height, width, 0, depth, 1) + bytes(44)
    head += struct.pack("<2I4s5I", 32, 0x4, fourcc, 0, 0, 0, 0, 0)
    head += struct.pack("<5I", 0x1000, caps2, 0, 0, 0)
    if dx10 is not None:
        dxgi, dimension, misc, array = dx10
        head += struct.pack("<5I", dxgi, dimension, misc, array, 0)
    return head


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_dds_bytes(8, 8, b"DX10", dx10=(95, 3, 0, 1)), "unsupported DDS pixel format BC6H_UF16"),
        (_dds_bytes(8, 8, b"DX10", dx10=(10, 3, 0, 1)), "R16G16B16A16_FLOAT"),
        (_dds_bytes(8, 8, b"DX10", dx10=(98, 3, 0x4, 1)), "the top levels of 6 layers needs"),
        (_dds_bytes(8, 8, b"DX10", dx10=(71, 3, 0, 6)), "the top levels of 6 layers needs"),
        (_dds_bytes(8, 8, b"DX10", dx10=(71, 3, 0, 0)), "array size 0"),
        (_dds_bytes(8, 8, b"DX10", dx10=(71, 4, 0, 1)), "volume texture"),
        (_dds_bytes(8, 8, caps2=0x200 | 0x0C00), "cube map with 2 of its 6 faces"),
        (_dds_bytes(8, 4, caps2=0x200 | 0xFC00), "cube map of 8x4 faces, not square"),
        (_dds_bytes(4096, 4096, b"DX10", dx10=(71, 3, 0x4, 4)), "x 24 layers exceeds"),
        (_dds_bytes(8, 8, depth=4), "volume texture (4 slices)"),
        (_dds_bytes(8, 8, struct.pack("<I", 113)), "A16B16G16R16F"),
        (_dds_bytes(8, 8, b"DXT2"), "DXT2 (premultiplied alpha)"),
        (_dds_bytes(100_000, 100_000) + bytes(64), "pixel limit"),
        (_dds_bytes(64, 64) + bytes(100), "truncated DDS file"),
        (b"DDS " + bytes(20), "not a valid DDS file"),
    ],
)
def test_unsupported_or_bad_dds_fails_as_one_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.dds"
    path.write_bytes(content)
    for function in (probe, read_image):
        with pytest.raises(
            ImageReadError, match=reason.replace("(", r"\(").replace(")", r"\)")
        ) as info:
            function(path)
        assert "\n" not in str(info.value) and "bad.dds" in str(info.value)


def test_a_16384_square_header_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "big.dds"
    with open(path, "wb") as handle:
        handle.write(_dds_bytes(16384, 16384))
        handle.truncate(128 + 16384 * 16384 // 2)  # sparse: no disk used
    assert probe(path) == (16384, 16384)


def _run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_upscaled_dds_keeps_format_and_gets_a_full_mip_chain(
    tmp_path: Path, tiny_x2: Path, name: str
) -> None:
    fmt, channels, mips, pillow_format = FIXTURES[name]
    shutil.copy(DATA / name, tmp_path / name)
    report = tmp_path / "report.json"
    result = _run(
        tmp_path / name, "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--report", report
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / name
    h, w, src_mips, fourcc, dxgi = _header_facts(DATA / name)
    oh, ow, out_mips, out_fourcc, out_dxgi = _header_facts(out)
    assert (oh, ow) == (2 * h, 2 * w)
    assert out_mips == (len(chain_sizes(oh, ow)) if src_mips > 1 else 1)
    assert (out_fourcc, out_dxgi) == (fourcc, dxgi)  # same header style, format and sRGB flag
    assert len(out.read_bytes()) == _expected_bytes(
        read_image(DATA / name).info["dds"], oh, ow, out_mips
    )
    if pillow_format is not None:
        with Image.open(out) as im:
            im.load()
            assert im.size == (ow, oh) and getattr(im, "pixel_format", "") == pillow_format
    again = read_image(out)
    assert again.channels == channels and again.info["dds"].format.name == fmt
    entry = json.loads(report.read_text())["files"][0]
    assert entry["status"] == "done"
    # Nothing changed; without the dds extra, only which encoder wrote the blocks is noted.
    assert [note for note in entry["notes"] if " encoded with " not in note] == []


def _expected_bytes(info: dds.DdsInfo, h: int, w: int, mips: int) -> int:
    header = 148 if info.format.dxgi else 128
    sizes = chain_sizes(h, w)[:mips]
    return header + sum(ddsheader.surface_bytes(info.format, *size) for size in sizes)


def _levels(path: Path) -> list[np.ndarray]:
    """Every level of an uncompressed R8G8B8A8 file, decoded here with plain numpy."""
    data = path.read_bytes()
    h, w, mips, fourcc, dxgi = _header_facts(path)
    assert fourcc == b"DX10" and dxgi in (28, 29)  # R8G8B8A8_UNORM(_SRGB)
    offset, levels = 148, []
    for lh, lw in chain_sizes(h, w)[:mips]:
        n = lh * lw * 4
        levels.append(np.frombuffer(data, np.uint8, n, offset).reshape(lh, lw, 4))
        offset += n
    return levels


def test_normal_mips_are_renormalised_and_cutout_mips_keep_coverage(
    tmp_path: Path, tiny_x2: Path
) -> None:
    shutil.copy(DATA / "grass01_n.png", tmp_path)
    shutil.copy(DATA / "grate01_skin.png", tmp_path)
    flags = ("--format", "dds", "--dds-format", "rgba", "--model", tiny_x2, "-q")
    assert _run(tmp_path, "-o", tmp_path / "out", *flags).exit_code == 0
    for level in _levels(tmp_path / "out" / "grass01_n.dds"):
        assert normals.length_error(level) < 0.004  # every level stored unit length
    levels = _levels(tmp_path / "out" / "grate01_skin.dds")
    top = alpha.coverage(levels[0][:, :, 3], 8)
    source = alpha.coverage(read_image(DATA / "grate01_skin.png").pixels[:, :, 3], 8)
    assert abs(top - source) <= 0.01
    for level in levels[1:]:
        n = level.shape[0] * level.shape[1]
        assert abs(alpha.coverage(level[:, :, 3], 8) - top) <= max(0.01, 2 / n), level.shape


def test_colour_mips_are_filtered_in_linear_light() -> None:
    checker = np.zeros((4, 4, 3), np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = 255
    chain = build_chain(checker, 8, MapInfo(kind="color"), 3)
    assert [c.shape for c in chain] == [(4, 4, 3), (2, 2, 3), (1, 1, 3)]
    assert (chain[1] == 188).all() and (chain[2] == 188).all()  # sRGB of 50% light, not 128
    data = build_chain(checker[:, :, :1], 8, MapInfo(kind="data"), 2)
    assert (data[1] == 128).all()


def test_format_without_encoder_falls_back_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blockencoders, "installed", lambda module: module == "PIL")  # no etcpak
    image = read_image(DATA / "redrock01_bc7_srgb.dds")
    notes = write_image(tmp_path / "out.dds", image)
    preferred = bcn.choices(3, "balanced")[0]
    assert notes == [
        "BC7_UNORM_SRGB cannot be written: no encoder for it is installed (pip install etcpak); "
        "written as BC3_UNORM_SRGB",
        f"BC3_UNORM_SRGB encoded with Pillow, not {preferred.name}: {preferred.package} is not "
        f"installed (pip install {preferred.package})",
    ]
    assert read_image(tmp_path / "out.dds").info["dds"].format.name == "BC3_UNORM_SRGB"


def test_dds_quality_option_picks_the_encoders(tmp_path: Path, tiny_x2: Path) -> None:
    """The same run at each quality: valid BC1 files, each at least as close to the run's PNG
    output as the faster one's (and different bytes where the dds extra gives a choice)."""
    shutil.copy(DATA / "redrock01_dxt1.dds", tmp_path)
    flags = ("--model", tiny_x2, "-q")
    png = _run(tmp_path / "redrock01_dxt1.dds", "-o", tmp_path / "png", "--format", "png", *flags)
    assert png.exit_code == 0, png.output
    reference = read_image(tmp_path / "png" / "redrock01_dxt1.png").pixels[:, :, :3]
    scores, files = [], []
    for quality in ("fast", "balanced", "best"):
        out = tmp_path / quality
        result = _run(tmp_path / "redrock01_dxt1.dds", "-o", out, "--dds-quality", quality, *flags)
        assert result.exit_code == 0, result.output
        again = read_image(out / "redrock01_dxt1.dds")
        assert again.info["dds"].format.name == "DXT1" and again.size == reference.shape[:2]
        error = np.mean((again.pixels[:, :, :3].astype(float) - reference) ** 2)
        scores.append(10 * np.log10(255**2 / error))
        files.append((out / "redrock01_dxt1.dds").read_bytes())
    assert scores[0] <= scores[1] + 0.05 and scores[1] <= scores[2] + 0.05, scores
    if blockencoders.installed(bcn.choices(1, "fast")[0].module):
        assert files[0] != files[2]
    assert _run(tmp_path, "-o", tmp_path / "x", "--dds-quality", "ultra", *flags).exit_code == 2


def test_signed_bc5_round_trip(tmp_path: Path) -> None:
    """BC5_SNORM is written and read back as well as BC5_UNORM: the sign handling costs nothing,
    and both channels survive (a two-channel surface once reached the encoders as gray and
    alpha, and every BC5 file was written with red in both channels)."""
    source = read_image(DATA / "grass01_ati2_n.dds")
    errors = {}
    for dxgi in (83, 84):  # BC5_UNORM, BC5_SNORM
        info = dds.DdsInfo(source.size[1], source.size[0], 1, ddsheader.dx10_format(dxgi), 148)
        image = ImageFile(source.pixels, "DDS", info={"dds": info})
        write_image(tmp_path / "s.dds", image)
        again = read_image(tmp_path / "s.dds")
        assert again.info["dds"].format.dxgi == dxgi
        diff = np.abs(again.pixels[:, :, :2].astype(int) - source.pixels[:, :, :2].astype(int))
        assert diff.mean(axis=(0, 1)).max() < 2  # red and green both kept
        errors[dxgi] = diff.mean()
    assert errors[84] <= errors[83] + 0.5


@pytest.mark.parametrize("name", ["jar_a8r8g8b8.dds", "sand01_r16_h.dds"])
def test_uncompressed_layouts_round_trip_exactly(tmp_path: Path, name: str) -> None:
    image = read_image(DATA / name)
    write_image(tmp_path / name, image)
    again = read_image(tmp_path / name)
    assert again.info["dds"].format.name == image.info["dds"].format.name
    np.testing.assert_array_equal(again.pixels, image.pixels)


def test_png_to_dds_picks_a_format_for_the_content(tmp_path: Path, tiny_x2: Path) -> None:
    for name in ("redrock01_tile.png", "sand01_rough.png", "sand01_height16_h.png"):
        shutil.copy(DATA / name, tmp_path)
    result = _run(tmp_path, "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--format", "dds")
    assert result.exit_code == 0, result.output
    chosen = {
        name: read_image(tmp_path / "out" / name).info["dds"].format.name
        for name in ("redrock01_tile.dds", "sand01_rough.dds", "sand01_height16_h.dds")
    }
    assert chosen == {
        "redrock01_tile.dds": "BC7_UNORM_SRGB",
        "sand01_rough.dds": "BC4_UNORM",
        "sand01_height16_h.dds": "R16_UNORM",  # 16-bit data stays 16-bit
    }
    with Image.open(tmp_path / "out" / "redrock01_tile.dds") as im:
        assert getattr(im, "pixel_format", "") == "BC7" and im.size == (128, 64)


_LAYOUTS = [
    # (name, legacy pixel-format flags, bit count, masks) or a DX10 format number
    ("L8", 0x20000, 8, (0xFF, 0, 0, 0)),
    ("L8A8", 0x20000 | 0x1, 16, (0xFF, 0, 0, 0xFF00)),
    ("R8G8B8", 0x40, 24, (0xFF0000, 0xFF00, 0xFF, 0)),
    ("X8R8G8B8", 0x40, 32, (0xFF0000, 0xFF00, 0xFF, 0)),
    ("A8B8G8R8", 0x40 | 0x1, 32, (0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
    ("R5G6B5", 0x40, 16, (0xF800, 0x7E0, 0x1F, 0)),
    ("A1R5G5B5", 0x40 | 0x1, 16, (0x7C00, 0x3E0, 0x1F, 0x8000)),
    ("A4R4G4B4", 0x40 | 0x1, 16, (0xF00, 0xF0, 0xF, 0xF000)),
    ("A8", 0x2, 8, (0, 0, 0, 0xFF)),
    ("R8_UNORM", 61),
    ("R8G8_UNORM", 49),
    ("B8G8R8X8_UNORM_SRGB", 93),
]


@pytest.mark.parametrize("layout", _LAYOUTS, ids=[layout[0] for layout in _LAYOUTS])
def test_uncompressed_layouts_read_back_and_match_pillow(tmp_path: Path, layout: tuple) -> None:
    from helpers import make_pixels

    if len(layout) == 2:
        fmt = ddsheader.dx10_format(layout[1])
    else:
        flags, bitcount, masks = layout[1:]
        fmt = ddsheader.legacy_uncompressed_format(flags, bitcount, masks)
        assert fmt.name == layout[0]  # the name comes from the masks
    _, channels = dds.planes(fmt)
    pixels = make_pixels(13, 11, channels)
    if fmt.masks[1] and not fmt.masks[2]:
        pixels[:, :, 2] = 0  # RG: blue is empty
    info = dds.DdsInfo(11, 13, 1, fmt, 148 if fmt.dxgi else 128)
    write_image(tmp_path / "x.dds", ImageFile(pixels, "DDS", info={"dds": info}))
    again = read_image(tmp_path / "x.dds")
    assert again.info["dds"].format.name == fmt.name and again.channels == channels
    widest_loss = max(256 // (1 << m.bit_count()) for m in fmt.masks if m)  # 565 etc. are lossy
    assert np.abs(again.pixels.astype(int) - pixels.astype(int)).max() <= widest_loss
    if not fmt.dxgi and channels != 1 or layout[0] == "L8":
        with Image.open(tmp_path / "x.dds") as im:  # an independent decoder agrees
            theirs = np.asarray(im)
        theirs = theirs[:, :, None] if theirs.ndim == 2 else theirs
        assert np.abs(theirs.astype(int) - again.pixels.astype(int)).max() <= 1


def test_dxt3_is_read_like_pillow(tmp_path: Path) -> None:
    with Image.open(DATA / "grate01_skin.png") as im:
        im.save(tmp_path / "g.dds", pixel_format="DXT3")
    ours = read_image(tmp_path / "g.dds")
    assert ours.info["dds"].format.name == "DXT3"
    with Image.open(tmp_path / "g.dds") as im:
        theirs = np.asarray(im)
    assert np.abs(ours.pixels.astype(int) - theirs.astype(int)).max() <= 1  # rounding only
