"""Before/after pictures for the README's "Texture maps" section, from the validation textures.

    PYTHONPATH=. python benchmarks/figures.py --model texture-x4 [--data DIR] [--out samples]

Writes into ``samples/`` (Red Eclipse textures, CC-BY-SA: see samples/LICENSE.md):

* ``maps_normal.png``: a normal map reduced x(scale), then upscaled back: the input (nearest),
  the model treating it as colour (other tools), ours, and the original; each shown as stored
  (top) and lit from the upper left (bottom), where vectors that are not unit length show.
* ``maps_cutout.png``: a cutout (alpha-tested) texture over a checkerboard: input (nearest),
  the model with alpha as a plain channel (no bleeding, no re-threshold), ours.
* ``maps_seamless.png``: a tileable texture upscaled, then tiled 2x2 around the joint: without
  wrap padding, and ours.
* ``before_after.png``: crops of the bundled samples (real 128 px game textures): the input
  (nearest), bicubic, then ``--compare`` models (default: texture-x4-fidelity) and ``--model``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks import require_data
from upscaler import load_model
from upscaler.engine.pipeline import Upscaler
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture import maps, normals
from upscaler.texture.levels import to_levels, to_tensor
from upscaler.texture.maps import MapInfo
from upscaler.texture.resample import resize

ROOT = Path(__file__).resolve().parents[1]
LABEL_HEIGHT = 18


def _run(upscaler: Upscaler, image: ImageFile, name: str, **options: object) -> np.ndarray:
    opts = TextureOptions(**options)  # type: ignore[arg-type]
    info = plan_texture(image, name, opts)
    return upscale_images(upscaler, [image], opts, infos=[info])[0].pixels


def _reduce(pixels: np.ndarray, info: MapInfo, size: tuple[int, int]) -> np.ndarray:
    x = resize(maps.to_filter_space(to_tensor(pixels, 8), info), size, "box", wrap=info.wrap)
    return to_levels(maps.quantize_filtered(x, info, 8))


def _nearest(pixels: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def _lit(pixels: np.ndarray) -> np.ndarray:
    """N.L shading with a light from the upper left, as an RGB image (length errors show)."""
    v = pixels[:, :, :3].astype(np.float32) / 255 * 2 - 1
    light = np.array([-0.5, 0.5, 0.707], np.float32)
    shade = np.clip(v @ (light / np.linalg.norm(light)), 0, 1)
    return np.repeat((shade * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _over_checker(pixels: np.ndarray, cell: int = 8) -> np.ndarray:
    h, w = pixels.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    board = np.where(((y // cell) + (x // cell)) % 2 == 0, 200, 255).astype(np.float32)[:, :, None]
    a = pixels[:, :, 3:4].astype(np.float32) / 255
    return (pixels[:, :, :3] * a + board * (1 - a)).round().astype(np.uint8)


def _sheet(rows: list[list[tuple[str, np.ndarray]]]) -> Image.Image:
    """A grid of labelled panels (all of one size)."""
    ph, pw = rows[0][0][1].shape[:2]
    gap = 4
    sheet = Image.new(
        "RGB",
        (len(rows[0]) * (pw + gap) - gap, len(rows) * (ph + LABEL_HEIGHT + gap) - gap),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (label, panel) in enumerate(row):
            x0, y0 = c * (pw + gap), r * (ph + LABEL_HEIGHT + gap)
            draw.text((x0 + 2, y0 + 3), label, fill=(0, 0, 0))
            sheet.paste(Image.fromarray(panel), (x0, y0 + LABEL_HEIGHT))
    return sheet


def figure_normal(upscaler: Upscaler, path: Path, crop: int) -> Image.Image:
    s = upscaler.scale
    full = read_image(path).pixels[:, :, :3]
    small = _reduce(full, MapInfo("normal"), (full.shape[0] // s, full.shape[1] // s))
    image = ImageFile(np.ascontiguousarray(small), "PNG")
    ours = _run(upscaler, image, path.name)
    plain = _run(upscaler, image, "x.png", map="color")
    n = crop * s
    panels = [
        ("input (nearest)", _nearest(small, s)[:n, :n]),
        ("model as colour", plain[:n, :n]),
        ("ours", ours[:n, :n]),
        ("original", full[:n, :n]),
    ]
    errors = {label: normals.length_error(p) for label, p in panels}
    labelled = [(f"{label} |len-1| {errors[label]:.3f}", p) for label, p in panels]
    return _sheet([labelled, [(label, _lit(p)) for label, p in panels]])


def figure_cutout(upscaler: Upscaler, path: Path, box: tuple[int, int, int]) -> Image.Image:
    s = upscaler.scale
    y, x, size = box
    crop = np.ascontiguousarray(read_image(path).pixels[y : y + size, x : x + size])
    image = ImageFile(crop, "PNG")
    ours = _run(upscaler, image, path.name)
    plain = _run(upscaler, image, path.name, alpha="data")
    return _sheet(
        [
            [
                ("input (nearest)", _over_checker(_nearest(crop, s))),
                ("alpha as a plain channel", _over_checker(plain)),
                ("ours (bled, re-thresholded)", _over_checker(ours)),
            ]
        ]
    )


def figure_seamless(upscaler: Upscaler, path: Path, size: int) -> Image.Image:
    s = upscaler.scale
    full = read_image(path).pixels[:, :, :3]
    small = _reduce(full, MapInfo("color", wrap=(True, True)), (size, size))
    image = ImageFile(np.ascontiguousarray(small), "PNG")
    panels = []
    for label, mode in (("no wrap padding, tiled 2x2", "off"), ("ours, tiled 2x2", "auto")):
        tiled = np.tile(_run(upscaler, image, path.name, seamless=mode), (2, 2, 1))
        half = size * s // 2  # the joint of the four copies in the middle
        panels.append((label, tiled[half : half + size * s, half : half + size * s]))
    return _sheet(
        [
            [
                (
                    "input, tiled 2x2",
                    np.tile(_nearest(small, s), (2, 2, 1))[: size * s, : size * s],
                ),
                *panels,
            ]
        ]
    )


def figure_before_after(
    upscalers: list[Upscaler], paths: list[Path], box: tuple[int, int, int]
) -> Image.Image:
    """One row per sample: crop ``(top, left, size)`` of the input, upscaled by each model."""
    top, left, size = box
    rows, s = [], upscalers[0].scale
    for path in paths:
        image = read_image(path)
        crop = image.pixels[top : top + size, left : left + size, :3]
        bicubic = Image.fromarray(crop).resize((size * s, size * s), Image.Resampling.BICUBIC)
        row = [(f"{path.stem}: input", _nearest(crop, s)), ("bicubic", np.asarray(bicubic))]
        for upscaler in upscalers:
            out = _run(upscaler, image, path.name)
            panel = out[top * s : (top + size) * s, left * s : (left + size) * s, :3]
            row.append((upscaler.info.name, panel))
        rows.append(row)
    return _sheet(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="shipped model name or model file")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/textures/val")
    parser.add_argument("--out", type=Path, default=ROOT / "samples")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--compare", default="texture-x4-fidelity", help="comma-separated models shown before"
    )
    args = parser.parse_args()
    require_data("figures.py", args.data)
    upscaler = load_model(args.model, device=args.device)
    others = [load_model(m, device=args.device) for m in args.compare.split(",") if m]
    figures = {
        "maps_normal.png": figure_normal(upscaler, args.data / "normal/red_jojo_grass01_n.png", 48),
        "maps_cutout.png": figure_cutout(
            upscaler, args.data / "alpha/red_jojo_grate01_skin.png", (150, 130, 64)
        ),
        "maps_seamless.png": figure_seamless(
            upscaler, args.data / "color/red_jojo_redrock01.png", 64
        ),
        "before_after.png": figure_before_after(
            [*others, upscaler],
            [
                ROOT / "samples" / "textures" / f"{name}.png"
                for name in ("redrock01", "wood_planks1", "duct")
            ],
            (40, 40, 48),
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, sheet in figures.items():
        sheet.save(args.out / name, optimize=True)
        print(f"wrote {args.out / name} ({sheet.width}x{sheet.height}) with {upscaler.info.name}")


if __name__ == "__main__":
    main()
