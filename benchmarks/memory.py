"""Peak memory of the real ``upscale`` command on big textures (read -> upscale -> write PNG).

    python benchmarks/memory.py                          # 1024² and 4096², x4 and --native, RGB
    python benchmarks/memory.py --sides 4096 --modes x4 --channels 4
    python benchmarks/memory.py --flags "--max-memory 1G"
    python benchmarks/memory.py --sides 1024 --modes x4 --map normal              # one normal map
    python benchmarks/memory.py --sides 512 --modes x4 --map normal --count 16    # a batch of 16

Inputs are tiled up from a real texture (``make_big``); the model is a compact x4 with random
weights (64 features, 16 blocks by default: memory does not depend on the weights). Each case runs
the command as a subprocess and reports its own peak RSS (VmHWM), the same command's peak on a
64 px texture (interpreter, torch, model), seconds and the output size. Results: a table and JSON.
``--map normal`` makes tangent-space normal maps (named ``*_n.png``: decoded as vectors,
renormalised and stored with best-fit codes, the costliest conversion); ``--count N`` runs one
command over N such files, which are upscaled in batches.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {"x4": (), "native": ("--native",), "half": ("--output-scale", "2")}


def write_model(path: Path, features: int, blocks: int) -> Path:
    import torch

    from upscaler import save_weights
    from upscaler.models import Compact, CompactConfig

    torch.manual_seed(0)
    config = CompactConfig(num_features=features, num_blocks=blocks, scale=4)
    save_weights(path, Compact(config), arch="compact", config=config)
    return path


def make_normal(path: Path, side: int, seed: int = 0) -> None:
    """A ``side``-px tangent-space normal map (8-bit RGB) from a smooth random height field."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, max(2, side // 16), max(2, side // 16), generator=g)
    height = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)[0, 0]
    height = height + 0.05 * torch.rand(side, side, generator=g)
    dy, dx = torch.gradient(height * 8)
    v = torch.stack([-dx, -dy, torch.ones_like(dx)], dim=-1)
    v = v / v.norm(dim=-1, keepdim=True)
    pixels = ((v * 0.5 + 0.5) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(path, compress_level=1)


def make_inputs(work: Path, side: int, mode: str, kind: str, count: int) -> Path:
    """The input of one case: a file, or a folder of ``count`` files."""
    from benchmarks.faults.drill_big import make_big

    folder = work / f"in-{side}-{mode}-{kind}-{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / (f"tex{i:03d}_n.png" if kind == "normal" else f"tex{i:03d}.png")
        if path.is_file():
            continue
        if kind == "normal":
            make_normal(path, side, seed=i)
        else:
            make_big(path, side, seed=i, mode=mode)
    return folder if count > 1 else folder / ("tex000_n.png" if kind == "normal" else "tex000.png")


def measure(
    work: Path,
    model: Path,
    side: int,
    channels: int,
    flags: tuple[str, ...],
    kind: str = "color",
    count: int = 1,
) -> dict[str, object]:
    from PIL import Image

    from benchmarks.faults.procs import run_upscale

    mode = "RGBA" if channels == 4 and kind == "color" else "RGB"
    source = make_inputs(work, side, mode, kind, count)
    small = make_inputs(work, 64, mode, kind, 1)
    tag = "".join(flags).replace("-", "_").replace(" ", "")
    out = work / f"out{side}{mode}{kind}{count}{tag}"
    cli = run_upscale(source, "-o", out, "--model", model, "-q", *flags, timeout=7200)
    base = run_upscale(small, "-o", work / f"base{kind}{tag}", "--model", model, "-q", *flags)
    size = None
    if cli.returncode == 0:
        first = out / (source.name if count == 1 else sorted(p.name for p in source.iterdir())[0])
        with Image.open(first) as im:
            size = list(im.size)
    return {
        "side": side,
        "mode": mode,
        "map": kind,
        "count": count,
        "flags": " ".join(flags),
        "exit_code": cli.returncode,
        "output_size": size,
        "seconds": round(cli.seconds, 1),
        "peak_rss_mb": round(cli.peak_rss_mb),
        "baseline_rss_mb": round(base.peak_rss_mb),
        "error": (cli.stderr.strip().splitlines() or [""])[-1][:300] if cli.returncode else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="1024,4096")
    parser.add_argument("--modes", default="x4,native", help=f"of {sorted(MODES)}")
    parser.add_argument("--channels", type=int, default=3, choices=(3, 4))
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--map", default="color", choices=("color", "normal"))
    parser.add_argument("--count", type=int, default=1, help="files per command (a batch)")
    parser.add_argument("--flags", default="", help="extra command-line flags for every case")
    parser.add_argument("--work", default=None, help="keep inputs here (default: a temp folder)")
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = write_model(work / "compact.safetensors", args.features, args.blocks)
        for side in (int(s) for s in args.sides.split(",")):
            for mode in args.modes.split(","):
                flags = (*MODES[mode], *shlex.split(args.flags))
                row = {
                    "case": mode,
                    **measure(work, model, side, args.channels, flags, args.map, args.count),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    report = {"model": f"compact {args.features}f/{args.blocks}b x4", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(
        f"{'side':>6} {'case':<7}{'mode':<5}{'map':<7}{'n':>4}{'peak RSS MB':>12}{'64px MB':>9}"
        f"{'s':>8}  output"
    )
    for r in rows:
        print(
            f"{r['side']:>6} {r['case']:<7}{r['mode']:<5}{r['map']:<7}{r['count']:>4}"
            f"{r['peak_rss_mb']:>12}"
            f"{r['baseline_rss_mb']:>9}{r['seconds']:>8}  {r['output_size'] or r['error']}"
        )


if __name__ == "__main__":
    main()
