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
    """Drill 3 at CI size: 0 aborts, exit 1, each bad file failed once with its reason."""
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
    """Cube maps, volumes, arrays and HDR would come back as one 8-bit face: refuse them."""
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
