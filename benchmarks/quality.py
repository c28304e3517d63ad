"""Model quality on the validation textures: every number of the model cards, from one command.

    PYTHONPATH=. python benchmarks/quality.py                       # the shipped models
    PYTHONPATH=. python benchmarks/quality.py --models my.safetensors --limit 8

For each model (scale s) and each colour texture of ``../shared/data/textures/val/color``
(cropped to a multiple of 4 px, at most ``--max-side``):
- ground truth GT; low-res inputs: *clean* = bicubic shrink by s (the usual SR benchmark), and
  *bc1* = the clean input after a BC1 (DXT1) round trip, the usual damage of game textures;
- upscaled by the model (the product's path: seamless detection, tiling), by bicubic and by
  Lanczos-3 at the same scale;
- PSNR-Y and SSIM-Y (BT.601 luma, s-pixel border cropped, BasicSR's convention), LPIPS (AlexNet)
  only when its ImageNet weights are in the torch hub cache (never with a random backbone), and
  *detail*: the high-frequency energy of the result relative to GT's (std of luma minus its
  Gaussian blur, sigma 1). 1.0 means as much fine detail as the truth; bicubic lands well below;
  amplified artefacts (blocks, ringing, noise) also raise it, so read it with PSNR.
- native mode, the "old game" test: N = BC1(point-sample GT down by s), the reference R =
  GT shrunk by s with Lanczos-3 in linear light. Reported as PSNR-Y against R of N itself
  (before), of a Lanczos round trip (up s, down s: the baseline to beat) and of ``upscale
  --native`` (the model, then Lanczos-3 down in linear light).
Results: a printed table per model, JSON (``--out``) and Markdown (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.codecs import bc_roundtrip  # noqa: E402
from training.degradations import point_sample, resize_down  # noqa: E402
from training.metrics import psnr_y, rgb_to_y, ssim_y  # noqa: E402
from upscaler import load_model  # noqa: E402
from upscaler.formats.image import ImageFile, read_image  # noqa: E402
from upscaler.process import TextureOptions, upscale_images  # noqa: E402
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear  # noqa: E402
from upscaler.texture.resample import resize  # noqa: E402

VAL = ROOT.parent / "shared" / "data" / "textures" / "val" / "color"
DEFAULT_MODELS = "texture-x4,texture-x4-fidelity,texture-x2,texture-x2-fidelity"


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


def quantize8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def detail(x: torch.Tensor) -> float:
    """Std of the luma's high frequencies (luma minus its Gaussian blur, sigma 1)."""
    from training.degradations import gaussian_blur

    y = rgb_to_y(x)
    return float((y - gaussian_blur(y, torch.tensor([1.0]))).std())


def through_product(model, lq: torch.Tensor, native: bool = False) -> torch.Tensor:  # noqa: ANN001
    """Upscale like ``upscale`` does (seamless detection, tiling, --native filtering)."""
    pixels = (lq[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    out = upscale_images(model, [ImageFile(pixels, "PNG")], TextureOptions(native=native))[0]
    return torch.from_numpy(out.pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]


def shrink_linear(x: torch.Tensor, factor: int) -> torch.Tensor:
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    return linear_to_srgb(resize(srgb_to_linear(x), (h, w), "lanczos3"))


def lpips_model():  # noqa: ANN201
    from training.perceptual import ALEXNET_FILE, build_lpips, weights_available

    return build_lpips(pretrained=True) if weights_available(ALEXNET_FILE) else None


def score(sr: torch.Tensor, gt: torch.Tensor, border: int, lpips) -> dict[str, float]:  # noqa: ANN001
    sr = quantize8(sr)
    result = {
        "psnr_y": float(psnr_y(sr, gt, border)),
        "ssim_y": float(ssim_y(sr, gt, border)),
        "detail": detail(sr) / max(detail(gt), 1e-8),
    }
    if lpips is not None:
        with torch.no_grad():
            result["lpips"] = float(lpips(sr * 2 - 1, gt * 2 - 1).mean())
    return result


def evaluate(name: str, images: list[tuple[str, torch.Tensor]], lpips) -> dict[str, object]:  # noqa: ANN001
    model = load_model(name)
    s = model.scale
    sums: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()

    def add(key: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            sums.setdefault(key, {}).setdefault(metric, []).append(value)

    for _, gt in images:
        clean = quantize8(resize_down(gt, s, "bicubic"))
        inputs = {"clean": clean, "bc1": bc_roundtrip(clean[0], "bc1")[None]}
        for kind, lq in inputs.items():
            add(f"{kind}/model", score(through_product(model, lq), gt, s, lpips))
            for kernel in ("bicubic", "lanczos3"):
                up = resize(lq, tuple(gt.shape[-2:]), kernel)
                add(f"{kind}/{kernel}", score(up, gt, s, lpips))
        old = quantize8(bc_roundtrip(point_sample(gt, s)[0], "bc1")[None])
        reference = quantize8(shrink_linear(gt, s))
        round_trip = shrink_linear(resize(old, tuple(gt.shape[-2:]), "lanczos3").clamp(0, 1), s)
        ours = through_product(model, old, native=True)
        for key, value in (("before", old), ("lanczos_round_trip", round_trip), ("model", ours)):
            add(f"native/{key}", {"psnr_y": float(psnr_y(quantize8(value), reference, 0))})
    means = {
        key: {metric: float(np.mean(values)) for metric, values in metrics.items()}
        for key, metrics in sums.items()
    }
    return {
        "model": name,
        "scale": s,
        "arch": model.info.arch,
        "params": model.info.num_params,
        "images": len(images),
        "seconds": time.perf_counter() - started,
        "results": means,
    }


def print_table(report: dict[str, object]) -> None:
    results = report["results"]
    assert isinstance(results, dict)
    print(f"\n{report['model']} (x{report['scale']}, {report['images']} val textures)")
    print(f"{'input':<7}{'method':<10}{'PSNR-Y':>8}{'SSIM-Y':>8}{'detail':>8}{'LPIPS':>8}")
    for key, metrics in results.items():
        kind, method = key.split("/")
        if kind == "native":
            continue
        lp = f"{metrics['lpips']:.4f}" if "lpips" in metrics else "n/a"
        print(
            f"{kind:<7}{method:<10}{metrics['psnr_y']:>8.2f}{metrics['ssim_y']:>8.4f}"
            f"{metrics['detail']:>8.2f}{lp:>8}"
        )
    native = {k.split("/")[1]: v["psnr_y"] for k, v in results.items() if k.startswith("native/")}
    print(
        f"native (point-sampled + BC1 -> --native), PSNR-Y vs Lanczos-shrunk GT: before "
        f"{native['before']:.2f}, Lanczos round trip {native['lanczos_round_trip']:.2f}, "
        f"model {native['model']:.2f}"
    )


def markdown(reports: list[dict[str, object]]) -> str:
    lines = [
        "| model | input | method | PSNR-Y | SSIM-Y | detail | LPIPS |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for report in reports:
        results = report["results"]
        assert isinstance(results, dict)
        for key, m in results.items():
            kind, method = key.split("/")
            if kind == "native":
                continue
            method = {"model": f"**{report['model']}**"}.get(method, method)
            lp = f"{m['lpips']:.4f}" if "lpips" in m else "n/a"
            lines.append(
                f"| x{report['scale']} | {kind} | {method} | {m['psnr_y']:.2f} | "
                f"{m['ssim_y']:.4f} | {m['detail']:.2f} | {lp} |"
            )
    lines += [
        "",
        "| model | native input (before) | Lanczos round trip | `--native` |",
        "| --- | ---: | ---: | ---: |",
    ]
    for report in reports:
        r = report["results"]
        assert isinstance(r, dict)
        lines.append(
            f"| {report['model']} | {r['native/before']['psnr_y']:.2f} | "
            f"{r['native/lanczos_round_trip']['psnr_y']:.2f} | "
            f"{r['native/model']['psnr_y']:.2f} |"
        )
    return "\n".join(lines) + "\n"


# How each shipped model was made, as recorded while training it (wall time from metrics.jsonl).
TRAINED = {
    "texture-x4-fidelity": "texture-x4-psnr-cpu.toml`: {steps} steps, batch 16 of 128 px crops",
    "texture-x2-fidelity": "texture-x2-psnr-cpu.toml` (from the x4 fidelity trunk): {steps} "
    "steps, batch 16 of 64 px crops",
    "texture-x4": "texture-x4-gan-cpu.toml` (from texture-x4-fidelity): {steps} steps, "
    "batch 16 of 128 px crops",
    "texture-x2": "texture-x2-gan-cpu.toml` (from texture-x2-fidelity): {steps} steps, "
    "batch 16 of 64 px crops",
}
HARDWARE = "a 2-core CPU (no GPU was available; shared with other jobs), bf16 autocast"


def card(report: dict[str, object], wall: dict[str, str], max_side: int) -> str:
    """A model card for a shipped model: what it is, how it was trained, what it scores."""
    from safetensors import safe_open

    from upscaler.models.zoo import SHIPPED

    name = str(report["model"])
    shipped = SHIPPED[name]
    with safe_open(str(shipped.path), "pt") as f:
        meta = f.metadata() or {}
        dtype = str(f.get_slice(next(iter(f.keys()))).get_dtype())
    config = json.loads(meta.get("upscaler.config", "{}"))
    training = json.loads(meta.get("upscaler.training", "{}"))
    degrade = training.get("degrade", {})
    loss = {k: v for k, v in training.get("loss", {}).items() if v and k.endswith("weight")}
    gan = bool(loss.get("gan_weight"))
    if not (gan and training["loss"].get("gan_type") == "wgan-gp"):
        loss.pop("gp_weight", None)
    names, weights = degrade.get("down_kernels", []), degrade.get("down_weights", [])
    kernels = ", ".join(f"{k} {w:g}" for k, w in zip(names, weights, strict=True))
    lines = [
        f"# {name}",
        "",
        f"{shipped.summary}. Architecture: {report['arch']} (SRVGGNetCompact layout) "
        f"x{config.get('scale')}, {config.get('num_features')} features, "
        f"{config.get('num_blocks')} blocks, {int(report['params']):,} parameters, "  # type: ignore[call-overload]
        f"stored as {dtype}.",
        "",
        "## Training",
        "",
        f"- Recipe: `training/configs/{TRAINED[name].format(steps=training.get('steps'))}; "
        f"the {training.get('weights', 'ema')} weights are shipped.",
        f"- Hardware: {HARDWARE}; wall time {wall.get(name, 'not recorded')}.",
        "- Data: `../shared/data/textures/train` (real game textures, see its licences), "
        "prepared with `upscale-train prepare` and packed as 192 px crops.",
        "- Losses: "
        + ", ".join(f"{k.removesuffix('_weight')} {v:g}" for k, v in loss.items())
        + (
            f" ({training['loss']['gan_type']} GAN, PatchGAN discriminator). No pretrained "
            "network (no ImageNet weights could be downloaded here): feature matching on the "
            "discriminator is the perceptual term."
            if gan
            else " (pixel loss only)."
        ),
        f"- Degradations (low-res made on the fly): shrink kernels {kernels}; "
        f"blur p={degrade.get('blur_prob')}, JPEG p={degrade.get('jpeg_prob')} "
        f"(q {degrade.get('jpeg_quality')}), BC1/BC3 round trip p={degrade.get('bc_prob')}, "
        f"palette p={degrade.get('palette_prob')}; no camera noise.",
        "",
        f"## Measured: `python benchmarks/quality.py --max-side {max_side}`",
        "",
        f"{report['images']} colour textures of `../shared/data/textures/val/color`, centre crops "
        f"of at most {max_side} px; see the script's docstring for the protocol.",
        "",
        markdown([report]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--val", type=Path, default=VAL)
    parser.add_argument("--limit", type=int, default=1000, help="at most this many textures")
    parser.add_argument("--max-side", type=int, default=256, help="centre crop (speed)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quality.json")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--cards",
        type=Path,
        default=None,
        help="write upscaler/models/weights/<model>.md cards from this JSON of wall times",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    images = load_val(args.val, args.limit, args.max_side)
    lpips = lpips_model()
    if lpips is None:
        print("LPIPS: n/a (no AlexNet weights in the torch hub cache; see training/perceptual.py)")
    reports = []
    for name in args.models.split(","):
        report = evaluate(name, images, lpips)
        print_table(report)
        reports.append(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"val": str(args.val), "max_side": args.max_side, "reports": reports}, indent=2)
    )
    if args.markdown:
        args.markdown.write_text(markdown(reports))
    if args.cards:
        from upscaler.models.zoo import SHIPPED

        wall = json.loads(args.cards.read_text())
        for report in reports:
            if report["model"] in SHIPPED:
                SHIPPED[str(report["model"])].card.write_text(card(report, wall, args.max_side))


if __name__ == "__main__":
    main()
