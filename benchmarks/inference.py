"""Inference speed against Real-ESRGAN's own ``RealESRGANer``, on Real-ESRGAN's own weights.

    python benchmarks/inference.py                # both peers; 256² and 96², tileable or not
    python benchmarks/inference.py --models animevideov3 --cases 256t,256n --count 8
    python benchmarks/inference.py --cases 1024n --models texture-x4   # bigger, tiled textures

Models: ``animevideov3`` (Real-ESRGAN's compact realesr-animevideov3, 64 x 16) and ``x4plus``
(RealESRGAN_x4plus, RRDB 16.7 M), from ``../shared/peers/``, or our shipped ``texture-x4``. Cases
``<side><t|n>``: real validation textures at ``side``², ``t`` tileable (whole textures that wrap,
resized wrap-aware so they still tile), ``n`` not (crops of textures that do not wrap). Each
measurement runs in a fresh subprocess, in the same run:
- ``peer``: Real-ESRGAN's ``inference_realesrgan.py`` loop (cv2.imread -> RealESRGANer.enhance ->
  cv2.imwrite PNG), its defaults (tile 0, tile_pad 10, pre_pad 0) except fp32 (its default fp16
  is for GPUs; on a CPU users pass ``--fp32``);
- ``ours``: the real ``upscale`` command on the folder, default settings (seamless auto: the
  tileable ones wrap; precision auto);
- ``cost``: per texture, ``Upscaler.upscale`` (planning, wrap, tiling, merge) over one bare
  forward of the model on the same image at the same precision: the engine's overhead.
Printed: seconds, ratio peer/ours, PSNR between the two outputs (they differ where we wrap),
the engine cost (over a bare forward of the image, and of the image padded by the model's
effective radius where it wraps: the issue's yardstick), and roofline lines (FLOPs per pixel
counted from the convolutions).
The peer needs the optional ``bench`` extra (``pip install -e ".[bench]"``).
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

from benchmarks.machine import cpu_record  # noqa: E402  (after the path: the project's own)

PEERS = ROOT.parent / "shared" / "peers"
MODELS = {
    "animevideov3": PEERS / "realesr-animevideov3-x4.safetensors",
    "x4plus": PEERS / "RealESRGAN_x4plus.safetensors",
    "texture-x4": None,  # shipped
}
DEFAULT_COUNT = {"animevideov3": 16, "x4plus": 4, "texture-x4": 16}
VAL = ROOT.parent / "shared" / "data" / "textures" / "val" / "color"


# -- setup ----------------------------------------------------------------------------------------


def make_inputs(folder: Path, count: int, size: int, tileable: bool) -> list[Path]:
    """``count`` real textures at ``size``² as PNG: whole textures that wrap both ways, resized
    with wrap-aware Lanczos (they still tile), or centre crops of textures that do not wrap."""
    import torch
    from PIL import Image

    from upscaler.texture.resample import resize
    from upscaler.texture.seamless import detect_wrap

    sources = sorted(VAL.glob("*.png")) or sorted((ROOT / "samples" / "textures").glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for source in sources:
        with Image.open(source) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        if all(detect_wrap(x[0])) != tileable:
            continue
        if not tileable:
            side = min(x.shape[-2:])
            top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
            x = x[..., top : top + side, left : left + side]
        x = resize(x, (size, size), "lanczos3", wrap=(tileable, tileable)).clamp(0, 1)
        pixels = (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        path = folder / f"tex{len(paths):03d}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        paths.append(path)
        if len(paths) == count:
            break
    return paths


def make_weights(folder: Path, model: str) -> tuple[str, Path]:
    """What ``upscale --model`` takes (a name or file), and the same weights as the ``.pth``
    state dict Real-ESRGAN's script loads."""
    import torch

    from upscaler.models.checkpoint import read_weights
    from upscaler.models.sources import resolve

    source = MODELS[model]
    path = resolve(model).file() if source is None else source
    state, _ = read_weights(path)
    peer = folder / f"{model}.pth"
    torch.save({"params_ema": {k: v.float() for k, v in state.items()}}, peer)
    return (model if source is None else str(source)), peer


def missing_models(models: list[str]) -> str | None:
    """One line on the first of ``models`` that is unknown or whose weights are not here (the
    peers live in ``../shared``, beside a development clone, not in the repository)."""
    for model in models:
        if model not in MODELS:
            return f"unknown model {model!r} (models: {', '.join(MODELS)})"
        source = MODELS[model]
        if source is not None and not source.is_file():
            return (
                f"{model} needs {source}, Real-ESRGAN's weights as converted in ../shared/peers "
                "(not part of the repository); --models texture-x4 needs nothing else"
            )
    return None


# -- workers (one subprocess each) ----------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_ours(args: argparse.Namespace) -> dict[str, float]:
    import torch  # noqa: F401  imported before the clock, as the peer's is: both time model load + run

    from upscaler.cli import main

    argv = [args.inputs, "-o", args.output, "--model", args.weights, "-q"]
    argv += ["--device", args.device] + (["--precision", args.precision] if args.precision else [])
    start = time.perf_counter()
    try:
        main(argv, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    return {"seconds": time.perf_counter() - start}


def worker_cost(args: argparse.Namespace) -> dict[str, float]:
    """The engine's cost per texture over one bare forward of the same image."""
    import torch

    from upscaler.engine.load import pick_device, pick_dtype
    from upscaler.engine.pipeline import Upscaler
    from upscaler.formats.image import read_image
    from upscaler.models.loader import read_model
    from upscaler.models.padding import wrap_pad
    from upscaler.process import wrap_axes

    module, info = read_model(args.weights)
    device = pick_device(args.device)
    dtype = pick_dtype(args.precision or "auto", device, info)
    up = Upscaler(module, info, device=device, dtype=dtype)
    images = [read_image(p) for p in sorted(Path(args.inputs).glob("*.png"))]
    engine, bare = 0.0, {"bare": 0.0, "padded": 0.0}
    for image in images:
        x = torch.from_numpy(image.pixels).permute(2, 0, 1)[None].contiguous()
        wrap = wrap_axes(image, "auto")
        up.upscale(x, wrap=wrap)  # warm-up for this shape
        start = time.perf_counter()
        up.upscale(x, wrap=wrap)
        engine += time.perf_counter() - start
        data = x.float().div(255).to(device)
        data = (data if info.float_input else data.to(dtype)).contiguous(
            memory_format=torch.channels_last
        )
        # The yardstick for wrapped textures: a bare forward of the padded image (the
        # effective radius each side, as the engine would pad without circular convolutions).
        pads = [min(info.wrap_field or info.receptive_field, n) if w else 0
                for w, n in zip(wrap, data.shape[2:], strict=True)]  # fmt: skip
        padded = wrap_pad(data, *pads).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for key, tensor in (("bare", data), ("padded", padded)):
                up.module(tensor)
                start = time.perf_counter()
                up.module(tensor)
                bare[key] += time.perf_counter() - start
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return {
        "seconds": engine,
        "bare_seconds": bare["bare"],
        "bare_padded_seconds": bare["padded"],
        "precision": names[dtype],
    }


def worker_peer(args: argparse.Namespace) -> dict[str, float]:
    import types

    import cv2
    import torchvision.transforms.functional as tvf

    # The well-known shim: basicsr imports a module torchvision removed in 0.17.
    shim = types.ModuleType("torchvision.transforms.functional_tensor")
    shim.rgb_to_grayscale = tvf.rgb_to_grayscale  # type: ignore[attr-defined]
    sys.modules["torchvision.transforms.functional_tensor"] = shim
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer
    from realesrgan.archs.srvgg_arch import SRVGGNetCompact

    from upscaler.models.compact import infer_compact_config

    start = time.perf_counter()  # the peer's script builds its network, then loads the weights
    if args.model != "x4plus":  # a compact, sized from the weights
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
    upsampler = RealESRGANer(
        scale=4,
        model_path=args.weights,
        model=net,
        tile=args.peer_tile,
        tile_pad=10,
        pre_pad=0,
        half=False,  # the script's --fp32, which CPUs need
        device=args.device,
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.inputs).glob("*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        output, _ = upsampler.enhance(img, outscale=4)
        cv2.imwrite(str(out / path.name), output)
    return {"seconds": time.perf_counter() - start}


def worker_contract(args: argparse.Namespace) -> dict[str, float]:
    """A model's first use: reading it measures its contract (cached per file afterwards)."""
    import torch  # noqa: F401

    from upscaler.models.loader import read_model

    start = time.perf_counter()
    _, info = read_model(args.weights)
    return {
        "seconds": time.perf_counter() - start,
        "bf16_psnr": info.bf16_fidelity.psnr,
        "bf16_max_levels": info.bf16_fidelity.max_levels,
    }


WORKERS = {
    "ours": worker_ours,
    "cost": worker_cost,
    "peer": worker_peer,
    "contract": worker_contract,
}


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
    """The bare forward's rate in each ``cost`` row against the matmul peak of its precision."""
    peaks: dict[str, float] = {}
    lines = []
    for r in rows:
        if r["impl"] != "cost" or "bare_seconds" not in r:
            continue
        precision = str(r["precision"])
        if precision not in peaks:
            peaks[precision] = matmul_peak(device, precision, 8192 if "cuda" in device else 2048)
        pixels = int(r["images"]) * (int(r["size"]) * 4) ** 2
        achieved = pixels * flops[str(r["model"])] / float(r["bare_seconds"]) / 1e9
        lines.append({
            "model": r["model"], "case": r["case"], "precision": precision,
            "mflop_per_output_px": flops[str(r["model"])] / 1e6, "gflop_per_s": achieved,
            "matmul_peak_gflop_per_s": peaks[precision],
            "fraction_of_peak": achieved / peaks[precision],
        })  # fmt: skip
    return lines


# -- driver ---------------------------------------------------------------------------------------


def psnr_between(a: Path, b: Path) -> float:
    """Mean PSNR (RGB, 8-bit) between same-named PNGs of two folders."""
    from PIL import Image

    values = []
    for path in sorted(a.glob("*.png")):
        with Image.open(path) as x, Image.open(b / path.name) as y:
            d = np.asarray(x.convert("RGB"), np.float64) - np.asarray(y.convert("RGB"), np.float64)
        mse = float((d**2).mean())
        values.append(99.0 if mse == 0 else 10 * np.log10(255**2 / mse))
    return float(np.mean(values))


def measure_case(work: Path, model: str, weights: tuple[str, Path], case: str, count: int,
                 args: argparse.Namespace) -> list[dict[str, object]]:  # fmt: skip
    """The peer, ours end to end, and the engine's cost, on ``count`` textures of ``case``."""
    size, tileable = int(case[:-1]), case.endswith("t")
    inputs = work / f"in-{case}-{count}"
    if not inputs.exists():
        count = len(make_inputs(inputs, count, size, tileable))
    count = len(list(inputs.glob("*.png")))
    common = {"inputs": inputs, "device": args.device, "model": model}
    base = {"case": case, "model": model, "images": count, "size": size}
    rows: list[dict[str, object]] = []
    peer_out, ours_out = work / f"peer-{model}-{case}", work / f"ours-{model}-{case}"
    peer: dict[str, object] = {}
    if not args.no_peer:
        peer = run_worker("peer", output=peer_out, weights=weights[1], peer_tile=0, **common)
        rows.append({**base, "impl": "peer", "precision": "fp32", **peer})
    extra = {"precision": args.precision} if args.precision else {}
    ours = run_worker("ours", output=ours_out, weights=weights[0], **extra, **common)
    row: dict[str, object] = {**base, "impl": "ours", "precision": args.precision or "auto", **ours}
    if "seconds" in peer and "seconds" in ours:
        row["ratio_vs_peer"] = float(peer["seconds"]) / float(ours["seconds"])
        row["psnr_vs_peer"] = psnr_between(ours_out, peer_out)
    rows.append(row)
    cost = run_worker("cost", output=ours_out, weights=weights[0], **extra, **common)
    row = {**base, "impl": "cost", **cost}
    if "bare_seconds" in cost:
        row["cost_vs_bare"] = float(cost["seconds"]) / float(cost["bare_seconds"])
        row["cost_vs_bare_padded"] = float(cost["seconds"]) / float(cost["bare_padded_seconds"])
    rows.append(row)
    for r in rows:
        if "seconds" in r:
            r["mp_per_s"] = count * (size * 4) ** 2 / 1e6 / float(r["seconds"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="animevideov3,x4plus")
    parser.add_argument("--cases", default="256n,256t,96n,96t")
    parser.add_argument("--count", type=int, default=0, help="textures per case (0: per model)")
    parser.add_argument("--precision", default="", help="ours: default auto (as upscale)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    for name in ("inputs", "output", "weights", "model", "peer-tile"):
        parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.peer_tile = int(args.peer_tile or 0)
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return

    problem = missing_models(args.models.split(","))
    if problem:
        sys.exit(f"benchmarks/inference.py: {problem}")
    rows: list[dict[str, object]] = []
    flops: dict[str, float] = {}
    first_use: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        os.environ["UPSCALE_CACHE_DIR"] = str(work / "cache")  # cold: the first use is timed
        for model in args.models.split(","):
            weights = make_weights(work, model)
            first_use[model] = run_worker("contract", weights=weights[0], device=args.device)
            flops[model] = flops_per_output_pixel(weights[0])
            print(f"{model}: first use (contract measured, then cached): {first_use[model]}")
            for case in args.cases.split(","):
                count = args.count or DEFAULT_COUNT[model]
                rows += measure_case(work, model, weights, case, count, args)
                print_rows(rows[-3:])
    lines = roofline(rows, flops, args.device)
    cpu = cpu_record()
    report = {"device": args.device, "cpu": cpu, "cpu_bf16": cpu["isa"] in ("AMX", "AVX512-BF16"),
              "cpus": os.cpu_count(), "threads": os.environ.get("OMP_NUM_THREADS", "all"),
              "first_use": first_use, "rows": rows, "roofline": lines}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("\nall cases:")
    print_rows(rows)
    for line in lines:
        print(
            f"roofline {line['model']} {line['case']} {line['precision']}: "
            f"{line['mflop_per_output_px']:.3f} MFLOP/output px, {line['gflop_per_s']:.1f} GFLOP/s "
            f"= {line['fraction_of_peak']:.0%} of a {line['precision']} matmul "
            f"({line['matmul_peak_gflop_per_s']:.0f} GFLOP/s)"
        )


def print_rows(rows: list[dict[str, object]]) -> None:
    print(
        f"{'case':<6}{'model':<14}{'impl':<6}{'prec':<6}{'n':>4}{'s':>8}{'MP/s':>7}"
        f"{'RSS MB':>8}{'x peer':>8}{'PSNR':>7}{'cost':>6}{'/pad':>6}",
        flush=True,
    )
    for r in rows:
        head = f"{r['case']:<6}{r['model']:<14}{r['impl']:<6}{str(r.get('precision', '')):<6}"
        if "error" in r:
            print(f"{head} error: {r['error']}")
            continue
        print(
            f"{head}{r['images']:>4}{float(r['seconds']):>8.1f}{float(r['mp_per_s']):>7.2f}"
            f"{float(r['peak_rss_mb']):>8.0f}{float(r.get('ratio_vs_peer', 0)):>8.2f}"
            f"{float(r.get('psnr_vs_peer', 0)):>7.1f}{float(r.get('cost_vs_bare', 0)):>6.2f}"
            f"{float(r.get('cost_vs_bare_padded', 0)):>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
