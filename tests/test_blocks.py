"""Block-compressed textures are told from the pixels, and the default x4 model hands them to its
own weights for them (``texture-x4-bc``): DDS files, and PNGs exported from them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from upscaler.cli import main
from upscaler.engine.load import load_model
from upscaler.formats import bcn, ddsheader
from upscaler.formats.ddsheader import dx10_format
from upscaler.formats.image import ImageFile, read_image, write_image
from upscaler.models.sources import SHIPPED, blocks_model
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture.blocks import block_share, looks_block_compressed

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "textures"
COLOUR = ("redrock01", "duct", "wood_planks1", "grate01_skin")
BC1 = dx10_format(71)  # DXGI_FORMAT_BC1_UNORM


def _sample(stem: str) -> np.ndarray:
    return np.ascontiguousarray(read_image(SAMPLES / f"{stem}.png").pixels[:, :, :3])


def _bc(pixels: np.ndarray, block: int) -> np.ndarray:
    return bcn.round_trip(pixels, block)


def _jpeg(pixels: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.mark.parametrize("stem", COLOUR)
def test_block_compressed_textures_are_told_from_clean_ones(stem: str) -> None:
    """Real textures: as they are, JPEG'd and quantised to 256 colours they are not taken for
    block-compressed; after a BC1 or BC3 round trip (the product's own encoders) they are."""
    pixels = _sample(stem)
    palette = np.asarray(Image.fromarray(pixels).quantize(256).convert("RGB"))
    for clean in (pixels, _jpeg(pixels), palette):
        assert not looks_block_compressed(clean), block_share(clean)
    for block in (1, 3):
        decoded = _bc(pixels, block)
        share, textured = block_share(decoded)
        assert share == 1.0 and textured >= 16 and looks_block_compressed(decoded)


def test_block_detection_reads_gray_and_skips_alpha_and_edges() -> None:
    gray = _sample("redrock01")[:, :, :1]
    assert not looks_block_compressed(gray)
    assert looks_block_compressed(_bc(np.repeat(gray, 3, axis=2), 1)[:, :, :1])
    decoded = _bc(_sample("duct"), 1)
    noisy_alpha = np.random.default_rng(0).integers(0, 256, decoded.shape[:2], dtype=np.uint8)
    assert looks_block_compressed(np.dstack([decoded, noisy_alpha]))  # alpha is not colour
    # A partial block at the right and bottom (an odd size) does not count against it.
    assert looks_block_compressed(np.pad(decoded, ((0, 3), (0, 2), (0, 0)), mode="reflect"))
    # Flat or tiny: too few textured blocks to say.
    assert block_share(np.zeros((64, 64, 3), np.uint8)) == (0.0, 0)
    assert not looks_block_compressed(decoded[:8, :8])


def test_a_huge_texture_is_read_in_sampled_block_rows() -> None:
    big = np.tile(_bc(_sample("wood_planks1"), 1), (32, 32, 1))  # 4096 x 4096
    share, textured = block_share(big)
    assert share == 1.0 and textured <= 1 << 16


def test_the_plan_marks_block_compressed_textures() -> None:
    pixels = _sample("redrock01")
    clean = plan_texture(ImageFile(pixels, "PNG"), "rock.png")
    bc = plan_texture(ImageFile(_bc(pixels, 1), "PNG"), "rock.png")
    assert not clean.block_compressed and bc.block_compressed
    wide = plan_texture(ImageFile(_bc(pixels, 1).astype(np.uint16) * 257, "PNG", bits=16), "r.png")
    assert not wide.block_compressed  # BC1-BC3 hold 8-bit colour


@pytest.mark.skipif(not SHIPPED["texture-x4-bc"].installed, reason="texture-x4-bc not installed")
def test_the_default_model_hands_block_compressed_textures_to_its_own_weights() -> None:
    """``texture-x4`` loads ``texture-x4-bc`` beside it and upscales block-compressed inputs with
    it, clean ones with its own weights; a model named by file gets no such companion."""
    assert blocks_model("texture-x4") == "texture-x4-bc" and blocks_model("texture-x4-bc") == ""
    model = load_model("texture-x4", device="cpu", dtype="fp32")
    companion = model.for_blocks
    assert companion is not None and companion.info.name == "texture-x4-bc"
    assert load_model(SHIPPED["texture-x4"].path, device="cpu").for_blocks is None
    pixels = _sample("duct")[:32, :32]
    for lq, engine in ((pixels, model), (_bc(pixels, 1), companion)):
        image = ImageFile(np.ascontiguousarray(lq), "PNG")
        routed = upscale_images(model, [image], TextureOptions())[0].pixels
        direct = upscale_images(engine, [image], TextureOptions())[0].pixels
        np.testing.assert_array_equal(routed, direct)
    bc = ImageFile(_bc(pixels, 1), "PNG")
    assert not np.array_equal(
        upscale_images(model, [bc], TextureOptions())[0].pixels,
        upscale_images(model, [ImageFile(pixels, "PNG")], TextureOptions())[0].pixels,
    )


@pytest.mark.skipif(not SHIPPED["texture-x4-bc"].installed, reason="texture-x4-bc not installed")
def test_a_bc1_dds_goes_through_the_block_weights(tmp_path: Path) -> None:
    """A real BC1 DDS beside a PNG, through the command: the dry run names both weights; the DDS
    comes out as ``--model texture-x4-bc`` makes it, the PNG as ``texture-x4``'s own file does."""
    src = tmp_path / "in"
    src.mkdir()
    pixels = _sample("wood_planks1")[:32, :32]
    head = ddsheader.pack_header(BC1, 32, 32, 1, 0)
    (src / "planks.dds").write_bytes(head + bcn.encode(pixels, 1))
    write_image(src / "rock.png", ImageFile(_sample("redrock01")[:32, :32], "PNG"))
    dry = CliRunner().invoke(main, [str(src), "-o", str(tmp_path / "dry"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "block-compressed textures: texture-x4-bc" in dry.output, dry.output
    outputs = {}
    for label, model in (
        ("default", "texture-x4"),
        ("bc", "texture-x4-bc"),
        ("file", str(SHIPPED["texture-x4"].path)),
    ):
        out = tmp_path / label
        args = [str(src), "-o", str(out), "--model", model, "--precision", "fp32", "-q"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        outputs[label] = {n: read_image(out / n).pixels for n in ("planks.dds", "rock.png")}
    assert outputs["default"]["planks.dds"].shape[:2] == (128, 128)
    np.testing.assert_array_equal(outputs["default"]["planks.dds"], outputs["bc"]["planks.dds"])
    np.testing.assert_array_equal(outputs["default"]["rock.png"], outputs["file"]["rock.png"])
    assert not np.array_equal(outputs["default"]["planks.dds"], outputs["file"]["planks.dds"])
