"""The review page's pictures in bounded memory: a large output costs about its decoded size,
and a memory budget it cannot fit in leaves it out with a reason instead of exhausting RAM."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upscaler.review.pictures import make_pictures

ROOT = Path(__file__).resolve().parents[1]


def _big_rgba_png(path: Path, side: int) -> int:
    """A ``side`` x ``side`` RGBA PNG of varied texels; returns its decoded size in bytes."""
    import imagecodecs

    tile = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)
    pixels = np.tile(tile, (side // 256, side // 256, 1))
    path.write_bytes(imagecodecs.png_encode(pixels, level=1))
    return pixels.nbytes


_MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from upscaler.review.pictures import make_pictures

    def status(field):  # KiB; VmHWM is this process's peak (getrusage's survives exec)
        return int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])

    target, folder = sys.argv[1], Path(sys.argv[2])
    base = status("VmRSS")  # resident now: imports may have peaked higher for a moment
    p = make_pictures(target, target, folder, "big", alpha_mode="blended", wrap=(True, True))
    peak = status("VmHWM")
    print(json.dumps({"extra_kib": peak - base, "base_kib": base, "peak_kib": peak,
                      "files": sorted(p.files), "problems": p.problems}))
    """
)


def _peak_extra(target: Path, folder: Path) -> dict:
    """Pictures of ``target`` (as input and output) in a fresh process: the peak RSS above
    what the process held before (KiB), and what was made."""
    folder.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(target), str(folder)],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("side", [4096, pytest.param(16384, marks=pytest.mark.slow)])
def test_pictures_of_a_large_output_cost_about_its_decoded_size(tmp_path: Path, side: int) -> None:
    """Before: the whole texture was copied several times over (8-bit split, Pillow images,
    ``tobytes``, the input held beside the output): 5.7x the decoded size above the starting
    RSS at 4096 px, 3.1 GB for a 16384 px output alone. Now the decoded array and Pillow's
    decode buffer (2x) plus small bands: 2.3x, 2.1 GB."""
    decoded = _big_rgba_png(tmp_path / "big.png", side)
    figures = _peak_extra(tmp_path / "big.png", tmp_path / "pictures")
    assert figures["problems"] == []
    assert {"view-in", "view-out", "crop-in", "crop-out", "junction", "tiled"} <= set(
        figures["files"]
    )
    assert figures["extra_kib"] * 1024 < 3.0 * decoded, figures


def test_a_budget_too_small_for_a_texture_leaves_it_out_with_a_reason(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((300, 500, 4), np.uint8)).save(tmp_path / "wide.png")
    (tmp_path / "p").mkdir()
    pictures = make_pictures(
        str(tmp_path / "wide.png"), str(tmp_path / "wide.png"), tmp_path / "p", "w", memory=2**20
    )
    assert pictures.files == {}
    assert pictures.problems == [
        "input not shown: decoding its 500x300 texels needs about 1.1 MiB, over the 1.0 MiB "
        "memory budget",
        "output not shown: decoding its 500x300 texels needs about 1.1 MiB, over the 1.0 MiB "
        "memory budget",
    ]
    enough = make_pictures(
        str(tmp_path / "wide.png"), str(tmp_path / "wide.png"), tmp_path / "p", "w", memory=2**22
    )
    assert enough.problems == [] and "view-out" in enough.files


def test_max_memory_reaches_the_review_pages_pictures(tmp_path: Path) -> None:
    """``upscale --review --max-memory`` bounds the pictures too: at 1M (half a MiB per picture
    worker) the 512 px output of a bundled sample is listed as not shown, with the reason."""
    from click.testing import CliRunner

    from upscaler.cli import main

    sample = Path(__file__).resolve().parents[1] / "samples" / "textures" / "redrock01.png"
    page = tmp_path / "page.html"
    args = [str(sample), "-o", str(tmp_path / "out"), "--review", str(page), "--max-memory", "1M"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "decoding its 512x512 texels needs about 2.0 MiB, over the 0.5 MiB" in page.read_text()
