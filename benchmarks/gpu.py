"""The CUDA path end to end, in one short call on a machine with a GPU (under 8 minutes on one).

    python benchmarks/gpu.py               # shipped models, Real-ESRGAN's two, spanx4 (../shared)
    python benchmarks/gpu.py --models texture-x4 --side 1024
    python benchmarks/gpu.py --dry-run     # on CPU: one tiny model, one small image (the plumbing)

Per model:
- **outputs**: the bundled samples (``samples/textures``) through the real ``upscale`` command on
  ``cuda`` at ``--precision auto`` (bf16 or fp16 by the precision rule, else fp32) and at
  ``--precision fp32``, each against the same command on ``cpu --precision fp32``: PSNR and the
  largest 8-bit level difference over every file and channel. Auto's must meet the precision rule
  (>= 50 dB, no value over 8 levels off), fp32's should be near identical (TF32 is kept off);
  the script exits 1 when one does not.
- **speed**: the samples tiled to ``--side``² (as the command's tensors: 8-bit, on the host),
  through ``Upscaler.upscale`` at auto's precision, warm: megapixels of output per second, the
  ratio to a bare forward of the model on the same images already on the GPU (the engine's cost:
  copies, tiling, wrap, merge), and the bare forward's fraction of the GPU's peak: FLOPs counted
  from the convolutions (a forward hook) over its time, against the dense bf16/fp16 tensor peak
  of a small table by GPU name ("unknown" for others).
Results go to ``benchmarks/results/gpu.json`` (with the CPU and GPU they ran on).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inference import flops_per_output_pixel  # noqa: E402
from benchmarks.machine import cpu_record  # noqa: E402

SAMPLES = ROOT / "samples" / "textures"
PEERS = ROOT.parent / "shared" / "peers"
PEER_FILES = (
    "realesr-animevideov3-x4.safetensors",
    "RealESRGAN_x4plus.safetensors",
    "spanx4_ch48.safetensors",
)
# Dense (no sparsity) bf16/fp16 tensor-core peaks in TFLOP/s, by a part of the device name, the
# most specific first (vendors' data sheets).
PEAKS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
    ("T4", 65.0),
)
BUDGET_S = 420  # models left when this is spent are skipped (the whole call stays < 8 min)


def peak_tflops(name: str) -> float | None:
    """The dense bf16/fp16 tensor peak of a GPU named ``name``; None for one not in ``PEAKS``."""
    return next((peak for part, peak in PEAKS if part.lower() in name.lower()), None)


def default_models() -> list[str]:
    from upscaler.models.sources import SHIPPED

    shipped = [m.name for m in SHIPPED.values() if m.installed]
    return shipped + [str(PEERS / f) for f in PEER_FILES if (PEERS / f).is_file()]


# -- outputs against CPU fp32 ---------------------------------------------------------------------


def run_upscale(inputs: Path, output: Path, model: str, device: str, precision: str) -> float:
    """The ``upscale`` command as a user runs it (its own process); its seconds."""
    command = [sys.executable, "-m", "upscaler", str(inputs), "-o", str(output), "-q"]
    command += ["--model", model, "--device", device, "--precision", precision]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"upscale {model} on {device}: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def compare(ours: Path, reference: Path) -> dict[str, float]:
    """PSNR (dB, 8-bit, every file and channel pooled) and the largest level difference."""
    from PIL import Image

    squared, count, worst = 0.0, 0, 0
    for path in sorted(reference.rglob("*.png")):
        with Image.open(path) as a, Image.open(ours / path.relative_to(reference)) as b:
            diff = np.asarray(a, np.float64) - np.asarray(b.convert(a.mode), np.float64)
        squared, count = squared + float((diff**2).sum()), count + diff.size
        worst = max(worst, int(np.abs(diff).max()))
    psnr = 99.0 if squared == 0 else min(99.0, 10 * math.log10(255**2 * count / squared))
    return {"psnr": psnr, "max_levels": worst}


# -- speed ----------------------------------------------------------------------------------------


def sample_batch(side: int, limit: int) -> list:  # noqa: ANN401 (torch imported late)
    """The first ``limit`` samples as RGB, each tiled to ``side``², ``(1, 3, side, side)`` uint8."""
    import torch
    from PIL import Image

    images = []
    for path in sorted(SAMPLES.glob("*.png"))[:limit]:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        reps = (-(-side // rgb.shape[0]), -(-side // rgb.shape[1]), 1)
        tiled = np.ascontiguousarray(np.tile(rgb, reps)[:side, :side])
        images.append(torch.from_numpy(tiled).permute(2, 0, 1)[None].contiguous())
    return images


def timed(device: str, fn, repeats: int) -> float:  # noqa: ANN001
    """Seconds per call of ``fn`` over ``repeats`` calls, after one to warm up."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def speed(model: str, device: str, side: int, limit: int, repeats: int) -> dict[str, object]:
    import torch

    from upscaler.engine.load import pick_device, pick_dtype
    from upscaler.engine.pipeline import Upscaler
    from upscaler.models.loader import read_model

    module, info = read_model(model)
    dev = pick_device(device)
    dtype = pick_dtype("auto", dev, info)
    engine = Upscaler(module, info, device=dev, dtype=dtype)
    images = sample_batch(side, limit)
    if info.in_channels == 1:
        images = [x[:, :1].contiguous() for x in images]
    on_device = []
    for x in images:
        data = x.to(dev).float().div(255)
        data = data if (info.float_input or info.input_layer) else data.to(dtype)
        on_device.append(data.contiguous(memory_format=torch.channels_last))

    def upscale_all() -> None:
        for x in images:
            engine.upscale(x)

    def forward_all() -> None:
        with torch.inference_mode():
            for x in on_device:
                engine.module(x)

    seconds = timed(device, upscale_all, repeats)
    bare = timed(device, forward_all, repeats)
    out_pixels = len(images) * (side * info.scale) ** 2
    flops = flops_per_output_pixel(Path(model)) * out_pixels
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    return {
        "precision": str(dtype).removeprefix("torch."),
        "side": side,
        "images": len(images),
        "mp_per_s": out_pixels / 1e6 / seconds,
        "bare_mp_per_s": out_pixels / 1e6 / bare,
        "cost_vs_bare": seconds / bare,
        "tflop_per_s": flops / bare / 1e12,
        "fraction_of_peak": flops / bare / 1e12 / peak if peak else "unknown",
    }


# -- driver ---------------------------------------------------------------------------------------


def check_model(
    model: str, inputs: Path, work: Path, args: argparse.Namespace
) -> dict[str, object]:
    from upscaler.models.descriptor import Fidelity

    tag = Path(model).stem
    row: dict[str, object] = {"model": tag}
    run_upscale(inputs, work / f"{tag}-cpu", model, "cpu", "fp32")
    for precision in ("auto", "fp32"):
        out = work / f"{tag}-{args.device}-{precision}"
        row[f"{precision}_seconds"] = run_upscale(inputs, out, model, args.device, precision)
        row[precision] = compare(out, work / f"{tag}-cpu")
    auto, fp32 = row["auto"], row["fp32"]
    assert isinstance(auto, dict) and isinstance(fp32, dict)
    row["auto_meets_rule"] = Fidelity(auto["psnr"], auto["max_levels"]).meets_rule()
    row["fp32_close"] = fp32["max_levels"] <= 1
    row.update(speed(model, args.device, args.side, args.images, args.repeats))
    return row


def tiny_setup(work: Path) -> tuple[list[str], Path]:
    """The dry run's model (a compact of 8 features, x2) and one small odd-sized image."""
    import torch
    from PIL import Image

    from upscaler import save_weights
    from upscaler.models import Compact, CompactConfig

    torch.manual_seed(0)
    config = CompactConfig(num_features=8, num_blocks=2, scale=2)
    model = work / "tiny-x2.safetensors"
    save_weights(model, Compact(config), arch="compact", config=config)
    inputs = work / "in"
    inputs.mkdir()
    with Image.open(SAMPLES / "redrock01.png") as im:
        im.convert("RGB").crop((5, 9, 22, 20)).save(inputs / "rock.png")
    return [str(model)], inputs


def print_row(row: dict[str, object]) -> None:
    if "error" in row:
        print(f"{row['model']}: error: {row['error']}", flush=True)
        return
    auto, fp32 = row["auto"], row["fp32"]
    assert isinstance(auto, dict) and isinstance(fp32, dict)
    fraction = row["fraction_of_peak"]
    share = f"{fraction:.1%}" if isinstance(fraction, float) else str(fraction)
    print(
        f"{row['model']}: auto={row['precision']} {auto['psnr']:.1f} dB, max {auto['max_levels']} "
        f"levels vs CPU fp32 ({'meets' if row['auto_meets_rule'] else 'FAILS'} the rule); fp32 "
        f"{fp32['psnr']:.1f} dB, max {fp32['max_levels']}; {row['mp_per_s']:.3g} MP/s "
        f"({row['cost_vs_bare']:.2f}x a bare forward, {row['bare_mp_per_s']:.3g} MP/s); "
        f"{row['tflop_per_s']:.3g} TFLOP/s = {share} of peak",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated (default: see above)")
    parser.add_argument("--side", type=int, default=512, help="speed: samples tiled to this²")
    parser.add_argument("--images", type=int, default=5, help="speed: how many samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="CPU, a tiny model, one image")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    args = parser.parse_args()
    import torch

    args.device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device here (--dry-run checks the plumbing on CPU)")
    start = time.perf_counter()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        work = Path(tmp)
        models, inputs = default_models(), SAMPLES
        if args.dry_run:
            models, inputs = tiny_setup(work)
            args.side, args.images, args.repeats = 24, 1, 1
        models = args.models.split(",") if args.models else models
        for model in models:
            if time.perf_counter() - start > BUDGET_S:
                rows.append({"model": Path(model).stem, "error": "skipped: time budget spent"})
            else:
                try:
                    rows.append(check_model(model, inputs, work, args))
                except Exception as exc:  # one model's failure is reported, the rest still run
                    rows.append(
                        {"model": Path(model).stem, "error": f"{type(exc).__name__}: {exc}"}
                    )
            print_row(rows[-1])
    gpu = {}
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": props.total_memory / 2**30,
            "peak_tflops": peak_tflops(props.name),
        }
    report = {
        "device": args.device,
        "gpu": gpu,
        "cpu": cpu_record(),
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "seconds": time.perf_counter() - start,
        "models": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{len(rows)} models in {report['seconds']:.0f} s; written {args.out}")
    failed = [r for r in rows if "error" in r or not (r["auto_meets_rule"] and r["fp32_close"])]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
