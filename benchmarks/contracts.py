"""Measure the shipped models (and the peers' files beside them) once, for the package to ship.

    python benchmarks/contracts.py            # writes upscaler/models/measured.json
    python benchmarks/contracts.py --check    # measures again and compares; exit 1 on a change

A model file's first use measures its contract on the CPU (``upscaler.models.measurement``:
effective radius, memory per pixel, bf16 fidelity, the layers kept float32): 3-10 s for
texture-x4, 14 s for RealESRGAN_x4plus. ``upscaler/models/measured.json`` ships those
measurements for the files this project ships or names (the shipped models; the peers in
``../shared/peers``, where present), by SHA-256, so a user's first run starts at once. This
script writes it, with the CPU and torch it was measured on. ``--check`` measures every file
again and compares: the counts (radius, bytes) and the layers kept float32 must be equal, and
each format's PSNR within ``--tolerance`` dB, or both broken (255 levels off): another CPU's
bf16 kernels round a little differently, so a model near the rule may fall on the other side of
it there, which the check reports only past the tolerance. The shipped figures are used on CPUs
only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import shipped_and_peers, write_report  # noqa: E402
from benchmarks.machine import cpu_record  # noqa: E402

PEER_FILES = (
    "realesr-animevideov3-x4.safetensors",
    "RealESRGAN_x4plus.safetensors",
    "spanx4_ch48.safetensors",
    "spanx2_ch48.safetensors",
    "4xSPANkendata.safetensors",
)


def measure_afresh(path: Path) -> Any:
    """``path``'s measurement, made now: neither the shipped file nor the user's cache read."""
    from upscaler.models import loader

    seen = []

    def fresh(_path: Path, _fp16: bool, compute: Any) -> Any:
        seen.append(compute())
        return seen[-1]

    original = loader.measured_file
    loader.measured_file = fresh  # type: ignore[assignment]
    try:
        loader.read_model(path)
    finally:
        loader.measured_file = original
    return seen[0]


def compare(name: str, shipped: dict[str, Any], now: dict[str, Any], tolerance: float) -> list[str]:
    from upscaler.models.descriptor import Fidelity

    problems = []
    for key in ("receptive_field", "wrap_field", "bytes_per_pixel", "bf16_bytes_per_pixel"):
        if shipped[key] != now[key]:
            problems.append(f"{name}: {key} {shipped[key]} shipped, {now[key]} now")
    for fmt in ("bf16", "fp16"):
        was = Fidelity(shipped[f"{fmt}_psnr"], shipped[f"{fmt}_max_levels"])
        got = Fidelity(now[f"{fmt}_psnr"], now[f"{fmt}_max_levels"])
        # Far on either side of the rule, a format fails the same way on every CPU (255 levels,
        # a few dB); near it, another CPU's kernels round a little differently.
        broken = {was.max_levels == 255, got.max_levels == 255}
        if len(broken) > 1 or (broken == {False} and abs(was.psnr - got.psnr) > tolerance):
            problems.append(f"{name}: {fmt} shipped {was}, now {got}")
    for key in ("input_layer", "float32_block", "output_layer"):
        if shipped[key] != now[key]:
            problems.append(f"{name}: {key} {shipped[key]!r} shipped, {now[key]!r} now")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--tolerance", type=float, default=1.0, help="dB (--check)")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's file")
    args = parser.parse_args(argv)

    import torch

    from upscaler.models.known import file_sha256
    from upscaler.models.measurement_cache import SHIPPED_MEASUREMENTS

    torch.set_num_threads(1)
    out = args.out or SHIPPED_MEASUREMENTS
    if args.check:
        shipped = {e["sha256"]: e for e in json.loads(out.read_text())["models"]}
        problems = []
        for name, path in shipped_and_peers(PEER_FILES):
            entry = shipped.get(file_sha256(path))
            if entry is None:
                problems.append(f"{name}: {path.name} is not in {out.name}")
                continue
            now = asdict(measure_afresh(path))
            problems += compare(name, entry["measured"], now, args.tolerance)
            print(f"{name}: checked")
        for line in problems:
            print(line)
        return 1 if problems else 0
    models = []
    for name, path in shipped_and_peers(PEER_FILES):
        measured = measure_afresh(path)
        models.append({"name": name, "sha256": file_sha256(path), "measured": asdict(measured)})
        print(f"{name}: bf16 {measured.fidelity(torch.bfloat16)}")
    record = {"cpu": cpu_record(), "torch": torch.__version__, "models": models}
    write_report(out, record, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
