"""Hostile image files: a malformed corpus through the real command; each bad file fails alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, make_pixels

from benchmarks.faults import dds_bytes, drill_corpus
from benchmarks.faults.corpus import png_bomb
from upscaler.formats.image import ImageReadError, read_image


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_malformed_corpus_never_aborts_the_batch(tmp_path: Path, tiny_x2: Path) -> None:
    """At test size: 0 aborts, exit 1, each bad file failed once with its reason."""
    figures = drill_corpus.run(tmp_path, tiny_x2, count=120, seed=7)
    assert figures["problems"] == []
    assert figures["batch_aborts"] == 0 and figures["exit_code"] == 1
    assert figures["bad"] > 40 and figures["bad_once"] == figures["bad"]
    assert figures["valid"] > 20 and figures["valid_done"] == figures["valid"]
    assert figures["duplicate_failure_reports"] == 0 and figures["outputs_for_bad"] == 0
    assert figures["inputs_modified"] == 0 and figures["temp_files_left"] == 0
    assert figures["max_decode_seconds"] < 5
    assert figures["kinds"].keys() >= {"truncated", "bomb", "foreign", "dds-unsupported"}


@pytest.mark.parametrize("index", range(len(dds_bytes.VARIANTS)))
def test_dds_that_would_lose_data_is_refused(tmp_path: Path, index: int) -> None:
    """Partial cube maps, volumes and HDR (cube maps and arrays too) would lose data: refuse
    them."""
    name, data = dds_bytes.unsupported(index, None, make_pixels(12, 20, 4))
    path = tmp_path / f"{name}.dds"
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="unsupported|Unimplemented") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_damaged_16_bit_png_fails_as_a_bad_file(tmp_path: Path) -> None:
    import imagecodecs

    data = bytearray(imagecodecs.png_encode(make_pixels(40, 30, 3, bits=16)))
    for at in range(60, len(data) - 20, 7):  # corrupt the compressed stream, not the header
        data[at] ^= 0x5A
    path = tmp_path / "height16.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="corrupt|truncated"):
        read_image(path)


def test_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    assert path.stat().st_size < 1000
    with pytest.raises(ImageReadError, match="pixel"):
        read_image(path)


def test_bundled_textures_exist_for_runs_without_shared_data() -> None:
    files = sorted((DATA / "textures").glob("*.png"))
    assert len(files) >= 3
    assert any(read_image(f).channels == 4 for f in files)
    assert all(np.ptp(read_image(f).pixels) > 0 for f in files)


def test_an_output_over_the_readers_limit_is_refused_before_upscaling(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """A 1x65535 PNG upscales to 2x131070: more per side than any reader here opens again. It
    fails with the reason (one line) before any model work, and the batch goes on."""
    import json

    from click.testing import CliRunner
    from PIL import Image

    from upscaler.cli import main

    (tmp_path / "in").mkdir()
    Image.fromarray(make_pixels(65535, 1)).save(tmp_path / "in" / "thread.png")
    Image.fromarray(make_pixels(6, 8)).save(tmp_path / "in" / "ok.png")
    report = tmp_path / "r.json"
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tiny_x2), "-q"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert "fail  " in dry.output and "2x131070 output would exceed" in dry.output
    result = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert result.exit_code == 1, result.output
    files = {Path(f["source"]).name: f for f in json.loads(report.read_text())["files"]}
    assert files["ok.png"]["status"] == "done" and files["thread.png"]["status"] == "failed"
    reason = files["thread.png"]["reason"]
    assert "2x131070 output would exceed what image readers accept" in reason
    assert "\n" not in reason and not (tmp_path / "out" / "thread.png").exists()


@pytest.mark.parametrize(("map_type", "length"), [(0, 0), (1, 0)])
def test_a_tga_that_says_it_has_a_palette_but_has_none_is_refused(
    tmp_path: Path, map_type: int, length: int
) -> None:
    """Image type 1 (colour-mapped) with no colour map, or one of length 0: Pillow decoded
    every index as black."""
    import struct

    from upscaler.formats.image import probe

    header = struct.pack("<BBBHHBHHHHBB", 0, map_type, 1, 0, length, 24, 0, 0, 4, 3, 8, 0x20)
    path = tmp_path / "nopal.tga"
    path.write_bytes(header + bytes(range(12)))
    for read in (read_image, probe):
        with pytest.raises(ImageReadError, match="colour-mapped TGA .* without a colour map"):
            read(path)


def test_animated_png_and_webp_say_only_the_first_frame_was_upscaled(
    tmp_path: Path, tiny_x2: Path
) -> None:
    import json

    from click.testing import CliRunner
    from PIL import Image

    from upscaler.cli import main

    (tmp_path / "in").mkdir()
    frames = [Image.fromarray(make_pixels(6, 8, seed=i)) for i in range(3)]
    for name, extra in (("a.png", {}), ("a.webp", {"lossless": True}), ("still.png", None)):
        more = {"save_all": True, "append_images": frames[1:], **extra} if extra is not None else {}
        frames[0].save(tmp_path / "in" / name, **more)
    report = tmp_path / "r.json"
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tiny_x2), "-q"]
    result = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    notes = {Path(f["source"]).name: f["notes"] for f in json.loads(report.read_text())["files"]}
    said = "animated (3 frames): only the first frame was upscaled"
    assert said in notes["a.png"] and said in notes["a.webp"]
    assert not any("animated" in n for n in notes["still.png"])
