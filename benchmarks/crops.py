"""100% crops of models side by side: the truth, bicubic and each model, from the truth shrunk.

    python benchmarks/crops.py --out samples/x4_crops.png \\
        --models "texture-x4=texture-x4,texture-x4-sharp=texture-x4-sharp,\\
SPAN x4 (official)=../shared/peers/spanx4_ch48.safetensors"

Each row is one texture: its centre ``--crop`` pixels (the truth), then the same window of
bicubic and of each model's output, where the input is the whole texture shrunk by the model's
scale (bicubic, as ``tests/test_shipped_models.py`` does). Models run as ``upscale`` runs them
(seamless detection, tiling, the precision ``auto`` picks). Pixels are shown ``--zoom`` times,
nearest neighbour, so one output pixel is a ``zoom``-pixel square: a one-pixel pattern shows.
The textures default to the bundled samples, so the figure needs nothing beside the repository.
``--bc1``: the shrunk input goes through a BC1 round trip first (the product's own encoder), as
a texture that was stored as DXT1 holds it; bicubic is then the upscale of that input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from upscaler.engine.load import load_model  # noqa: E402
from upscaler.engine.pipeline import Upscaler  # noqa: E402
from upscaler.formats import bcn  # noqa: E402
from upscaler.formats.image import ImageFile  # noqa: E402
from upscaler.process import TextureOptions, upscale_images  # noqa: E402

SAMPLES = ROOT / "samples" / "textures"
LABEL_HEIGHT = 16
GAP = 4


def load(name: str) -> Upscaler:
    """Model ``name`` (shipped, known or a file) on the CPU at the precision ``auto`` picks, with
    a shipped model's weights for block-compressed inputs, as ``upscale`` loads it."""
    return load_model(name, device="cpu", dtype="auto")


def upscaled(model: Upscaler, lq: np.ndarray) -> np.ndarray:
    """``lq`` (H, W, 3) uint8 through ``model`` as ``upscale`` runs it."""
    out = upscale_images(model, [ImageFile(lq, "PNG")], TextureOptions())[0]
    return out.pixels[:, :, :3]


def centre(pixels: np.ndarray, crop: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return pixels[top : top + crop, left : left + crop]


def sheet(rows: list[list[tuple[str, np.ndarray]]], zoom: int) -> Image.Image:
    """Rows of labelled tiles, each shown ``zoom`` times (nearest), labels above the first row."""
    side = rows[0][0][1].shape[0] * zoom
    cols = len(rows[0])
    width = cols * side + (cols - 1) * GAP
    height = LABEL_HEIGHT + len(rows) * side + (len(rows) - 1) * GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (label, _) in enumerate(rows[0]):
        draw.text((c * (side + GAP) + 2, 2), label, fill="black")
    for r, row in enumerate(rows):
        for c, (_, pixels) in enumerate(row):
            tile = Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (c * (side + GAP), LABEL_HEIGHT + r * (side + GAP)))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated label=name-or-file")
    parser.add_argument(
        "--textures", default="redrock01,wood_planks1,duct", help="bundled sample stems or files"
    )
    parser.add_argument("--crop", type=int, default=64, help="output pixels per side")
    parser.add_argument("--zoom", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bc1", action="store_true", help="BC1 round trip of the shrunk input")
    args = parser.parse_args()
    models = [item.split("=", 1) for item in args.models.split(",")]
    if any(len(pair) != 2 for pair in models):
        raise SystemExit("--models: write label=name-or-file, comma-separated")
    loaded = [(label, load(name)) for label, name in models]
    rows = []
    for texture in args.textures.split(","):
        path = Path(texture) if Path(texture).suffix else SAMPLES / f"{texture}.png"
        truth = np.asarray(Image.open(path).convert("RGB"))
        row: list[tuple[str, np.ndarray]] = [("truth", centre(truth, args.crop))]
        hr = Image.fromarray(truth)
        for label, model in loaded:
            s = model.scale
            lq = hr.resize((hr.width // s, hr.height // s), Image.Resampling.BICUBIC)
            if args.bc1:
                lq = Image.fromarray(bcn.round_trip(np.asarray(lq), 1))
            if len(row) == 1:
                bicubic = np.asarray(lq.resize(hr.size, Image.Resampling.BICUBIC))
                row.append(("bicubic", centre(bicubic, args.crop)))
            row.append((label, centre(upscaled(model, np.asarray(lq)), args.crop)))
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet(rows, args.zoom).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
