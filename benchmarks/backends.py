"""Bare forward passes of a model in other CPU engines than eager PyTorch, and in int8.

    python benchmarks/backends.py                         # three models, native ISA and AVX2
    python benchmarks/backends.py --models texture-x4 --isas native --repeats 5
    taskset -c 1 python benchmarks/backends.py --models animevideov3,x4plus

Issue 24 asks whether another engine or int8 gets an AVX2 CPU to twice the peer's speed. Models:
``animevideov3`` and ``x4plus`` (Real-ESRGAN's, from ``../shared/peers``), our ``texture-x4``, or
a weights file. Candidates, each a bare forward (no tiling, no planning) at one thread:
- ``eager-fp32``: the module as ``read_model`` builds it, channels last (today's path on AVX2);
- ``ort-fp32``: ONNX Runtime's CPU EP on the model exported by ``training.export.export_onnx``
  (dynamic height and width, opset 17), every graph optimisation on;
- ``ov-fp32``: OpenVINO's CPU plugin on the same ONNX file, f32 precision hint, 1 stream;
- ``ort-int8``: ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8
  activations, MinMax calibration on centre crops of the validation textures in ``../shared/data``,
  or of the bundled samples without them);
- ``ov-int8``: OpenVINO on that QDQ file (its low-precision transformations run it in int8);
- ``torch-int8``: PyTorch's FX static quantisation with the ``x86`` backend (per-channel), same
  calibration; recorded as failed if the model does not trace.

Inputs: centre crops of the bundled samples (``samples/textures``), case ``64``: all five at 64²
(as ``benchmarks/speed.py`` uses them), case ``128``: the first at 128². Timing reuses
``speed.measure``: an untimed pass that keeps the outputs, then ``--repeats`` rounds, candidates
interleaved, order reversed every other round; reported: the median s per output Mpx (wall and
CPU clock) and the median of the rounds' ratios to ``eager-fp32``. Precision: every candidate's
8-bit output on those crops against ``eager-fp32``'s, as the precision rule reads it (PSNR, the
largest difference in levels, ``Fidelity.meets_rule``).

ISAs: each ``--isas`` entry runs in a fresh subprocess. ``AVX2`` sets ``speed.isa_env`` (oneDNN,
ATen, MKL) plus ``OV_CPU_MAX_ISA`` (OpenVINO's own kernels; its oneDNN fork reads
``ONEDNN_MAX_CPU_ISA``), and records what ran: oneDNN's probe (``speed.isa_check``) and the
primitive types of OpenVINO's convolutions. ONNX Runtime cannot be capped: MLAS picks its kernels
from cpuid and xgetbv when the library loads, with no variable or option to lower them, so its
rows exist under the native ISA only. fbgemm (``torch-int8``) also dispatches on cpuid: native only.

Writes ``benchmarks/results/backends.json``: the CPU record, versions, and per ISA the checks and
rows. Needs the ``backends`` extra (``pip install -e ".[backends]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import write_report  # noqa: E402  (after the path: the project's own)
from benchmarks.inference import MODELS, VAL  # noqa: E402
from benchmarks.machine import cpu_record  # noqa: E402
from benchmarks.speed import SAMPLES, Entry, isa_check, isa_env, load_crops, measure  # noqa: E402

CANDIDATES = ("eager-fp32", "ort-fp32", "ov-fp32", "ort-int8", "ov-int8", "torch-int8")
UNCAPPABLE = ("ort-fp32", "ort-int8", "torch-int8")  # dispatch on cpuid only (see the docstring)
CASES = {"64": (64, None), "128": (128, 1)}  # name: (side, how many samples; None: all)
EXTRA = ("onnxruntime", "openvino", "onnx")


def missing_extra() -> str | None:
    """One line naming the first package of the ``backends`` extra that is not installed."""
    import importlib.util

    for name in EXTRA:
        if importlib.util.find_spec(name) is None:
            return f"benchmarks/backends.py needs {name}: pip install -e '.[backends]'"
    return None


# -- models and files -----------------------------------------------------------------------------


def weights_of(model: str) -> str:
    """What ``read_model`` takes for ``model``: a peer's file, a shipped name, or a path."""
    source = MODELS.get(model)
    return str(source) if source is not None else model


def calibration(side: int = 64, count: int = 8) -> list[np.ndarray]:
    """``count`` ``(1, 3, side, side)`` float32 centre crops in ``[0, 1]``: validation textures
    (not the samples the precision is read on), or the samples when ``../shared`` is absent."""
    from PIL import Image

    paths = sorted(VAL.glob("*.png"))[:count] or sorted(SAMPLES.glob("*.png"))
    crops = []
    for path in paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        reps = (-(-side // rgb.shape[0]), -(-side // rgb.shape[1]), 1)
        rgb = np.tile(rgb, reps)
        top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        crop = rgb[top : top + side, left : left + side].transpose(2, 0, 1)[None]
        crops.append(np.ascontiguousarray(crop))
    return crops


def prepare(model: str, folder: Path) -> dict[str, str]:
    """The model's ONNX files in ``folder``: fp32 and its QDQ int8 quantisation."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from training.export import export_onnx
    from upscaler.models.loader import read_model

    module, info = read_model(weights_of(model))
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    export_onnx(module.eval(), fp32, in_channels=info.in_channels, opset=17)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.crops = iter(calibration())

        def get_next(self) -> dict[str, np.ndarray] | None:
            crop = next(self.crops, None)
            return None if crop is None else {"input": crop}

    quantize_static(
        str(fp32),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        # x4plus's activations take GBs per crop: fold every 3 into the ranges (not a divisor of
        # 8 or 5 crops: ORT 1.32 raises "No data is collected" when nothing is left at the end)
        extra_options={"CalibMaxIntermediateOutputs": 3},
    )
    return {"fp32": str(fp32), "int8": str(int8)}


# -- candidates: each a function from a (1, C, H, W) float32 array to the model's output ----------

Forward = Callable[[np.ndarray], np.ndarray]


def eager(model: str) -> Forward:
    import torch

    from upscaler.models.loader import read_model

    module = read_model(weights_of(model))[0].eval().to(memory_format=torch.channels_last)

    def forward(x: np.ndarray) -> np.ndarray:
        data = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return module(data).numpy()

    return forward


def onnxruntime_session(path: str) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def openvino_request(path: str, kernels: dict[str, list[str]], name: str) -> Forward:
    """OpenVINO on ``path``; ``kernels[name]``: its layers' primitive types (``layer:primitive``,
    the ISA in the primitive's name), once it has run."""
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": "1",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()

    def forward(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        if name not in kernels:  # known once a shape has run (the model has dynamic shapes)
            found = set()
            for op in compiled.get_runtime_model().get_ops():
                info = op.get_rt_info()
                rt = {key: info[key].astype(str) for key in info}
                if not rt.get("primitiveType", "unknown").startswith("unknown"):
                    found.add(f"{rt['layerType']}:{rt['primitiveType']}")
            kernels[name] = sorted(found)
        return request.get_output_tensor(0).data.copy()

    return forward


def torch_int8(model: str) -> Forward:
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from upscaler.models.loader import read_model

    torch.backends.quantized.engine = "x86"
    module = read_model(weights_of(model))[0].eval()
    example = (torch.from_numpy(calibration()[0]),)
    prepared = prepare_fx(module, get_default_qconfig_mapping("x86"), example)
    with torch.inference_mode():
        for crop in calibration():
            prepared(torch.from_numpy(crop))
    quantized = convert_fx(prepared)

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return quantized(torch.from_numpy(x)).numpy()

    return forward


def build(candidate: str, model: str, files: dict[str, str], kernels: dict) -> Forward:
    if candidate == "eager-fp32":
        return eager(model)
    if candidate == "torch-int8":
        return torch_int8(model)
    engine, precision = candidate.split("-")
    path = files[precision]
    if engine == "ort":
        return onnxruntime_session(path)
    return openvino_request(path, kernels, candidate)


# -- measurement ----------------------------------------------------------------------------------


def case_inputs(case: str) -> list[np.ndarray]:
    side, count = CASES[case]
    crops = load_crops(side)[:count]
    return [np.ascontiguousarray(x.float().div(255).numpy()) for _, x in crops]


def fidelity(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict[str, Any]:
    """PSNR and the largest difference of the 8-bit outputs against the reference's, and whether
    they meet the precision rule (``upscaler.models.descriptor``)."""
    import torch

    from upscaler.models.descriptor import Fidelity
    from upscaler.models.measurement import _levels, _psnr

    squared, count, worst = 0.0, 0, 0
    for out, ref in zip(outputs, reference, strict=True):
        if not np.isfinite(out).all():
            return {"psnr": 0.0, "max_levels": 255, "meets_rule": False}
        diff = (_levels(torch.from_numpy(out)) - _levels(torch.from_numpy(ref))).abs()
        squared += float(diff.double().square().sum())
        count += diff.numel()
        worst = max(worst, int(diff.max()))
    found = Fidelity(_psnr(squared, count), worst)
    return {"psnr": found.psnr, "max_levels": found.max_levels, "meets_rule": found.meets_rule()}


def runner(forward: Forward, inputs: Sequence[np.ndarray]) -> Callable[[], None]:
    """Every input through ``forward`` once: one timed run of a candidate."""

    def run() -> None:
        for x in inputs:
            forward(x)

    return run


def run_model(model: str, files: dict[str, str], args: argparse.Namespace) -> list[dict]:
    """Rows of one model under this process's ISA: per case and candidate, timings and precision."""
    kernels: dict[str, list[str]] = {}
    forwards: dict[str, Forward] = {}
    errors: dict[str, str] = {}
    for candidate in args.candidates:
        try:
            forwards[candidate] = build(candidate, model, files, kernels)
        except Exception as exc:  # a candidate that cannot run is a finding, not a crash
            lines = [line.strip() for line in f"{type(exc).__name__}: {exc}".splitlines()]
            errors[candidate] = " | ".join(line for line in lines if line)[:600]
    rows: list[dict] = []
    for case in args.cases:
        inputs = case_inputs(case)
        outputs = {name: [f(x) for x in inputs] for name, f in forwards.items()}  # and warm-up
        scale = outputs["eager-fp32"][0].shape[-1] // inputs[0].shape[-1]
        out_mpx = sum(x.shape[-2] * x.shape[-1] for x in inputs) * scale**2 / 1e6
        names = list(forwards)
        entries = [Entry(model, n, runner(forwards[n], inputs), n, out_mpx) for n in names]
        rounds = measure(entries, args.repeats, warmup=0)
        base = names.index("eager-fp32")
        for i, name in enumerate(names):
            row: dict[str, Any] = {"model": model, "case": case, "candidate": name}
            for clock, times in rounds.items():
                prefix = "" if clock == "wall" else f"{clock}_"
                own, ref = times[i], times[base]
                row[f"{prefix}s_per_mpx"] = statistics.median(own)
                row[f"{prefix}ratio"] = statistics.median(
                    t / b for t, b in zip(own, ref, strict=True)
                )
                row[f"{prefix}rounds"] = own
            row |= fidelity(outputs[name], outputs["eager-fp32"])
            row["kernels"] = kernels.get(name)
            rows.append(row)
        rows += [
            {"model": model, "case": case, "candidate": n, "error": e} for n, e in errors.items()
        ]
    return rows


def worker(args: argparse.Namespace) -> None:
    """One ISA, in this process: every model's rows into ``args.part`` (JSON)."""
    import torch

    torch.set_num_threads(1)
    files = json.loads(args.files)
    rows = [row for model in args.models for row in run_model(model, files[model], args)]
    check = isa_check() | {"OV_CPU_MAX_ISA": os.environ.get("OV_CPU_MAX_ISA")}
    report = {"isa": args.worker or "native", "check": check, "rows": rows}
    Path(args.part).write_text(json.dumps(report, indent=2) + "\n")


# -- driver ---------------------------------------------------------------------------------------


def print_table(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['isa']}); 1 thread; {report['repeats']} rounds, interleaved")
    print(f"{'isa':<7}{'model':<14}{'case':<5}{'candidate':<11}{'s/Mpx':>8}{'x eager':>9}"
          f"{'cpu x':>7}{'PSNR':>7}{'max':>5}  rule  kernels")  # fmt: skip
    for part in report["isas"]:
        for row in part["rows"]:
            head = f"{part['isa']:<7}{row['model'][:13]:<14}{row['case']:<5}{row['candidate']:<11}"
            if "error" in row:
                print(f"{head}failed: {row['error'][:80]}")
                continue
            rule = "pass" if row["meets_rule"] else "FAIL"
            convs = [
                k.partition(":")[2] for k in row["kernels"] or [] if k.startswith("Convolution:")
            ]
            wide = any("512" in k or "amx" in k for k in row["kernels"] or [])
            kernels = ",".join(convs) + (" (some AVX-512/AMX)" if wide and row["kernels"] else "")
            print(
                f"{head}{row['s_per_mpx']:>8.3f}{row['ratio']:>9.2f}{row['cpu_ratio']:>7.2f}"
                f"{row['psnr']:>7.1f}{row['max_levels']:>5}  {rule}  {kernels}"
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="animevideov3,x4plus,texture-x4")
    parser.add_argument("--isas", default="native,AVX2", help="comma-separated: native, AVX2")
    parser.add_argument("--cases", default="64,128", help=f"of {', '.join(CASES)}")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/backends.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # an ISA's subprocess
    parser.add_argument("--files", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--part", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.models, args.isas = args.models.split(","), args.isas.split(",")
    args.cases, args.candidates = args.cases.split(","), args.candidates.split(",")
    if unknown := [c for c in args.cases if c not in CASES]:
        parser.error(f"unknown case {unknown[0]!r} (cases: {', '.join(CASES)})")
    if unknown := [c for c in args.candidates if c not in CANDIDATES]:
        parser.error(f"unknown candidate {unknown[0]!r} (candidates: {', '.join(CANDIDATES)})")
    if "eager-fp32" not in args.candidates:
        parser.error("--candidates must include eager-fp32, the baseline")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if problem := missing_extra():
        sys.exit(problem)
    if args.worker is not None:
        return worker(args)
    for model in args.models:
        if model in MODELS and MODELS[model] is not None and not MODELS[model].is_file():
            sys.exit(f"benchmarks/backends.py: {model} needs {MODELS[model]} (../shared/peers)")
    import onnxruntime
    import openvino
    import torch

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for i, model in enumerate(args.models):
            (folder := Path(tmp) / str(i)).mkdir()
            files[model] = prepare(model, folder)
        for isa in args.isas:
            capped = isa.upper() != "NATIVE"
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            if capped:
                env |= isa_env(isa.upper()) | {"OV_CPU_MAX_ISA": isa.upper()}
            candidates = [c for c in args.candidates if not (capped and c in UNCAPPABLE)]
            part = Path(tmp) / f"{isa}.json"
            command = [sys.executable, __file__, "--worker", isa if capped else "", "--part",
                       str(part), "--files", json.dumps(files), "--models", ",".join(args.models),
                       "--cases", ",".join(args.cases), "--candidates", ",".join(candidates),
                       "--repeats", str(args.repeats)]  # fmt: skip
            if subprocess.run(command, env=env).returncode:
                sys.exit(f"benchmarks/backends.py: the {isa} run failed")
            parts.append(json.loads(part.read_text()))
    report = {
        "cpu": cpu_record(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__,
        },
        "threads": 1,
        "repeats": args.repeats,
        "calibration": "validation textures" if any(VAL.glob("*.png")) else "bundled samples",
        "not_capped": dict.fromkeys(UNCAPPABLE, "dispatches on cpuid, no cap"),
        "isas": parts,
    }
    print_table(report)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
