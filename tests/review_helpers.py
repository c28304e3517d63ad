"""A mixed batch for the review page: the bundled samples, failures and odd names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).parents[1] / "samples" / "textures"
ODD_NAME = "odd <b>&amp; name.png"  # must show as text, never as markup
FAILING = {"sub/broken.png", "sub/not_an_image_n.png"}


def make_batch(root: Path) -> set[str]:
    """Fill ``root`` with the samples, a truncated PNG, a non-image, a texture named as a normal
    map that is not one (a note) and an odd name. Returns every relative name."""
    root.mkdir(parents=True)
    for path in SAMPLES.iterdir():
        shutil.copy(path, root / path.name)
    (root / "sub").mkdir()
    data = (SAMPLES / "redrock01.png").read_bytes()
    (root / "sub" / "broken.png").write_bytes(data[: len(data) // 3])  # truncated mid-stream
    (root / "sub" / "not_an_image_n.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    shutil.copy(SAMPLES / "wood_planks1.png", root / "sub" / "planks_n.png")  # not a normal map
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (17, 11, 3), dtype=np.uint8)).save(root / ODD_NAME)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def page_data(page: Path) -> dict:
    """The JSON the page carries."""
    text = page.read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="review-data">(.*?)</script>', text, re.S
    )
    assert found, "no data in the page"
    return json.loads(found.group(1))
