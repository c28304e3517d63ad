"""Seconds per output megapixel of upscaler models as the library runs them, on CPU.

    python benchmarks/speed.py                    # texture-x4 against texture-x4-fidelity
    python benchmarks/speed.py --scale 2          # texture-x2 against texture-x2-fidelity
    python benchmarks/speed.py --models texture-x4,my.safetensors --baseline texture-x4
    python benchmarks/speed.py --isa AVX2         # an AVX2-only desktop, emulated on this CPU

Each model loads as ``upscale`` loads it (``load_model``: ``read_model``, then ``pick_dtype``) at
``--precision auto`` (bf16 where the CPU runs it natively and the model's measured output meets
the precision rule, read from the measurement cache when there) and at ``fp32``, on the CPU,
with ``torch.set_num_threads(--threads)``. Input: the bundled samples (``samples/textures``, RGB),
centre crops of ``--size``² (the five 128² samples whole by default; a larger size tiles them),
as 8-bit tensors through ``Upscaler.upscale`` (planning, tiling, merge; no wrap: a crop does not
tile). After ``--warmup`` untimed rounds, every (model, precision) runs once per round for
``--repeats`` rounds, interleaved (A, B, A, B, the order reversed every other round so a slow
drift of the machine falls on all alike). Reported per row: the precision that actually ran,
the median seconds per output megapixel over the rounds, and the ratio to ``--baseline`` at the
same asked precision: the median of the rounds' paired ratios, so a round slowed by another
process slows both sides of its ratio. Both by the wall clock (what a user waits, on a quiet
machine) and by the process's CPU time: at one thread, what the work costs on a core of its
own, the figure to read when other processes share the cores (they slow the wall clock only);
with more threads it also counts the threads' spin-waiting.

``--isa AVX2`` runs the measurement again in a subprocess with ``ONEDNN_MAX_CPU_ISA=AVX2``
(oneDNN, which runs the convolutions, reads it once, at its first use) and, for the ISAs below
AVX-512, ``ATEN_CPU_CAPABILITY`` and ``MKL_ENABLE_INSTRUCTIONS`` to match (ATen's own kernels and
MKL would otherwise still use AVX-512). What ran is checked, not assumed: a probe subprocess runs
a convolution with ``ONEDNN_VERBOSE=1`` and the results record the ISA oneDNN reports and the
kernel it picked per precision, with ATen's capability. Found on a Xeon with AMX (torch 2.14,
oneDNN 3.12): all three are honoured (oneDNN reports "Intel AVX2", ATen "AVX2", MKL's verbose
line AVX2). Under AVX2 the fp32 convolutions run oneDNN's ``brg_conv_fwd:avx2`` instead of
``avx512_core`` (the models 1.8x-2.1x slower per pixel) and oneDNN has no bf16 convolution at
all: bf16 falls back to torch's own, 6.8x slower than fp32 there, where AMX made it 3x faster.
``--precision auto`` still picks bf16 under the emulation: ``native_bf16`` reads the flags of
/proc/cpuinfo, which the variables do not change (the table says so in a note). The rows say
which precision ran; on a real AVX2 CPU auto runs fp32, so there the fp32 rows are auto's.

Writes ``benchmarks/results/speed.json`` (``speed-<isa>.json`` with ``--isa``) with the CPU
record (``benchmarks/machine.py``), the ISA check, threads, size, repeats and the rows.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import write_report  # noqa: E402  (after the path: the project's own)
from benchmarks.machine import cpu_record  # noqa: E402

SAMPLES = ROOT / "samples" / "textures"
PRECISIONS = ("auto", "fp32")
# ``--isa`` families below AVX-512, and what ATen and MKL are held to with them
LOWER_ISAS = (("AVX2", "avx2", "AVX2"), ("AVX", "default", "AVX"), ("SSE41", "default", "SSE4_2"))
# One convolution per precision, as the models' (64 features, channels last; torch leaves small
# fp32 ones to its own kernels), with oneDNN's verbose log on stdout (the probe's only output)
PROBE = """
import torch
conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
x = torch.rand(1, 64, 64, 64).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    for dtype in (torch.float32, torch.bfloat16):
        print("probe", str(dtype).removeprefix("torch."), flush=True)
        conv.to(dtype)(x.to(dtype))
"""


def isa_env(isa: str) -> dict[str, str]:
    """The environment that holds oneDNN (and below AVX-512, ATen and MKL) to ``isa``."""
    env = {"ONEDNN_MAX_CPU_ISA": isa}
    for prefix, aten, mkl in LOWER_ISAS:
        if isa == prefix or isa.startswith(f"{prefix}_"):  # AVX2_VNNI is AVX2; AVX512 is not AVX
            env |= {"ATEN_CPU_CAPABILITY": aten, "MKL_ENABLE_INSTRUCTIONS": mkl}
            break
    return env


def parse_onednn_log(log: str) -> dict[str, str | None]:
    """The ISA oneDNN reports and the convolution kernel it ran per precision (None: no oneDNN
    convolution ran, torch used its own), from the probe's ``ONEDNN_VERBOSE=1`` output."""
    found: dict[str, str | None] = {"isa": None, "fp32": None, "bf16": None}
    precision = ""
    for line in log.splitlines():
        if line.startswith("probe "):
            precision = line.split()[1].replace("float32", "fp32").replace("bfloat16", "bf16")
        elif (isa := re.search(r",cpu,isa:(.*)$", line)) and found["isa"] is None:
            found["isa"] = isa.group(1).strip()
        elif ",exec,cpu,convolution," in line and precision in found:
            fields = line.split(",")
            found[precision] = fields[fields.index("convolution") + 1]
    return found


def isa_check() -> dict[str, object]:
    """What this process runs on: the ISA variables set, ATen's capability, and oneDNN's ISA and
    kernels as a probe subprocess (same environment, ``ONEDNN_VERBOSE=1``) logs them."""
    import torch

    names = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
        )
        onednn = parse_onednn_log(proc.stdout)
    except (OSError, subprocess.SubprocessError) as exc:
        onednn = {"isa": None, "fp32": None, "bf16": None, "error": str(exc)}
    return {
        "env": {name: os.environ[name] for name in names if name in os.environ},
        "aten": torch.backends.cpu.get_cpu_capability(),
        "onednn": onednn,
    }


# -- inputs and models ----------------------------------------------------------------------------


def load_crops(size: int) -> list[tuple[str, torch.Tensor]]:
    """The bundled samples as ``(name, (1, 3, size, size) uint8 tensor)``: RGB centre crops, a
    sample smaller than ``size`` tiled first."""
    import torch
    from PIL import Image

    crops: list[tuple[str, torch.Tensor]] = []
    for path in sorted(SAMPLES.glob("*.png")):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        reps = (-(-size // rgb.shape[0]), -(-size // rgb.shape[1]), 1)
        rgb = np.tile(rgb, reps)
        top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
        crop = np.ascontiguousarray(rgb[top : top + size, left : left + size])
        crops.append((path.name, torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()))
    if not crops:
        sys.exit(f"benchmarks/speed.py: no PNG samples in {SAMPLES}")
    return crops


@dataclass
class Entry:
    """One row: a model at an asked precision, loaded as ``upscale`` loads it."""

    model: str
    asked: str
    run: Callable[[], None]  # every crop through ``Upscaler.upscale`` once
    precision: str  # what ``pick_dtype`` chose
    out_mpx: float  # output megapixels of one ``run``


def load_entry(model: str, asked: str, crops: Sequence[tuple[str, torch.Tensor]]) -> Entry:
    from upscaler.engine.load import load_model

    up = load_model(model, device="cpu", dtype=asked)
    images = [x for _, x in crops]

    def run() -> None:
        for x in images:
            up.upscale(x)

    names = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
    out_mpx = sum(x.shape[-2] * x.shape[-1] for x in images) * up.scale**2 / 1e6
    return Entry(model, asked, run, names[str(up.dtype)], out_mpx)


# -- measurement ----------------------------------------------------------------------------------


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(entries: Sequence[Entry], repeats: int, warmup: int) -> dict[str, list[list[float]]]:
    """Seconds per output megapixel by each of ``CLOCKS``, ``[clock][entry][round]``: ``warmup``
    untimed rounds, then ``repeats`` rounds in which every entry runs once, in reverse order
    every other round."""
    for _ in range(warmup):
        for entry in entries:
            entry.run()
    rounds = {clock: [[0.0] * repeats for _ in entries] for clock in CLOCKS}
    for r in range(repeats):
        order = list(range(len(entries)))
        for i in order if r % 2 == 0 else order[::-1]:
            start = {clock: read() for clock, read in CLOCKS.items()}
            entries[i].run()
            for clock, read in CLOCKS.items():
                rounds[clock][i][r] = (read() - start[clock]) / entries[i].out_mpx
    return rounds


def summarize(
    entries: Sequence[Entry], rounds: dict[str, list[list[float]]], baseline: str
) -> list[dict[str, object]]:
    """A row per entry: the precision that ran and, by each clock, the median s/Mpx over the
    rounds and the median of the rounds' ratios to the baseline model's entry of the same asked
    precision."""
    by_key = {(e.model, e.asked): i for i, e in enumerate(entries)}
    rows: list[dict[str, object]] = []
    for i, entry in enumerate(entries):
        row: dict[str, object] = {"model": entry.model, "asked": entry.asked}
        row["precision"] = entry.precision
        for clock, times in rounds.items():
            own, base = times[i], times[by_key[(baseline, entry.asked)]]
            prefix = "" if clock == "wall" else f"{clock}_"
            row[f"{prefix}s_per_mpx"] = statistics.median(own)
            row[f"{prefix}ratio"] = statistics.median(t / b for t, b in zip(own, base, strict=True))
            row[f"{prefix}rounds"] = own
        rows.append(row)
    return rows


def print_table(report: dict[str, Any]) -> None:
    cpu, isa, onednn = report["cpu"], report["isa"], report["isa"]["onednn"]
    limit = " ".join(f"{name}={value}" for name, value in isa["env"].items()) or "none"
    print(
        f"CPU: {cpu['model']} ({cpu['isa']}, {cpu['cores']} cores); ISA limit: {limit}; "
        f"oneDNN: {onednn['isa']}, conv fp32 {onednn['fp32']}, "
        f"bf16 {onednn['bf16'] or 'not oneDNN (torch own)'}; ATen: {isa['aten']}"
    )
    print(
        f"{report['threads']} thread(s), {len(report['crops'])} crops of {report['size']}², "
        f"{report['repeats']} rounds after {report['warmup']} warm-up, interleaved; "
        f"s/Mpx: median (min-max) of the rounds; x: to {report['baseline']}"
    )
    print(f"{'model':<24}{'asked':<6}{'ran':<5}{'wall s/Mpx':>25}{'x':>6}{'CPU s/Mpx':>25}{'x':>6}")
    for row in report["rows"]:
        cells = ""
        for prefix in ("", "cpu_"):
            times = row[f"{prefix}rounds"]
            spread = f"({min(times):.3f}-{max(times):.3f})"
            cells += f"{row[f'{prefix}s_per_mpx']:>9.3f} {spread:>15}{row[f'{prefix}ratio']:>6.2f}"
        print(f"{row['model']:<24}{row['asked']:<6}{row['precision']:<5}{cells}")
    if onednn["bf16"] is None and any(r["asked"] == "auto" and r["precision"] == "bf16"
                                      for r in report["rows"]):  # fmt: skip
        print(
            "note: auto chose bf16 from /proc/cpuinfo's flags, but oneDNN runs no bf16 "
            "convolution here; on a real CPU of this ISA auto runs fp32 (the fp32 rows)"
        )


# -- driver ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated names or files (default: texture-x<scale>,texture-x<scale>-fidelity)",
    )
    parser.add_argument("--scale", type=int, default=4, help="picks the default models")
    parser.add_argument("--baseline", default="", help="default: texture-x<scale>-fidelity")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=128, help="crops of size² input pixels")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument(
        "--isa", type=str.upper, default="", help="run under ONEDNN_MAX_CPU_ISA (e.g. AVX2)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/speed[-<isa>].json"
    )
    args = parser.parse_args(argv)
    default = [f"texture-x{args.scale}", f"texture-x{args.scale}-fidelity"]
    args.models = args.models.split(",") if args.models else default
    args.baseline = args.baseline or f"texture-x{args.scale}-fidelity"
    if args.baseline not in args.models:
        parser.error(f"--baseline {args.baseline} is not one of --models {','.join(args.models)}")
    if args.repeats < 1 or args.size < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--repeats, --size and --threads must be at least 1, --warmup at least 0")
    suffix = f"-{args.isa.lower()}" if args.isa else ""
    args.out = args.out or ROOT / "benchmarks" / "results" / f"speed{suffix}.json"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    wanted = isa_env(args.isa) if args.isa else {}
    if any(os.environ.get(name) != value for name, value in wanted.items()):
        # oneDNN and ATen read their ISA once: only a fresh process runs under the limit
        command = [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]
        sys.exit(subprocess.run(command, env={**os.environ, **wanted}).returncode)

    import torch

    from upscaler.engine.load import native_bf16

    torch.set_num_threads(args.threads)
    crops = load_crops(args.size)
    entries = [load_entry(m, asked, crops) for asked in PRECISIONS for m in args.models]
    rounds = measure(entries, args.repeats, args.warmup)
    isa = isa_check() | {"bf16_native_per_cpuinfo": native_bf16(torch.device("cpu"))}
    report: dict[str, object] = {
        "cpu": cpu_record(),
        "isa": isa,
        "torch": torch.__version__,
        "threads": args.threads,
        "size": args.size,
        "crops": [name for name, _ in crops],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "baseline": args.baseline,
        "rows": summarize(entries, rounds, args.baseline),
    }
    print_table(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
