"""Inference throughput and memory, ours against Real-ESRGAN's ``RealESRGANer``, in one run.

    python benchmarks/inference.py                 # CPU: compact x4, cases a, b, c; fp32 + bf16
    python benchmarks/inference.py --quick         # fewer/smaller images (minutes)
    python benchmarks/inference.py --models compact,rrdb --cases a

Cases: (a) 64 textures of 256², (b) 8 of 1024², (c) one 4096² (tiled). Each measurement runs in a
fresh subprocess (so peak RSS is its own) and reports output megapixels per second:
- ``ours``: end to end through the real CLI path (read -> upscale -> write, model load included;
  ``--seamless off`` so that borders are treated as the peer treats them);
- ``ours-model``: the model pipeline alone on decoded pixels (tiling, batching, no I/O);
- ``peer``: Real-ESRGAN's ``inference_realesrgan.py`` loop (cv2.imread -> RealESRGANer.enhance ->
  cv2.imwrite PNG) with the same weights, its own tiling settings (tile 0, or 512 for case c).
The peer needs the optional ``bench`` extra (``pip install -e ".[bench]"``).
Roofline: each model's FLOPs per output pixel, counted from its convolutions (2 x MACs), and the
model-only rate in GFLOP/s against a big ``torch.matmul`` measured in the same run (bf16 on CUDA,
the run's precision on CPU).
Results: a printed table, ratios ours/peer, the roofline lines, and JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {"a": (64, 256), "b": (8, 1024), "c": (1, 4096)}
QUICK = {"a": (16, 256), "b": (2, 1024), "c": (1, 2048)}
ARCHS = {
    "compact": ("compact", {"num_features": 64, "num_blocks": 16, "scale": 4}),
    "rrdb": ("rrdb", {"num_features": 64, "num_blocks": 23, "growth_channels": 32, "scale": 4}),
}


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# -- setup ----------------------------------------------------------------------------------------


def make_inputs(folder: Path, count: int, size: int) -> list[Path]:
    """Real textures (the val set or the samples) cropped/resized to ``size``², as PNG."""
    from PIL import Image

    sources = sorted((ROOT.parent / "shared/data/textures/val/color").glob("*.png"))
    sources = sources or sorted((ROOT / "samples" / "textures").glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB").resize((size, size), Image.LANCZOS)
            path = folder / f"tex{i:03d}.png"
            im.save(path, compress_level=1)
            paths.append(path)
    return paths


def make_weights(folder: Path, model: str) -> tuple[Path, Path]:
    """Our safetensors and the same weights as a Real-ESRGAN ``params_ema`` .pth."""
    import torch

    from upscaler import save_weights
    from upscaler.models import build_generator, make_config
    from upscaler.models.zoo import SHIPPED

    ours = folder / f"{model}.safetensors"
    if model == "compact" and SHIPPED["texture-x4"].installed:
        from upscaler import read_model

        module, _ = read_model("texture-x4")
        arch, config = "compact", module.config  # shipped weights
    else:
        torch.manual_seed(0)
        arch, values = ARCHS[model]
        config = make_config(arch, values)
        module = build_generator(arch, config)
    save_weights(ours, module, arch=arch, config=config)
    peer = folder / f"{model}.pth"
    torch.save({"params_ema": module.state_dict()}, peer)
    return ours, peer


# -- workers (one subprocess each) ----------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(args: argparse.Namespace) -> dict[str, float]:
    from upscaler.cli import main

    # Seamless detection off: the peer zero-pads every border, so this is the same work (auto
    # mode would wrap-pad the tileable ones, which costs a few percent and changes borders).
    argv = [
        args.inputs,
        "-o",
        args.output,
        "--model",
        args.weights,
        "-q",
        "--precision",
        args.precision,
        "--device",
        args.device,
        "--seamless",
        "off",
    ]
    start = time.perf_counter()
    try:
        main(argv, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    return {"seconds": time.perf_counter() - start}


def worker_model(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from upscaler.engine.load import pick_device, pick_dtype
    from upscaler.engine.pipeline import Upscaler
    from upscaler.formats.image import read_image
    from upscaler.models.loader import read_model

    module, info = read_model(args.weights)
    device = pick_device(args.device)
    up = Upscaler(module, info, device=device, dtype=pick_dtype(args.precision, device, info))
    images = [read_image(p).pixels for p in sorted(Path(args.inputs).glob("*.png"))]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    up.upscale(batch[:1, :, :64, :64])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(images), 16):
        up.upscale(batch[i : i + 16])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start}


def worker_peer(args: argparse.Namespace) -> dict[str, float]:
    import types

    import cv2
    import torchvision.transforms.functional as tvf

    # The well-known shim: basicsr imports a module torchvision removed in 0.17.
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = tvf.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules["torchvision.transforms.functional_tensor"] = shim
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer
    from realesrgan.archs.srvgg_arch import SRVGGNetCompact

    if args.model == "compact":  # sized from the weights (the shipped model is 48 x 12)
        import torch

        from upscaler.models.compact import infer_compact_config

        state = torch.load(args.weights, map_location="cpu", weights_only=True)["params_ema"]
        shape = infer_compact_config(state)
        assert shape is not None
        net = SRVGGNetCompact(
            num_in_ch=3,
            num_out_ch=3,
            num_feat=shape.num_features,
            num_conv=shape.num_blocks,
            upscale=4,
        )
    else:
        net = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    start = time.perf_counter()
    upsampler = RealESRGANer(
        scale=4,
        model_path=args.weights,
        model=net,
        tile=args.peer_tile,
        tile_pad=10,
        pre_pad=0,
        half=False,
        device=args.device,
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.inputs).glob("*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        output, _ = upsampler.enhance(img, outscale=4)
        cv2.imwrite(str(out / path.name), output)
    return {"seconds": time.perf_counter() - start}


WORKERS = {"ours": worker_ours, "ours-model": worker_model, "peer": worker_peer}


def run_worker(kind: str, **kwargs: object) -> dict[str, object]:
    command = [sys.executable, __file__, "--worker", kind]
    for key, value in kwargs.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=7200)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- roofline -------------------------------------------------------------------------------------


def flops_per_output_pixel(weights: Path) -> float:
    """2 x the multiply-adds of every convolution, per output pixel, on a probe input."""
    import torch
    from torch import nn

    from upscaler.models.loader import read_model

    module, info = read_model(str(weights))
    macs = 0

    def count(conv: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(conv, nn.Conv2d)
        kh, kw = conv.kernel_size
        macs += out.numel() * (conv.in_channels // conv.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, nn.Conv2d)]
    side = max(32, info.min_size, info.size_multiple)
    with torch.inference_mode():
        out = module(torch.zeros(1, info.in_channels, side, side))
    for hook in hooks:
        hook.remove()
    return 2 * macs / (out.shape[2] * out.shape[3])


def matmul_peak(device: str, precision: str, side: int) -> float:
    """GFLOP/s of repeated ``side`` x ``side`` matmuls (run for at least a second)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a, b = (torch.randn(side, side, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0 or reps < 3:
        a @ b
        reps += 1
    sync()
    return 2 * side**3 * reps / (time.perf_counter() - start) / 1e9


def roofline(rows: list[dict[str, object]], flops: dict[str, float], device: str) -> list[dict]:
    """Model-only rate of each row against the matmul peak of its precision."""
    peaks: dict[str, float] = {}
    lines = []
    for r in rows:
        if r["impl"] != "ours-model" or "mp_per_s" not in r:
            continue
        precision = "bf16" if device.startswith("cuda") else str(r["precision"])
        if precision not in peaks:
            peaks[precision] = matmul_peak(device, precision, 8192 if "cuda" in device else 2048)
        achieved = float(r["mp_per_s"]) * 1e6 * flops[str(r["model"])] / 1e9
        lines.append({
            "model": r["model"], "case": r["case"], "precision": r["precision"],
            "mflop_per_output_px": flops[str(r["model"])] / 1e6, "gflop_per_s": achieved,
            "matmul_peak_gflop_per_s": peaks[precision], "peak_precision": precision,
            "fraction_of_peak": achieved / peaks[precision],
        })  # fmt: skip
    return lines


# -- driver ---------------------------------------------------------------------------------------


def max_png_difference(a: Path, b: Path) -> int:
    from PIL import Image

    worst = 0
    for path in sorted(a.glob("*.png")):
        with Image.open(path) as x, Image.open(b / path.name) as y:
            diff = np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16))
            worst = max(worst, int(diff.max()))
    return worst


def measure_case(
    work: Path,
    model: str,
    weights: tuple[Path, Path],
    case: str,
    count: int,
    size: int,
    precisions: list[str],
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    """The peer once (fp32), then ours end to end and model-only at each precision."""
    inputs = work / f"in-{case}-{count}"
    if not inputs.exists():
        make_inputs(inputs, count, size)
    out_mp = count * (size * 4) ** 2 / 1e6
    common = {"inputs": inputs, "device": args.device, "model": model}
    base = {"case": case, "model": model, "images": count, "size": size}
    rows = []
    peer_out = work / f"peer-{model}-{case}"
    peer: dict[str, object] = {}
    if not args.no_peer:
        tile = 512 if case == "c" else 0
        peer = run_worker("peer", output=peer_out, weights=weights[1], peer_tile=tile, **common)
        rows.append({**base, "impl": "peer", "precision": "fp32", **peer})
    for precision in precisions:
        ours_out = work / f"ours-{model}-{case}-{precision}"
        for kind in ("ours", "ours-model"):
            res = run_worker(
                kind, output=ours_out, weights=weights[0], precision=precision, **common
            )
            row = {**base, "impl": kind, "precision": precision, **res}
            if kind == "ours" and "seconds" in peer and "seconds" in res:
                row["ratio_vs_peer"] = float(peer["seconds"]) / float(res["seconds"])
                if precision == "fp32":
                    row["max_diff_vs_peer"] = max_png_difference(ours_out, peer_out)
            rows.append(row)
    for row in rows:
        if "seconds" in row:
            row["mp_per_s"] = out_mp / float(row["seconds"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--models", default="compact")
    parser.add_argument("--precisions", default=None, help="default: fp32 (+bf16 where native)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    for name in ("inputs", "output", "weights", "model", "precision", "peer-tile"):
        parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.peer_tile = int(args.peer_tile or 0)
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = _peak_rss_mb()
        if args.device.startswith("cuda"):
            import torch

            result["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return

    precisions = (
        args.precisions or ("fp32,bf16" if cpu_has_bf16() or "cuda" in args.device else "fp32")
    ).split(",")
    if "cuda" in args.device and args.precisions is None:
        precisions = ["bf16", "fp16"]
    sizes = QUICK if args.quick else CASES
    rows: list[dict[str, object]] = []
    flops: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            weights = make_weights(work, model)
            flops[model] = flops_per_output_pixel(weights[0])
            for case in args.cases.split(","):
                count, size = sizes[case]
                if model == "rrdb" and args.device == "cpu":
                    if case == "c":
                        continue  # about an hour on 2 cores; run it on a GPU
                    count = min(count, 2)  # ~20 s per 256² image on 2 cores
                rows += measure_case(work, model, weights, case, count, size, precisions, args)
    lines = roofline(rows, flops, args.device)
    report = {
        "device": args.device,
        "cpu_bf16": cpu_has_bf16(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "rows": rows,
        "roofline": lines,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(
        f"{'case':<5}{'model':<9}{'impl':<12}{'prec':<6}{'n':>4}{'size':>6}{'MP/s':>8}"
        f"{'s':>8}{'RSS MB':>8}{'x peer':>8}{'maxdiff':>8}"
    )
    for r in rows:
        head = f"{r['case']:<5}{r['model']:<9}{r['impl']:<12}{r['precision']:<6}"
        if "error" in r:
            print(f"{head} error: {r['error']}")
            continue
        print(
            f"{head}{r['images']:>4}"
            f"{r['size']:>6}{r['mp_per_s']:>8.2f}{r['seconds']:>8.1f}{r['peak_rss_mb']:>8.0f}"
            f"{r.get('ratio_vs_peer', 0):>8.2f}{r.get('max_diff_vs_peer', ''):>8}"
        )
    for line in lines:
        print(
            f"roofline {line['model']} case {line['case']} {line['precision']}: "
            f"{line['mflop_per_output_px']:.3f} MFLOP/output px, {line['gflop_per_s']:.1f} GFLOP/s "
            f"= {line['fraction_of_peak']:.0%} of a {line['peak_precision']} matmul "
            f"({line['matmul_peak_gflop_per_s']:.0f} GFLOP/s)"
        )


if __name__ == "__main__":
    main()
