"""Texture-map correctness on the validation textures: seams, normals, alpha coverage.

    PYTHONPATH=. python benchmarks/maps.py --model texture-x4 [--data ../shared/data/textures/val]

* **Seams**: every colour texture that tiles (detected on both axes, as ``--seamless auto``
  does) is upscaled with wrap padding (our default) and without (what most tools do); the seam
  error of the output (``upscaler.texture.seamless.seam_error``: jump across the wrap boundary
  over the
  mean jump between neighbouring source texels, ~1 when a 2x2 tiling shows no seam) is compared
  with the input's.
  ``seam_error`` only sees the jump across the boundary: padding that darkens both edges alike
  escapes it. So the border band (the model's receptive field, scaled) of the unwrapped output is
  also compared with the wrapped one, which equals the middle of an upscaled 3x3 tiling exactly
  (tests check that): mean absolute difference in 8-bit levels.
* **Normals**: every normal map is reduced by the model's scale (vectors averaged and
  renormalised), upscaled back, and compared with the original: mean angle (degrees). Baselines:
  bicubic on the vectors (renormalised), and the model treating the map as colour. Length: a
  crop of each map as shipped is upscaled; mean ``| |n| - 1 |`` of output against input.
* **Alpha**: every cutout texture (classified as the command does) is upscaled, and also resampled
  to native size and to half size; the change in alpha-test coverage (percentage points) is
  reported with our re-threshold and without it (alpha left as blended).

Prints a table and writes everything as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import require_data
from upscaler import load_model
from upscaler.engine.pipeline import Upscaler
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, plan_texture, upscale_images
from upscaler.texture import alpha, maps, normals
from upscaler.texture.levels import to_levels, to_tensor
from upscaler.texture.maps import MapInfo
from upscaler.texture.resample import resize
from upscaler.texture.seamless import detect_wrap, seam_error

ROOT = Path(__file__).resolve().parents[1]
LENGTH_CROP = 128


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return to_tensor(pixels, 8)


def _pixels(x: torch.Tensor, info: MapInfo) -> np.ndarray:
    return to_levels(maps.quantize_filtered(x, info, 8))


def _shrink(image: ImageFile, info: MapInfo, size: tuple[int, int]) -> ImageFile:
    """Resample in the map's filter space (the library's one implementation)."""
    if image.size == size:
        return image
    x = maps.to_filter_space(_tensor(image.pixels), info)
    x = resize(x, size, "lanczos3" if info.kind != "normal" else "box", wrap=info.wrap)
    return ImageFile(_pixels(x, info), image.format)


def _cap(size: tuple[int, int], max_side: int, multiple: int = 1) -> tuple[int, int]:
    h, w = size
    f = max(1.0, max(h, w) / max_side) if max_side else 1.0
    return max(multiple, round(h / f) // multiple * multiple), max(
        multiple, round(w / f) // multiple * multiple
    )


def _run(upscaler: Upscaler, image: ImageFile, name: str, **options: object) -> ImageFile:
    opts = TextureOptions(**options)  # type: ignore[arg-type]
    info = plan_texture(image, name, opts)
    return upscale_images(upscaler, [image], opts, infos=[info])[0]


def bench_seams(upscaler: Upscaler, files: list[Path], max_side: int) -> dict[str, object]:
    s = upscaler.scale
    rows = []
    for path in files:
        image = read_image(path)
        if image.channels not in (3, 4) or detect_wrap(_tensor(image.pixels[:, :, :3])) != (
            True,
            True,
        ):
            continue
        image = _shrink(image, MapInfo("color", wrap=(True, True)), _cap(image.size, max_side))
        before = max(seam_error(_tensor(image.pixels[:, :, :3])))
        after, outputs = {}, {}
        for mode in ("auto", "off"):
            outputs[mode] = _run(upscaler, image, path.name, seamless=mode).pixels[:, :, :3]
            after[mode] = max(seam_error(_tensor(outputs[mode]), step=s))
        band = _border(outputs["auto"].shape[:2], upscaler.info.receptive_field * s)
        diff = np.abs(outputs["off"].astype(np.float32) - outputs["auto"].astype(np.float32))
        rows.append(
            {
                "file": path.name,
                "before": before,
                "wrap": after["auto"],
                "no_wrap": after["off"],
                "no_wrap_border_levels": float(diff[band].mean()),
            }
        )
    return {
        "files": rows,
        "count": len(rows),
        "mean_before": _mean(r["before"] for r in rows),
        "mean_wrap": _mean(r["wrap"] for r in rows),
        "mean_no_wrap": _mean(r["no_wrap"] for r in rows),
        "wrap_not_worse": sum(r["wrap"] <= max(r["before"], 1.0) * 1.05 for r in rows),
        "mean_no_wrap_border_levels": _mean(r["no_wrap_border_levels"] for r in rows),
    }


def _border(size: tuple[int, int], width: int) -> np.ndarray:
    """Mask of the texels within ``width`` of an edge."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    return mask


def bench_normals(upscaler: Upscaler, files: list[Path], max_side: int) -> dict[str, object]:
    """Angles: reduced by the scale and upscaled back, against the original. Lengths: the
    original texels as shipped (a crop of ``LENGTH_CROP``), upscaled, against their own."""
    s = upscaler.scale
    rows = []
    for path in files:
        image = read_image(path)
        if image.channels < 3:
            continue
        image = ImageFile(np.ascontiguousarray(image.pixels[:, :, :3]), "PNG")
        info = MapInfo("normal")
        gt = _shrink(image, info, _cap(image.size, max_side, s))
        h, w = gt.size
        lq = _shrink(gt, info, (h // s, w // s))
        truth = normals.decode(_tensor(gt.pixels))
        ours = _run(upscaler, lq, "x_n.png", seamless="off")
        plain = _run(upscaler, lq, "x.png", map="color", seamless="off")
        cubic = maps.to_filter_space(_tensor(lq.pixels), info)
        cubic = _pixels(torch.nn.functional.interpolate(cubic, size=(h, w), mode="bicubic"), info)
        row: dict[str, object] = {"file": path.name}
        for key, out in (("ours", ours.pixels), ("as_colour", plain.pixels), ("bicubic", cubic)):
            row[f"{key}_angle"] = normals.angular_error(normals.decode(_tensor(out)), truth)
        crop = ImageFile(np.ascontiguousarray(image.pixels[:LENGTH_CROP, :LENGTH_CROP]), "PNG")
        row["input_length_error"] = normals.length_error(crop.pixels)
        row["ours_length_error"] = normals.length_error(_run(upscaler, crop, "x_n.png").pixels)
        plain_crop = _run(upscaler, crop, "x.png", map="color").pixels
        row["as_colour_length_error"] = normals.length_error(plain_crop)
        rows.append(row)
    summary: dict[str, object] = {"files": rows, "count": len(rows)}
    for key in rows[0] if rows else ():
        if key != "file":
            summary[f"mean_{key}"] = _mean(r[key] for r in rows)
    summary["length_not_worse"] = sum(
        r["ours_length_error"] <= r["input_length_error"]  # type: ignore[operator]
        for r in rows
    )
    return summary


def bench_alpha(upscaler: Upscaler, files: list[Path], max_side: int) -> dict[str, object]:
    rows = []
    for path in files:
        image = read_image(path)
        if image.channels != 4 or plan_texture(image, path.name).alpha != "cutout":
            continue
        if max(image.size) > max_side > 0:  # crop, so the cutout stays a cutout
            image = ImageFile(np.ascontiguousarray(image.pixels[:max_side, :max_side]), "PNG")
        before = alpha.coverage(image.pixels[:, :, 3], 8)
        row: dict[str, object] = {"file": path.name, "coverage": before}
        for label, extra in (
            ("upscaled", {}),
            ("native", {"native": True}),
            ("half", {"output_scale": 0.5}),
        ):
            for mode in ("auto", "blended"):
                out = _run(upscaler, image, path.name, alpha=mode, **extra)
                change = 100 * (alpha.coverage(out.pixels[:, :, 3], 8) - before)
                row[f"{label}_{'ours' if mode == 'auto' else 'plain'}_pp"] = change
        rows.append(row)
    summary: dict[str, object] = {"files": rows, "count": len(rows)}
    for key in rows[0] if rows else ():
        if key.endswith("_pp"):
            summary[f"max_abs_{key}"] = max(abs(float(r[key])) for r in rows)  # type: ignore[arg-type]
    return summary


def _mean(values: object) -> float:
    values = list(values)  # type: ignore[call-overload]
    return float(statistics.fmean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="shipped model name or model file")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/textures/val")
    parser.add_argument("--max-side", type=int, default=512, help="reduce larger textures (0: no)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many files per kind")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=Path("maps-benchmark.json"))
    args = parser.parse_args()
    require_data("maps.py", args.data)
    upscaler = load_model(args.model, device=args.device)

    def files(kind: str) -> list[Path]:
        found = sorted((args.data / kind).glob("*.png"))
        return found[: args.limit] if args.limit else found

    start = time.perf_counter()
    results = {
        "model": upscaler.info.name,
        "scale": upscaler.scale,
        "device": str(upscaler.device),
        "data": str(args.data),
        "max_side": args.max_side,
        "seams": bench_seams(upscaler, files("color"), args.max_side),
        "normals": bench_normals(upscaler, files("normal"), args.max_side),
        "alpha": bench_alpha(upscaler, files("alpha"), args.max_side),
    }
    results["seconds"] = round(time.perf_counter() - start, 1)
    args.json.write_text(json.dumps(results, indent=2))
    _print(results)


def _print(r: dict[str, object]) -> None:
    seams, norm, alp = r["seams"], r["normals"], r["alpha"]
    assert isinstance(seams, dict) and isinstance(norm, dict) and isinstance(alp, dict)
    print(f"model {r['model']} (x{r['scale']}, {r['device']}), {r['data']}, {r['seconds']} s")
    print(f"\nseam error on {seams['count']} tileable colour textures (~1: no seam)")
    print(f"  {'input':<28}{seams['mean_before']:8.3f}")
    print(f"  {'upscaled, wrap (default)':<28}{seams['mean_wrap']:8.3f}")
    print(f"  {'upscaled, no wrap':<28}{seams['mean_no_wrap']:8.3f}")
    print(f"  not worse than input: {seams['wrap_not_worse']}/{seams['count']}")
    print(
        f"  no wrap: border band off the seamless result by "
        f"{seams['mean_no_wrap_border_levels']:.2f} levels (8-bit) on average"
    )
    print(f"\nnormal maps: {norm['count']}, angle after reducing x{r['scale']} and upscaling back;")
    print(f"  |len-1| of {LENGTH_CROP}px crops of the shipped maps, upscaled")
    print(f"  {'':<28}{'angle (deg)':>12}{'|len-1|':>10}")
    print(f"  {'input':<28}{'':>12}{norm.get('mean_input_length_error', 0):10.4f}")
    for key, label in (("ours", "ours"), ("as_colour", "model as colour"), ("bicubic", "bicubic")):
        angle = norm.get(f"mean_{key}_angle", float("nan"))
        length = norm.get(f"mean_{key}_length_error")
        print(f"  {label:<28}{angle:12.2f}" + (f"{length:10.4f}" if length is not None else ""))
    print(f"  length error not worse than input: {norm['length_not_worse']}/{norm['count']}")
    print(f"\ncutout alpha: {alp['count']} textures, max |coverage change| (percentage points)")
    print(f"  {'':<28}{'ours':>8}{'plain':>8}")
    for label in ("upscaled", "native", "half"):
        ours = alp.get(f"max_abs_{label}_ours_pp", float("nan"))
        plain = alp.get(f"max_abs_{label}_plain_pp", float("nan"))
        print(f"  {label:<28}{ours:8.3f}{plain:8.3f}")


if __name__ == "__main__":
    main()
