"""The precision rule's inputs per model: its bf16 and fp16 output against fp32's on the probe.

    python benchmarks/precision.py                       # shipped models, ../shared peers
    python benchmarks/precision.py --models texture-x4 --formats bf16

For each model and format, on this CPU: the PSNR (dB) of the 8-bit output of the five bundled
probe samples against fp32's and the largest level difference, measured whole (the contract
stops at the first sample that breaks the rule), and whether it meets the rule that
``--precision auto`` applies on every device (``descriptor.Fidelity.meets_rule``). Writes
``benchmarks/results/precision.json`` with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import shipped_and_peers, write_report  # noqa: E402
from benchmarks.machine import cpu_record  # noqa: E402

PEER_FILES = (
    "realesr-animevideov3-x4.safetensors",
    "RealESRGAN_x4plus.safetensors",
    "spanx4_ch48.safetensors",
)


def measure(model: str, formats: list[str]) -> dict[str, object]:
    import torch

    from upscaler.models.descriptor import MAX_LEVELS, MIN_PSNR
    from upscaler.models.input_layer import reduced_copy
    from upscaler.models.loader import read_model
    from upscaler.models.measurement import fidelity
    from upscaler.models.span import fused_for_inference

    module, info = read_model(model)
    module = fused_for_inference(module.eval())  # as the engine runs it
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    reduced = {dtypes[f]: reduced_copy(module, dtypes[f], info.float32_layers) for f in formats}
    start = time.perf_counter()
    float_input = info.float_input or bool(info.input_layer)
    found = fidelity(
        module, reduced, info.in_channels, info.size_multiple, float_input, stop_early=False
    )
    row: dict[str, object] = {"model": Path(model).stem, "seconds": time.perf_counter() - start}
    for name in formats:
        f = found[dtypes[name]]
        row[name] = {"psnr": f.psnr, "max_levels": f.max_levels, "meets_rule": f.meets_rule()}
    row["rule"] = {"min_psnr": MIN_PSNR, "max_levels": MAX_LEVELS}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated (default: see above)")
    parser.add_argument("--formats", default="bf16,fp16")
    parser.add_argument("--out", default="benchmarks/results/precision.json")
    args = parser.parse_args()
    models = [str(path) for _, path in shipped_and_peers(PEER_FILES)]
    models = args.models.split(",") if args.models else models
    rows = []
    for model in models:
        rows.append(measure(model, args.formats.split(",")))
        print(json.dumps(rows[-1]), flush=True)
    write_report(Path(args.out), {"cpu": cpu_record(), "models": rows})


if __name__ == "__main__":
    main()
