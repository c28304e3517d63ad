"""The README's benchmark commands start: each script imports the project, not a namesake.

``benchmarks/training.py`` sits beside the other scripts, and a script's own folder comes first
on ``sys.path``: a script that does not put the project root before it imports this file as
``training``. ``--help`` is enough to run every import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py")


def _script(name: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<name>`` with ``args`` from the repository root, as the README does."""
    return subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": "."},
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script: str, tmp_path: Path) -> None:
    proc = _script(script, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()


def test_inference_benchmark_without_shared_says_so_in_one_line(tmp_path: Path) -> None:
    """A clone with nothing beside it: the script, copied into such a clone, names the missing
    weights in one line and exits non-zero; the shipped model needs nothing from ../shared."""
    clone = tmp_path / "clone"
    (clone / "benchmarks").mkdir(parents=True)
    script = clone / "benchmarks" / "inference.py"
    script.write_bytes((ROOT / "benchmarks" / "inference.py").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for models, missing in (
        ("x4plus", "RealESRGAN_x4plus.safetensors"),
        ("texture-x4,animevideov3", "realesr-animevideov3-x4.safetensors"),
    ):
        proc = subprocess.run(
            [sys.executable, str(script), "--models", models, "--out", str(tmp_path / "r.json")],
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert str(tmp_path / "shared" / "peers" / missing) in proc.stderr
        assert "--models texture-x4" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def _gpu_benchmark(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/gpu.py`` as a user does, writing its JSON to ``out``."""
    proc = _script("gpu.py", *args, "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_gpu_benchmark_dry_run_checks_the_plumbing_on_cpu(tmp_path: Path) -> None:
    """One tiny model, one small image, on CPU: three ``upscale`` runs compared, speed timed,
    a JSON that names the CPU."""
    out = tmp_path / "gpu.json"
    proc = _gpu_benchmark(out, "--dry-run")
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    assert report["cpu"]["isa"] and report["cpu"]["model"]
    (row,) = report["models"]
    assert row["model"] == "tiny-x2" and row["auto_meets_rule"] and row["fp32_close"]
    assert row["fp32"]["max_levels"] == 0  # the same command on the same CPU
    assert row["mp_per_s"] > 0 and row["cost_vs_bare"] > 0 and row["tflop_per_s"] > 0
    assert row["fraction_of_peak"] == "unknown"  # no peak known for a CPU
    assert "meets the rule" in proc.stdout


def test_the_gpu_peak_table_finds_the_most_specific_name() -> None:
    from benchmarks.gpu import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA GeForce RTX 3090") == 71.0
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ("fpu sse2 avx avx2 fma", "AVX2"),
        ("avx2 avx512f avx512bw", "AVX-512"),
        ("avx2 avx512f avx512_bf16", "AVX512-BF16"),
        ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
        ("fpu sse2 sse4_2", "below AVX2"),
    ],
)
def test_benchmarks_name_the_cpu_and_its_isa_level(flags: str, isa: str) -> None:
    from benchmarks.machine import cpu_record

    text = f"processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    record = cpu_record(text)
    assert record["model"] == "AMD EPYC 7B13" and record["isa"] == isa
    assert cpu_record("")["isa"] == "unknown"  # no /proc/cpuinfo: said, not guessed


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_benchmark_on_cuda_meets_the_rule(tmp_path: Path) -> None:
    """The CUDA path end to end on the shipped x2 model: auto's output within the precision rule
    of CPU fp32's, fp32's within a level."""
    out = tmp_path / "gpu.json"
    _gpu_benchmark(out, "--models", "texture-x2")
    (row,) = json.loads(out.read_text())["models"]
    assert row["auto_meets_rule"] and row["fp32_close"] and row["precision"] != "float32"


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("quality.py", ["--val"]),
        ("bcn.py", ["--model", "none", "--data"]),
        ("maps.py", ["--model", "texture-x4", "--data"]),
        ("figures.py", ["--model", "texture-x4", "--data"]),
    ],
)
def test_benchmarks_without_their_data_say_so_in_one_line(
    script: str, args: list[str], tmp_path: Path
) -> None:
    """Without ../shared (or with a data folder that is not there) a benchmark names the folder
    and where such data comes from in one line, exit 2, no traceback."""
    missing = tmp_path / "shared" / "data" / "textures" / "val"
    proc = _script(script, *args, str(missing))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and str(missing) in proc.stderr
    assert "../shared/data" in proc.stderr


def test_speed_benchmark_interleaves_models_and_writes_its_json(
    tiny_x4: Path, tmp_path: Path
) -> None:
    """Two tiny models on tiny crops of the samples, one round, under ``--isa AVX2`` (the script
    runs itself again with the limit set): a row per model and precision with its s/Mpx and its
    ratio to the baseline, and the JSON says what oneDNN and ATen ran."""
    from helpers import write_compact

    wide = write_compact(tmp_path / "wide-x4.safetensors", num_features=16, seed=1)
    out = tmp_path / "speed.json"
    models = f"{tiny_x4},{wide}"
    proc = _script(
        "speed.py",
        *("--models", models, "--baseline", str(wide), "--size", "12", "--repeats", "1"),
        *("--warmup", "0", "--isa", "avx2", "--out", str(out)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cpu"]["model"] and report["cpu"]["isa"] and report["cpu"]["flags"] is not None
    assert (report["threads"], report["size"], report["repeats"]) == (1, 12, 1)
    assert len(report["crops"]) == len(list((ROOT / "samples" / "textures").glob("*.png")))
    rows = {(r["model"], r["asked"]): r for r in report["rows"]}
    assert set(rows) == {(m, a) for m in (str(tiny_x4), str(wide)) for a in ("auto", "fp32")}
    for (model, asked), row in rows.items():
        assert row["precision"] in (("fp32",) if asked == "fp32" else ("fp32", "bf16"))
        for clock in ("", "cpu_"):  # wall and CPU time
            assert row[f"{clock}s_per_mpx"] > 0 and len(row[f"{clock}rounds"]) == 1
            base = rows[(str(wide), asked)][f"{clock}rounds"][0]
            same_round = row[f"{clock}rounds"][0] / base
            assert row[f"{clock}ratio"] == pytest.approx(1.0 if model == str(wide) else same_round)
    isa = report["isa"]
    assert isa["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and isa["aten"] != "AVX512"
    assert not any("512" in str(v) or "AMX" in str(v) for v in isa["onednn"].values())
    assert str(wide) in proc.stdout and "s/Mpx" in proc.stdout


def test_speed_benchmark_reads_what_onednn_ran() -> None:
    from benchmarks.speed import isa_env, parse_onednn_log

    log = (
        "probe float32\n"
        "onednn_verbose,v1,info,cpu,isa:Intel AVX2\n"
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:blk,undef,src:f32\n"
        "onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training\n"
        "probe bfloat16\n"
    )
    assert parse_onednn_log(log) == {"isa": "Intel AVX2", "fp32": "brg_conv_fwd:avx2", "bf16": None}
    assert isa_env("AVX2")["ATEN_CPU_CAPABILITY"] == "avx2"
    assert isa_env("AVX512_CORE") == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}


def test_quality_table_says_when_the_truth_has_no_steps_off_the_grid() -> None:
    # Warzone's tile pages are pixel art stored point-sampled up: at x2 the truth has no step
    # inside a texel, and its grid ratio is a division by almost nothing.
    from benchmarks.quality import ratio_cell

    assert ratio_cell(9.7e10) == "> 1000"
    assert ratio_cell(2.32) == "2.32"


def test_backends_benchmark_times_engines_against_eager_and_caps_openvino(
    tiny_x4: Path, tmp_path: Path
) -> None:
    """A tiny model, the five 64² crops, one round, native and under the AVX2 cap: each engine's
    s/Mpx, its same-round ratio to eager fp32 and its precision against it; under the cap ONNX
    Runtime (which cannot be capped) has no rows and OpenVINO ran no AVX-512 kernel."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    out = tmp_path / "backends.json"
    candidates = "eager-fp32,ort-fp32,ov-fp32,ort-int8"
    proc = _script(
        "backends.py",
        *("--models", str(tiny_x4), "--cases", "64", "--candidates", candidates),
        *("--repeats", "1", "--out", str(out)),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cpu"]["model"] and report["cpu"]["isa"] and report["repeats"] == 1
    native, avx2 = report["isas"]
    assert (native["isa"], avx2["isa"]) == ("native", "AVX2")
    assert [r["candidate"] for r in native["rows"]] == candidates.split(",")
    assert [r["candidate"] for r in avx2["rows"]] == ["eager-fp32", "ov-fp32"]
    for row in native["rows"] + avx2["rows"]:
        assert row["s_per_mpx"] > 0 and len(row["rounds"]) == 1
        if row["candidate"] == "eager-fp32":
            assert row["ratio"] == 1.0 and row["psnr"] == 99.0 and row["max_levels"] == 0
        elif row["candidate"].endswith("fp32"):  # the same maths in another engine
            assert row["psnr"] > 60 and row["max_levels"] <= 2 and row["meets_rule"]
        else:  # int8: some error, still finite
            assert 20 < row["psnr"] < 99 and row["max_levels"] > 0
    assert avx2["check"]["onednn"]["isa"] == "Intel AVX2" and avx2["check"]["OV_CPU_MAX_ISA"]
    (ov_kernels,) = [r["kernels"] for r in avx2["rows"] if r["candidate"] == "ov-fp32"]
    assert ov_kernels and not any("512" in k or "amx" in k for k in ov_kernels)
    assert "ort-int8" in proc.stdout and "written" in proc.stdout


def test_backends_benchmark_without_its_extra_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from benchmarks.backends import missing_extra

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert missing_extra() == (
        "benchmarks/backends.py needs onnxruntime: pip install -e '.[backends]'"
    )
