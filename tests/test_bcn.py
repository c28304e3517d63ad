"""Block encoders: every measured choice writes valid blocks of real textures, the choices beat
the encoders used before them, and a missing ``dds`` extra falls back with a note."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DATA

from upscaler.cli import main
from upscaler.formats import bcn, blockencoders
from upscaler.formats.image import read_image, write_image
from upscaler.texture import normals
from upscaler.texture.levels import to_tensor

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "textures"
ODD = (37, 29)  # not a multiple of 4: partial blocks are padded, then cut off again


def _texture(name: str, size: tuple[int, int] | None = None, at: int = 0) -> np.ndarray:
    """A real texture: the bundled samples (128 x 128), else the test fixtures."""
    path = SAMPLES / name if (SAMPLES / name).exists() else DATA / name
    pixels = read_image(path).pixels
    if size is not None:
        pixels = pixels[at : at + size[0], at : at + size[1]]
    return np.ascontiguousarray(pixels)


def _round_trip(pixels: np.ndarray, block: int, encoder: bcn.Encoder) -> np.ndarray:
    h, w = pixels.shape[:2]
    return bcn.decode(bcn.encode(pixels, block, encoder=encoder), block, h, w)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def _angle(decoded: np.ndarray, reference: np.ndarray) -> float:
    def vectors(pixels: np.ndarray) -> object:
        rgb = np.zeros(pixels.shape[:2] + (3,), np.uint8)
        rgb[:, :, :2] = pixels[:, :, :2]
        return normals.rebuild_z(normals.decode(to_tensor(rgb, 8)))

    return normals.angular_error(vectors(decoded), vectors(reference))


CASES = [(b, q, c) for b in (1, 2, 3, 4, 5, 7) for q in bcn.QUALITIES for c in (True, False)]


@pytest.mark.parametrize(("block", "quality", "colour"), CASES)
def test_every_choice_writes_valid_blocks_of_real_textures(
    block: int, quality: str, colour: bool
) -> None:
    """What ``dds`` would use here (the preferred encoder, or its fallback), on odd-sized crops."""
    encoder, _ = bcn.choose(block, quality, colour=colour)
    colour_map = _texture("redrock01.png", ODD)
    cutout = _texture("grate01_skin.png", ODD, at=40)
    if block in (1, 3, 7):
        decoded = _round_trip(colour_map, block, encoder)
        assert decoded.shape == (*ODD, 4) and (decoded[:, :, 3] >= 254).all()  # stays opaque
        assert _psnr(decoded[:, :, :3], colour_map) > 30
    if block == 1:  # 1-bit alpha: the alpha test keeps exactly the texels it kept
        binary = cutout.copy()
        binary[:, :, 3] = np.where(cutout[:, :, 3] >= 128, 255, 0)
        assert 0 < (binary[:, :, 3] == 0).mean() < 1
        decoded = _round_trip(binary, 1, encoder)
        np.testing.assert_array_equal(decoded[:, :, 3], binary[:, :, 3])
        keep = binary[:, :, 3] > 0
        assert _psnr(decoded[:, :, :3][keep], binary[:, :, :3][keep]) > 25
    if block in (2, 3, 7):
        decoded = _round_trip(cutout, block, encoder)
        if block == 2:  # 4-bit alpha, rounded
            assert np.abs(decoded[:, :, 3].astype(int) - cutout[:, :, 3]).max() <= 9
        assert _psnr(decoded[:, :, 3], cutout[:, :, 3]) > 30
        assert np.mean((decoded[:, :, 3] >= 128) != (cutout[:, :, 3] >= 128)) < 0.02
    if block == 4:
        gray = _texture("sand01_rough.png", (31, 39))
        assert _psnr(_round_trip(gray, 4, encoder)[:, :, :1], gray[:, :, :1]) > 40
    if block == 5:  # both channels kept (the green channel was once written as red)
        rg = _texture("grass01_n.png", ODD)[:, :, :2].copy()
        decoded = _round_trip(rg, 5, encoder)
        assert np.abs(decoded.astype(int) - rg).mean(axis=(0, 1)).max() < 3
        assert _angle(decoded, rg) < 2


def test_signed_blocks_hold_the_same_values() -> None:
    rg = _texture("grass01_n.png", ODD)[:, :, :2].copy()
    for block, pixels in ((4, rg[:, :, :1].copy()), (5, rg)):
        encoder, _ = bcn.choose(block)
        h, w = pixels.shape[:2]
        unsigned = bcn.decode(bcn.encode(pixels, block, encoder=encoder), block, h, w)
        data = bcn.encode(pixels, block, signed=True, encoder=encoder)
        np.testing.assert_array_equal(bcn.decode(data, block, h, w, signed=True), unsigned)


def _preferred_installed(block: int, quality: str, colour: bool = True) -> bcn.Encoder:
    encoder = bcn.choices(block, quality, colour=colour)[0]
    if not blockencoders.installed(encoder.module):
        pytest.skip(f"{encoder.package} is not installed (the dds extra)")
    return encoder


def test_default_bc1_gains_over_pillow_on_our_x4_outputs(tmp_path: Path) -> None:
    """The target (a 2.5 dB gain) is measured by ``benchmarks/bcn.py`` on 12 real 1024² x4
    outputs: +3.30 dB with texture-x4 v2 (+3.55 with v1). This is its small proxy, three 64 px
    crops through the command: +2.35 dB with v2 (+2.59 with v1), held at 2.0 here."""
    encoder = _preferred_installed(1, bcn.DEFAULT_QUALITY)
    names = ("redrock01.png", "duct.png", "wood_planks1.png")
    (tmp_path / "in").mkdir()
    for name in names:  # 64 x 64 crops, 256 x 256 outputs: a second of CPU
        crop = _texture(name, (64, 64), at=32)
        write_image(tmp_path / "in" / name, read_image(SAMPLES / name).with_pixels(crop))
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "texture-x4", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    pillow = blockencoders.registry()[(1, "Pillow")]
    gains = []
    for name in names:
        pixels = read_image(tmp_path / "out" / name).pixels
        assert pixels.shape == (256, 256, 3)
        ours, theirs = (_round_trip(pixels, 1, e)[:, :, :3] for e in (encoder, pillow))
        gains.append(_psnr(ours, pixels) - _psnr(theirs, pixels))
    assert np.mean(gains) >= 2.0, gains


@pytest.mark.parametrize(
    ("block", "before"),
    [(1, "Pillow"), (5, "etcpak"), (7, "etcpak perceptual p64")],
)
def test_normal_maps_lose_less_angle_than_with_the_encoders_before(block: int, before: str) -> None:
    """Before: Pillow's BC1, etcpak's BC5, etcpak's BC7 with its default (perceptual) weights."""
    encoder = _preferred_installed(block, bcn.DEFAULT_QUALITY, colour=False)
    normal = _texture("grass01_n.png")
    pixels = normal[:, :, :2].copy() if block == 5 else normal
    old = blockencoders.registry()[(block, before)]
    ours, theirs = (_angle(_round_trip(pixels, block, e), pixels) for e in (encoder, old))
    assert ours < theirs * 0.9, (ours, theirs)


def test_without_the_extra_each_format_falls_back_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blockencoders, "installed", lambda module: module in ("PIL", "etcpak"))
    pixels = _texture("redrock01.png", ODD)
    for block in (1, 2, 3, 4, 5, 7):
        preferred = bcn.choices(block, "balanced", colour=False)[0]
        encoder, notes = bcn.choose(block, "balanced", colour=False, label=f"BC{block}_UNORM")
        assert encoder.module in ("PIL", "etcpak")
        if preferred.module in ("PIL", "etcpak"):
            assert notes == []
        else:
            assert notes == [
                f"BC{block}_UNORM encoded with {encoder.name}, not {preferred.name}: "
                f"{preferred.package} is not installed (pip install {preferred.package})"
            ]
        decoded = bcn.decode(bcn.encode(pixels, block, encoder=encoder), block, *ODD)
        channels = {4: 1, 5: 2}.get(block, 3)
        assert _psnr(decoded[:, :, :channels], pixels[:, :, :channels]) > 30


def test_unknown_quality_is_refused() -> None:
    with pytest.raises(ValueError, match="DDS quality must be one of"):
        bcn.choose(1, "ultra")
