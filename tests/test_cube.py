"""DDS cube maps and texture arrays: every layer read, upscaled (cube faces with their neighbours'
edges) and written back in the same layout; the seams where cube faces meet stay continuous."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from upscaler.cli import main
from upscaler.engine.load import load_model
from upscaler.formats import bcn, dds, ddsheader
from upscaler.formats.ddsheader import DdsFormat, dx10_format
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture import cube
from upscaler.texture.mips import chain_sizes

XBGR8_LEGACY = DdsFormat("X8B8G8R8", bitcount=32, masks=(0xFF, 0xFF00, 0xFF0000, 0))
DXT1 = DdsFormat("DXT1", 1, fourcc=b"DXT1")
DXT5 = DdsFormat("DXT5", 3, fourcc=b"DXT5")
LAYOUTS = {
    # name: (format, mips); each written as a cube map of 12x12 faces
    "legacy_xbgr8": (XBGR8_LEGACY, 4),
    "legacy_dxt5": (DXT5, 1),
    "dx10_bc1": (dx10_format(71), 4),
    "dx10_bc7_srgb": (dx10_format(99), 1),
}


def sphere_faces(size: int, channels: int = 3) -> np.ndarray:
    """A cube map ``(6, N, N, C)`` uint8 of a smooth function of the direction, so every face
    edge is continuous: colour that turns with the direction, and a band of detail."""
    faces = []
    for face in range(cube.FACES):
        d = cube.face_directions(face, size)
        wave = 0.15 * np.sin(6 * d[..., 0] + 4 * d[..., 1] - 5 * d[..., 2])
        rgb = [0.5 + 0.3 * d[..., i] + wave for i in range(3)]
        alpha = [0.6 + 0.3 * d[..., 1]] if channels == 4 else []
        faces.append(np.stack([*rgb, *alpha][:channels], axis=-1))
    return (np.clip(np.stack(faces), 0, 1) * 255).round().astype(np.uint8)


def _levels(top: np.ndarray, mips: int) -> list[np.ndarray]:
    """A plain box-filtered chain (only the file layout matters here)."""
    chain = [top]
    for h, w in chain_sizes(*top.shape[:2])[1:mips]:
        prev = chain[-1].astype(np.float64)
        ph, pw = prev.shape[:2]
        prev = prev[: h * 2 if ph > 1 else 1, : w * 2 if pw > 1 else 1]
        level = prev.reshape(h, prev.shape[0] // h, w, prev.shape[1] // w, -1).mean(axis=(1, 3))
        chain.append(level.round().astype(np.uint8))
    return chain


def _surface(pixels: np.ndarray, fmt: DdsFormat) -> bytes:
    if fmt.block:
        return bcn.encode(pixels, fmt.block)
    rgba = np.concatenate([pixels, np.full_like(pixels[:, :, :1], 255)], axis=2)[:, :, :4]
    return np.ascontiguousarray(rgba).tobytes()  # R, G, B, A bytes: the RGBA8 masks


def write_layers(
    path: Path, layers: np.ndarray, fmt: DdsFormat, mips: int = 1, cube_map: bool = True
) -> list[np.ndarray]:
    """Write ``layers`` ``(L, N, N, C)`` as a DDS cube map (or array); what a reader should get
    back for each layer's top level (block formats: the decoded blocks)."""
    n = layers.shape[1]
    head = ddsheader.pack_header(fmt, n, n, mips, 0, len(layers), cube_map)
    data = [_surface(level, fmt) for layer in layers for level in _levels(layer, mips)]
    path.write_bytes(head + b"".join(data))
    if not fmt.block:
        return list(layers)
    decoded = [bcn.decode(_surface(layer, fmt), fmt.block, n, n) for layer in layers]
    opaque_bc1 = fmt.block == 1 and all(d[:, :, 3].min() == 255 for d in decoded)
    return [d[:, :, :3] if opaque_bc1 else d for d in decoded]


def _layout(path: Path) -> tuple[int, int, int, int, int, int]:
    """(height, width, mips, caps2, DX10 misc flags, DX10 array size) read with struct."""
    data = path.read_bytes()
    flags, height, width = struct.unpack_from("<3I", data, 8)
    mips = struct.unpack_from("<I", data, 28)[0] if flags & 0x20000 else 1
    caps2 = struct.unpack_from("<I", data, 112)[0]
    misc, array = struct.unpack_from("<2I", data, 136) if data[84:88] == b"DX10" else (0, 0)
    return height, width, mips, caps2, misc, array


def test_cube_faces_line_up_across_every_edge() -> None:
    faces = torch.from_numpy(sphere_faces(16)).permute(0, 3, 1, 2).float()
    inner = float((faces[..., 1:] - faces[..., :-1]).abs().mean())
    continuous = cube.seam_error(faces)
    assert continuous < inner  # texels across an edge are as close as neighbours inside
    turned = faces.clone()
    turned[2] = faces[2].transpose(1, 2)  # +Y stored turned: four edges break
    assert cube.seam_error(turned) > 3 * continuous
    padded = cube.pad_faces(faces.to(torch.uint8), 5)
    assert padded.shape == (6, 3, 26, 26) and padded.dtype == torch.uint8
    assert torch.equal(padded[:, :, 5:21, 5:21], faces.to(torch.uint8))
    rows = padded.float()[:, :, 4:22, 4:22]  # one ring of neighbours around each face
    jump = (rows[:, :, :, 1:] - rows[:, :, :, :-1]).abs()
    assert float(jump[:, :, 1:-1, [0, -1]].mean()) < inner * 1.2  # no jump into the padding


def test_context_is_seen_by_the_model_and_cropped(tiny_x2: Path) -> None:
    upscaler = load_model(tiny_x2)
    x = torch.rand(2, 3, 19, 13, generator=torch.Generator().manual_seed(0))
    whole = upscaler.upscale(x)
    inner = upscaler.upscale(x, context=3)
    assert inner.shape == (2, 3, 26, 14)
    torch.testing.assert_close(inner, whole[:, :, 6:-6, 6:-6])
    with pytest.raises(ValueError, match="context"):
        upscaler.upscale(x, context=7)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_cube_map_layouts_are_read_face_by_face(tmp_path: Path, name: str) -> None:
    fmt, mips = LAYOUTS[name]
    path = tmp_path / f"{name}.dds"
    expected = write_layers(path, sphere_faces(12, 4 if fmt.block == 3 else 3), fmt, mips)
    image = read_image(path)
    info = image.info["dds"]
    assert (info.cube, info.layers, info.mip_count) == (True, 6, mips)
    assert len(image.layers) == 6 and image.pixels is image.layers[0]
    for got, want in zip(image.layers, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert "cube map" in image.info["pixel_format"]


@pytest.mark.parametrize("cube_map", [True, False])
def test_every_layer_and_its_mips_are_written_where_readers_look(
    tmp_path: Path, cube_map: bool
) -> None:
    rng = np.random.default_rng(1)
    layers = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    fmt = XBGR8_LEGACY if cube_map else dx10_format(28)
    source = ddsheader.DdsInfo(8, 8, 4, fmt, 128, layers=6, cube=cube_map)
    chains = [_levels(layer, 4) for layer in layers]
    write = dds.DdsWrite(
        mips=tuple(chains[0][1:]), layer_mips=tuple(tuple(c[1:]) for c in chains[1:])
    )
    data, _ = dds.encode(layers[0], 8, source, write, tuple(layers))
    path = tmp_path / "layers.dds"
    path.write_bytes(data)
    again = read_image(path)
    assert again.info["dds"].layers == 6 and again.info["dds"].cube == cube_map
    for got, want in zip(again.layers, layers, strict=True):
        np.testing.assert_array_equal(got[:, :, :3], want)
    per_layer = 4 * (64 + 16 + 4 + 1)
    assert len(data) == (128 if cube_map else 148) + 6 * per_layer
    last = np.frombuffer(data[-4:], np.uint8)  # the 1x1 mip of the last layer ends the file
    np.testing.assert_array_equal(last[:3], chains[-1][-1][0, 0])


def _run(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("forced", [False, True])
def test_cube_map_round_trips_through_upscale(
    tmp_path: Path, tiny_x2: Path, name: str, forced: bool
) -> None:
    fmt, mips = LAYOUTS[name]
    source = tmp_path / "in" / f"sky_{name}.dds"
    source.parent.mkdir()
    write_layers(source, sphere_faces(12, 4 if fmt.block == 3 else 3), fmt, mips)
    report = tmp_path / "report.json"
    more = ["--format", "dds"] if forced else []
    result = _run(
        source, "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--report", report, *more
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / source.name
    h, w, out_mips, caps2, misc, array = _layout(out)
    src = _layout(source)
    assert (h, w) == (24, 24)
    assert out_mips == (len(chain_sizes(24, 24)) if mips > 1 else 1)
    assert (caps2, misc, array) == src[3:]  # legacy caps2 cube flags, or DX10 cube and count
    assert source.read_bytes()[84:88] == out.read_bytes()[84:88]  # same header style
    again = read_image(out)
    assert again.info["dds"].format == read_image(source).info["dds"].format
    header = 148 if fmt.dxgi else 128
    per_face = sum(ddsheader.surface_bytes(fmt, *s) for s in chain_sizes(24, 24)[:out_mips])
    assert len(out.read_bytes()) == header + 6 * per_face
    assert len(again.layers) == 6 and all(layer.shape[:2] == (24, 24) for layer in again.layers)
    entry = json.loads(report.read_text())["files"][0]
    assert any("each face upscaled with the edges" in note for note in entry["notes"])


def test_a_cube_map_gets_another_dds_format_but_no_other_file_format(
    tmp_path: Path, tiny_x2: Path
) -> None:
    source = tmp_path / "in" / "sky.dds"
    source.parent.mkdir()
    write_layers(source, sphere_faces(8), DXT1, 1)
    result = _run(source, "-o", tmp_path / "bc7", "--model", tiny_x2, "-q", "--dds-format", "bc7")
    assert result.exit_code == 0, result.output
    out = tmp_path / "bc7" / "sky.dds"
    _, _, _, caps2, misc, array = _layout(out)
    assert (misc, array) == (0x4, 1)  # BC7 needs a DX10 header: the cube goes with it
    assert len(read_image(out).layers) == 6
    result = _run(source, "-o", tmp_path / "png", "--model", tiny_x2, "--format", "png")
    assert result.exit_code == 1
    assert "a cube map (6 layers) can only be written as DDS" in result.output


def test_array_slices_round_trip_each_with_its_own_wrap(tmp_path: Path, tiny_x2: Path) -> None:
    y, x = np.mgrid[0:16, 0:16] / 16
    tiles = (
        0.5
        + 0.25 * np.cos(2 * np.pi * x)[..., None] * [1, 0.5, 0.2]
        + 0.2 * np.cos(2 * np.pi * y)[..., None]
    )
    ramp = x[..., None] * np.ones(3)  # wraps top to bottom only (a trim sheet)
    slices = np.stack([tiles, ramp, (x + y)[..., None] / 2 * np.ones(3)])
    slices = (np.clip(slices, 0, 1) * 255).round().astype(np.uint8)
    source = tmp_path / "in" / "atlas.dds"
    source.parent.mkdir()
    write_layers(source, slices, dx10_format(28), 5, cube_map=False)
    image = read_image(source)
    assert (image.info["dds"].layers, image.info["dds"].cube, len(image.layers)) == (3, False, 3)
    plan = plan_texture(image, "atlas.dds")
    assert [layer.wrap for layer in plan.layers] == [(True, True), (True, False), (False, False)]
    result = _run(source, "-o", tmp_path / "out", "--model", tiny_x2, "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "atlas.dds"
    assert _layout(out) == (32, 32, 6, 0, 0, 3)
    again = read_image(out)
    assert len(again.layers) == 3 and again.layers[0].shape == (32, 32, 4)


def test_neighbour_padding_keeps_cube_seams_continuous(blur_x2: Path) -> None:
    """A blur mixes neighbours as any model does, predictably: with the faces around it, each
    face's edge is blurred with what lies across it, and the seams stay as continuous as the
    input's; alone, each face is blurred with its own edge repeated, and the seams open."""
    upscaler = load_model(blur_x2)
    faces = sphere_faces(24)
    source = ddsheader.DdsInfo(24, 24, 1, XBGR8_LEGACY, 128, layers=6, cube=True)
    image = ImageFile(faces[0], "DDS", info={"dds": source}, layers=tuple(faces))
    options = TextureOptions()
    with_neighbours = upscale_images(upscaler, [image], options)[0].layers
    one_by_one = [
        upscale_images(upscaler, [image.with_pixels(f)], options, wrap=(False, False))[0].pixels
        for f in faces
    ]
    padded, alone, before = map(seam_errors, (with_neighbours, one_by_one, faces))
    print(f"cube seam error (levels): input {before:.2f}, {padded:.2f} padded, {alone:.2f} alone")
    assert padded <= before  # measured: 4.18 against the input's 4.28
    assert alone > 1.25 * padded  # measured: 5.55


def seam_errors(faces: list[np.ndarray] | tuple[np.ndarray, ...]) -> float:
    """``cube.seam_error`` of uint8 faces ``(N, N, C)``, in 8-bit levels."""
    return cube.seam_error(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float())
