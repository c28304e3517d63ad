"""Model quality on held-out textures, next to bicubic, Lanczos and the pretrained peers.

    PYTHONPATH=. python benchmarks/quality.py                          # shipped x4 models + peers
    PYTHONPATH=. python benchmarks/quality.py --models my.safetensors --limit 8 --no-peers
    PYTHONPATH=. python benchmarks/quality.py --scale 2                # the x2 models
    PYTHONPATH=. python benchmarks/quality.py --val data/warzone/color --lowres data/warzone-lowres

For each colour texture of ``../shared/data/textures/val/color`` (centre crop of at most
``--max-side``, a multiple of 4): the ground truth GT, and low-res inputs *clean* (bicubic shrink
by the scale, the usual SR benchmark) and *bc1* (the clean input after a BC1 round trip, the usual
damage of game textures). Each method upscales them (models through the product's own path:
seamless detection, tiling, precision), and is scored per image:

- **PSNR-Y** (BT.601 luma, scale-pixel border cropped) and **GMSD** (gradient magnitude
  similarity deviation, Xue et al. 2014; lower is better);
- **detail**: high-frequency energy (luma minus its sigma-1 Gaussian blur, squared) over GT's;
  the median over images. 1.0 = as much fine detail as the truth; blur lowers it, invented
  grain, blocks and ringing raise it;
- **grid** (clean inputs): mean luma step across every ``scale``-th pixel boundary over the mean
  step elsewhere: the input's texel grid showing through (GT: about 1);
- **blocks** (bc1 inputs): the same at every ``4 * scale``-th boundary: BC1's 4x4 blocks carried
  into the output;
- **calm detail**: the detail ratio on the textures that are flat, soft or noisy (the quarter of
  the set with the least GT detail, and skies, water, sand, snow, grass, fire, clouds by name):
  above ~1.2 the method invents structure where there is none;
- **native** ("old game" test): N = BC1(point-sample GT down by the scale), reference R = GT
  shrunk with Lanczos-3 in linear light; PSNR-Y against R of N itself (before), of a Lanczos
  round trip, and of ``upscale --native``;
- **checker** (clean inputs): energy of the 2x2 checker filter ``[[1, -1], [-1, 1]]`` on each
  channel over GT's, the median over images: the one-pixel "screen door" a sub-pixel upsampler
  can lay over a texture (1.0 = as much as the truth; blur lowers it);
- **lattice** (clean inputs): energy of the fine luma pattern locked to the output's ``scale``
  lattice (``training.metrics.lattice_pattern``: each 32-pixel window's cells averaged phase by
  phase) over GT's, the median (and 90th percentile): the diagonal hatch or grid a model lays
  at the same phase of every input texel, which the 2x2 checker does not see;
- **gray**: the GT made gray (BT.601 luma) and stored as RGB, shrunk and upscaled: the largest
  difference between two channels of any output pixel, in 8-bit levels (invented colour);
- **pattern**: PSNR-Y and the mean level error (8-bit levels of luma, signed: darker is
  negative) on the textures whose names say they hold a fine regular pattern (wires, grates,
  mesh, chains, grilles, fences, ladders, windows, tiles);
- with ``--lowres FOLDER`` (real low-res game textures, no truth): the checker energy of each
  method's x``scale`` output over a bicubic upscale's, median and 90th percentile, and the
  lattice pattern's RMS in 8-bit levels (median; bicubic's is about 0).

The peers (``../shared/peers``; see its README): Real-ESRGAN's x4plus (BSD-3), the official SPAN
x4/x2 (Apache-2.0), 4xSPANkendata (CC-BY-SA-4.0) and ClearReality4x (non-commercial: a reference
only).

Results: a table per scale, JSON (``--out``) and Markdown (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import require_data  # noqa: E402
from training.codecs import bc_roundtrip  # noqa: E402
from training.degradations import point_sample, resize_down  # noqa: E402
from training.metrics import (  # noqa: E402
    checker_energy,
    gmsd,
    grid_ratio,
    high_frequency_energy,
    lattice_energy,
    psnr_y,
    rgb_to_y,
)
from upscaler.engine.load import load_model  # noqa: E402
from upscaler.formats.image import ImageFile, read_image  # noqa: E402
from upscaler.process import TextureOptions, upscale_images  # noqa: E402
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear  # noqa: E402
from upscaler.texture.levels import round_to_levels  # noqa: E402
from upscaler.texture.resample import resize  # noqa: E402

SHARED = ROOT.parent / "shared"
VAL = SHARED / "data" / "textures" / "val" / "color"
PEER_DIR = SHARED / "peers"
PEERS = {
    4: {
        "SPAN x4 (official)": PEER_DIR / "spanx4_ch48.safetensors",
        "4xSPANkendata": PEER_DIR / "4xSPANkendata.safetensors",
        "ClearReality4x (NC)": PEER_DIR / "ClearReality4x.safetensors",
        "Real-ESRGAN x4plus": PEER_DIR / "RealESRGAN_x4plus.safetensors",
    },
    2: {"SPAN x2 (official)": PEER_DIR / "spanx2_ch48.safetensors"},
}
CALM_WORDS = ("sky", "cloud", "water", "sand", "snow", "grass", "fire", "lava", "noise")
PATTERN_WORDS = ("wire", "grate", "grill", "mesh", "chain", "fence", "ladder", "window", "tile")
DEFAULT_MODELS = {4: "texture-x4,texture-x4-fidelity", 2: "texture-x2,texture-x2-fidelity"}

Method = Callable[[torch.Tensor, bool], torch.Tensor]


def load_val(folder: Path, limit: int, max_side: int) -> list[tuple[str, torch.Tensor]]:
    """Validation colour textures as ``(1, 3, H, W)`` floats, H and W multiples of 4."""
    images = []
    for path in sorted(folder.glob("*.png"))[:limit]:
        pixels = read_image(path).pixels[:, :, :3].astype(np.float32) / 255
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        h, w = (min(d, max_side) // 4 * 4 for d in x.shape[-2:])
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        images.append((path.name, x[..., top : top + h, left : left + w].contiguous()))
    return images


def shrink_linear(x: torch.Tensor, factor: int) -> torch.Tensor:
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    return linear_to_srgb(resize(srgb_to_linear(x), (h, w), "lanczos3"))


def model_method(name: str, precision: str) -> tuple[Method, int, str]:
    """Upscale like ``upscale`` does: seamless detection, tiling, ``--native`` filtering, and a
    shipped model's own weights for block-compressed inputs (the BC1 and native columns)."""
    up = load_model(name, device="cpu", dtype=precision)

    def run(lq: torch.Tensor, native: bool) -> torch.Tensor:
        pixels = (lq[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        image = ImageFile(pixels, "PNG")
        out = upscale_images(up, [image], TextureOptions(native=native))[0]
        return torch.from_numpy(out.pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]

    dtype = str(up.dtype).removeprefix("torch.")
    if up.for_blocks is not None:
        dtype += f", {str(up.for_blocks.dtype).removeprefix('torch.')} on BC"
    return run, up.scale, dtype


def kernel_method(kernel: str, scale: int) -> Method:
    def run(lq: torch.Tensor, native: bool) -> torch.Tensor:
        size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
        up = resize(lq, size, kernel).clamp(0, 1)
        return shrink_linear(up, scale).clamp(0, 1) if native else up

    return run


def is_calm(name: str, gt_energy: float, threshold: float) -> bool:
    return gt_energy <= threshold or any(word in name.lower() for word in CALM_WORDS)


def is_pattern(name: str) -> bool:
    stem = name.lower().removesuffix(".png")
    # "tile" as a word part: bathtile, windowstile; not the numbered tiles of a tile sheet
    return any(word in stem for word in PATTERN_WORDS) and "tile-" not in stem


def gray_rgb(x: torch.Tensor) -> torch.Tensor:
    """``(1, 3, H, W)`` as gray stored in RGB: BT.601 luma in all three channels."""
    y = (rgb_to_y(x) - 16 / 255) * (255 / 219)
    return round_to_levels(y.clamp(0, 1)).expand(-1, 3, -1, -1).contiguous()


def channel_spread(x: torch.Tensor) -> float:
    """The largest difference between two channels of any pixel, in 8-bit levels."""
    levels = (x.clamp(0, 1) * 255).round()
    return float((levels.amax(dim=1) - levels.amin(dim=1)).max())


def load_lowres(folder: Path, limit: int) -> list[tuple[str, torch.Tensor]]:
    """Real low-res textures as they are (no truth): ``(1, 3, H, W)`` floats."""
    images = []
    for path in sorted(folder.glob("*.png"))[:limit]:
        pixels = read_image(path).pixels
        if pixels.shape[2] < 3:
            pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
        x = torch.from_numpy(pixels[:, :, :3].astype(np.float32) / 255).permute(2, 0, 1)[None]
        images.append((path.name, x.contiguous()))
    return images


def lowres_patterns(
    method: Method, scale: int, images: list[tuple[str, torch.Tensor]]
) -> dict[str, float]:
    """Per real low-res texture: the checker energy of ``method``'s output over a bicubic
    upscale's, and its lattice pattern's RMS in 8-bit levels; medians (and the checker's p90)."""
    ratios, lattices = [], []
    for _, lq in images:
        size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
        reference = round_to_levels(resize(lq, size, "bicubic").clamp(0, 1))
        sr = round_to_levels(method(lq, False))
        ratios.append(float(checker_energy(sr)) / max(float(checker_energy(reference)), 1e-12))
        if min(size) >= 32:
            lattices.append(float(lattice_energy(sr, scale)) ** 0.5 * 255)
    return {
        "lowres_checker": float(np.median(ratios)),
        "lowres_checker_p90": float(np.quantile(ratios, 0.9)),
        "lowres_lattice": float(np.median(lattices)) if lattices else float("nan"),
    }


def evaluate(
    name: str, method: Method, scale: int, images: list[tuple[str, torch.Tensor]]
) -> dict[str, object]:
    rows: dict[str, list[float]] = {}
    started = time.perf_counter()
    energies = [float(high_frequency_energy(gt)) for _, gt in images]
    threshold = float(np.quantile(energies, 0.25))
    for (image_name, gt), energy in zip(images, energies, strict=True):
        clean = round_to_levels(resize_down(gt, scale, "bicubic"))
        bc1 = bc_roundtrip(clean[0], "bc1")[None]
        for kind, lq in (("clean", clean), ("bc1", bc1)):
            sr = round_to_levels(method(lq, False))
            rows.setdefault(f"{kind}_psnr", []).append(float(psnr_y(sr, gt, scale)))
            rows.setdefault(f"{kind}_gmsd", []).append(float(gmsd(sr, gt)))
            ratio = float(high_frequency_energy(sr)) / max(energy, 1e-12)
            rows.setdefault(f"{kind}_detail", []).append(ratio)
            period = scale if kind == "clean" else 4 * scale
            rows.setdefault(f"{kind}_grid", []).append(float(grid_ratio(sr, period)))
            if kind == "clean" and is_calm(image_name, energy, threshold):
                rows.setdefault("calm_detail", []).append(ratio)
            if kind == "clean":
                checker = float(checker_energy(sr)) / max(float(checker_energy(gt)), 1e-12)
                rows.setdefault("checker", []).append(checker)
            if kind == "clean" and min(gt.shape[-2:]) >= 32:
                lattice = float(lattice_energy(sr, scale))
                rows.setdefault("lattice", []).append(lattice / float(lattice_energy(gt, scale)))
            if kind == "clean" and is_pattern(image_name):
                rows.setdefault("pattern_psnr", []).append(float(psnr_y(sr, gt, scale)))
                shift = float((rgb_to_y(sr) - rgb_to_y(gt)).mean()) * 255
                rows.setdefault("pattern_level", []).append(shift)
        gray = gray_rgb(gt)
        gray_sr = method(round_to_levels(resize_down(gray, scale, "bicubic")), False)
        rows.setdefault("gray", []).append(channel_spread(gray_sr))
        old = round_to_levels(bc_roundtrip(point_sample(gt, scale)[0], "bc1")[None])
        reference = round_to_levels(shrink_linear(gt, scale))
        native = round_to_levels(method(old, True))
        rows.setdefault("native_before", []).append(float(psnr_y(old, reference)))
        rows.setdefault("native", []).append(float(psnr_y(native, reference)))
    results = {
        key: float(
            np.median(values) if key.endswith(("detail", "checker", "lattice")) else np.mean(values)
        )
        for key, values in rows.items()
    }
    results["calm_detail_max"] = float(np.max(rows["calm_detail"]))
    results["gray"] = float(np.max(rows["gray"]))
    results["checker_p90"] = float(np.quantile(rows["checker"], 0.9))
    results["lattice_p90"] = float(np.quantile(rows["lattice"], 0.9))
    return {
        "method": name,
        "scale": scale,
        "images": len(images),
        "calm_images": len(rows["calm_detail"]),
        "pattern_images": len(rows.get("pattern_psnr", [])),
        "seconds": time.perf_counter() - started,
        "results": results,
    }


COLUMNS = (
    ("clean_psnr", "PSNR-Y", ".2f"),
    ("clean_gmsd", "GMSD", ".4f"),
    ("clean_detail", "detail", ".2f"),
    ("clean_grid", "grid", ".2f"),
    ("bc1_psnr", "BC1 PSNR-Y", ".2f"),
    ("bc1_gmsd", "BC1 GMSD", ".4f"),
    ("bc1_grid", "BC1 blocks", ".2f"),
    ("calm_detail", "calm detail", ".2f"),
    ("native", "--native", ".2f"),
    ("checker", "checker", ".2f"),
    ("lattice", "lattice", ".2f"),
    ("gray", "gray", ".0f"),
)


def ratio_cell(value: float) -> str:
    """A step ratio for the table: "> 1000" where the truth has no steps off the grid (pixel art
    stored point-sampled up: Warzone's tile pages at x2)."""
    return "> 1000" if value > 1000 else f"{value:.2f}"


def markdown(reports: list[dict[str, object]], truth: dict[str, float]) -> str:
    head = "| x{} | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [
        head.format(reports[0]["scale"]),
        "| --- |" + " ---: |" * len(COLUMNS),
        f"| ground truth | - | 0 | 1.00 | {ratio_cell(truth['grid'])} | - | 0 | "
        f"{ratio_cell(truth['blocks'])} | 1.00 | - | 1.00 | 1.00 | 0 |",
    ]
    for report in reports:
        r = report["results"]
        assert isinstance(r, dict)
        cells = [format(r[key], fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {report['method']} | " + " | ".join(cells) + " |")
    before = reports[0]["results"]
    assert isinstance(before, dict)
    lines.append(
        f"\n*--native*: PSNR-Y against the clean map at the input's size; the old-game input "
        f"itself scores {before['native_before']:.2f}."
    )
    extra = [("pattern_psnr", "pattern PSNR-Y", ".2f"), ("pattern_level", "pattern level", "+.2f")]
    extra += [("lowres_checker", "low-res checker", ".2f"), ("checker_p90", "checker p90", ".2f")]
    extra += [("lowres_checker_p90", "low-res checker p90", ".2f")]
    extra += [("lattice_p90", "lattice p90", ".2f"), ("lowres_lattice", "low-res lattice", ".2f")]
    extra = [column for column in extra if column[0] in before]
    if extra:
        lines += ["", "| method | " + " | ".join(label for _, label, _ in extra) + " |"]
        lines.append("| --- |" + " ---: |" * len(extra))
        for report in reports:
            r = report["results"]
            assert isinstance(r, dict)
            cells = [format(r[key], fmt) if key in r else "-" for key, _, fmt in extra]
            lines.append(f"| {report['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names or files")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4))
    parser.add_argument("--no-peers", action="store_true", help="skip the pretrained peers")
    parser.add_argument("--peers", default=None, help="comma-separated peer names (default: all)")
    parser.add_argument(
        "--lowres", type=Path, default=None, help="real low-res textures: checker against bicubic"
    )
    parser.add_argument("--precision", default="auto", help="for the models (auto: as upscale)")
    parser.add_argument("--val", type=Path, default=VAL)
    parser.add_argument("--limit", type=int, default=1000, help="at most this many textures")
    parser.add_argument("--max-side", type=int, default=256, help="centre crop (speed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quality.json")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    require_data("quality.py", args.val, "--val")
    images = load_val(args.val, args.limit, args.max_side)
    lowres = load_lowres(args.lowres, args.limit) if args.lowres else []
    s = args.scale
    methods: list[tuple[str, Method, str]] = [
        ("bicubic", kernel_method("bicubic", s), ""),
        ("Lanczos-3", kernel_method("lanczos3", s), ""),
    ]
    names = (args.models or DEFAULT_MODELS[s]).split(",")
    peers = {} if args.no_peers else PEERS[s]
    if args.peers:
        peers = {k: v for k, v in peers.items() if k in args.peers.split(",")}
    for label, name in [*((n, n) for n in names), *((k, str(v)) for k, v in peers.items())]:
        run, scale, dtype = model_method(name, args.precision)
        if scale != s:
            raise SystemExit(f"{name} is x{scale}, not x{s}")
        methods.append((label, run, dtype))
    truth = {
        # medians: a flat texture's ratio is 0/0 (Warzone's tiles gave a mean of 1e9)
        "grid": float(np.median([float(grid_ratio(gt, s)) for _, gt in images])),
        "blocks": float(np.median([float(grid_ratio(gt, 4 * s)) for _, gt in images])),
    }
    reports = []
    for label, run, dtype in methods:
        report = evaluate(label, run, s, images)
        report["precision"] = dtype
        if lowres:
            results = report["results"]
            assert isinstance(results, dict)
            results.update(lowres_patterns(run, s, lowres))
        reports.append(report)
        r = report["results"]
        assert isinstance(r, dict)
        cells = "  ".join(f"{label_}={format(r[key], fmt)}" for key, label_, fmt in COLUMNS)
        print(f"{label} ({dtype or 'filter'}, {report['seconds']:.0f}s): {cells}", flush=True)
    table = markdown(reports, truth)
    print(f"\n{len(images)} textures of {args.val} (centre crops <= {args.max_side} px)\n")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "val": str(args.val),
        "lowres": str(args.lowres or ""),
        "max_side": args.max_side,
        "truth": truth,
        "reports": reports,
    }
    args.out.write_text(json.dumps(record, indent=2))
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
