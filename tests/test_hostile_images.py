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
