"""Model quality on the validation textures, next to bicubic, Lanczos and Real-ESRGAN's x4plus.

    PYTHONPATH=. python benchmarks/quality.py                          # shipped x4 models + peers
    PYTHONPATH=. python benchmarks/quality.py --models my.safetensors --limit 8 --no-peers
    PYTHONPATH=. python benchmarks/quality.py --scale 2                # the x2 models

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
  round trip, and of ``upscale --native``.

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

from training.codecs import bc_roundtrip  # noqa: E402
from training.degradations import point_sample, resize_down  # noqa: E402
from training.metrics import gmsd, grid_ratio, high_frequency_energy, psnr_y  # noqa: E402
from upscaler.engine.load import pick_device, pick_dtype  # noqa: E402
from upscaler.engine.pipeline import Upscaler  # noqa: E402
from upscaler.formats.image import ImageFile, read_image  # noqa: E402
from upscaler.models.loader import read_model  # noqa: E402
from upscaler.process import TextureOptions, upscale_images  # noqa: E402
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear  # noqa: E402
from upscaler.texture.levels import round_to_levels  # noqa: E402
from upscaler.texture.resample import resize  # noqa: E402

SHARED = ROOT.parent / "shared"
VAL = SHARED / "data" / "textures" / "val" / "color"
PEERS = {"x4plus": SHARED / "peers" / "RealESRGAN_x4plus.safetensors"}
CALM_WORDS = ("sky", "cloud", "water", "sand", "snow", "grass", "fire", "lava", "noise")
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
    """Upscale like ``upscale`` does: seamless detection, tiling, ``--native`` filtering."""
    module, info = read_model(name)
    device = pick_device("cpu")
    up = Upscaler(module, info, device=device, dtype=pick_dtype(precision, device, info))

    def run(lq: torch.Tensor, native: bool) -> torch.Tensor:
        pixels = (lq[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        image = ImageFile(pixels, "PNG")
        out = upscale_images(up, [image], TextureOptions(native=native))[0]
        return torch.from_numpy(out.pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]

    return run, info.scale, str(up.dtype).removeprefix("torch.")


def kernel_method(kernel: str, scale: int) -> Method:
    def run(lq: torch.Tensor, native: bool) -> torch.Tensor:
        size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
        up = resize(lq, size, kernel).clamp(0, 1)
        return shrink_linear(up, scale).clamp(0, 1) if native else up

    return run


def is_calm(name: str, gt_energy: float, threshold: float) -> bool:
    return gt_energy <= threshold or any(word in name.lower() for word in CALM_WORDS)


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
        old = round_to_levels(bc_roundtrip(point_sample(gt, scale)[0], "bc1")[None])
        reference = round_to_levels(shrink_linear(gt, scale))
        native = round_to_levels(method(old, True))
        rows.setdefault("native_before", []).append(float(psnr_y(old, reference)))
        rows.setdefault("native", []).append(float(psnr_y(native, reference)))
    results = {
        key: float(np.median(values) if key.endswith("detail") else np.mean(values))
        for key, values in rows.items()
    }
    results["calm_detail_max"] = float(np.max(rows["calm_detail"]))
    return {
        "method": name,
        "scale": scale,
        "images": len(images),
        "calm_images": len(rows["calm_detail"]),
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
)


def markdown(reports: list[dict[str, object]], truth: dict[str, float]) -> str:
    head = "| x{} | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [
        head.format(reports[0]["scale"]),
        "| --- |" + " ---: |" * len(COLUMNS),
        "| ground truth | - | 0 | 1.00 | "
        f"{truth['grid']:.2f} | - | 0 | {truth['blocks']:.2f} | 1.00 | - |",
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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names or files")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4))
    parser.add_argument("--no-peers", action="store_true", help="skip Real-ESRGAN's x4plus")
    parser.add_argument("--precision", default="auto", help="for the models (auto: as upscale)")
    parser.add_argument("--val", type=Path, default=VAL)
    parser.add_argument("--limit", type=int, default=1000, help="at most this many textures")
    parser.add_argument("--max-side", type=int, default=256, help="centre crop (speed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quality.json")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    images = load_val(args.val, args.limit, args.max_side)
    s = args.scale
    methods: list[tuple[str, Method, str]] = [
        ("bicubic", kernel_method("bicubic", s), ""),
        ("Lanczos-3", kernel_method("lanczos3", s), ""),
    ]
    names = (args.models or DEFAULT_MODELS[s]).split(",")
    peers = {} if args.no_peers or s != 4 else PEERS
    for label, name in [*((n, n) for n in names), *((k, str(v)) for k, v in peers.items())]:
        run, scale, dtype = model_method(name, args.precision)
        if scale != s:
            raise SystemExit(f"{name} is x{scale}, not x{s}")
        methods.append((label, run, dtype))
    truth = {
        "grid": float(np.mean([float(grid_ratio(gt, s)) for _, gt in images])),
        "blocks": float(np.mean([float(grid_ratio(gt, 4 * s)) for _, gt in images])),
    }
    reports = []
    for label, run, dtype in methods:
        report = evaluate(label, run, s, images)
        report["precision"] = dtype
        reports.append(report)
        r = report["results"]
        assert isinstance(r, dict)
        cells = "  ".join(f"{label_}={format(r[key], fmt)}" for key, label_, fmt in COLUMNS)
        print(f"{label} ({dtype or 'filter'}, {report['seconds']:.0f}s): {cells}", flush=True)
    table = markdown(reports, truth)
    print(f"\n{len(images)} textures of {args.val} (centre crops <= {args.max_side} px)\n")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"val": str(args.val), "max_side": args.max_side, "truth": truth, "reports": reports}
    args.out.write_text(json.dumps(record, indent=2))
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
