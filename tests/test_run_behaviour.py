"""Issue 11, the run itself: --skip-existing knows what made each output, resume state stays out
of the output tree, reporting never stops a batch, progress without a terminal, one-line errors
for bad options, environment and model metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels, write_compact
from PIL import Image

from benchmarks.faults.procs import environment, file_hashes
from upscaler.cli import main
from upscaler.models import Compact, CompactConfig


def _tree(root: Path, count: int = 3) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        Image.fromarray(make_pixels(10 + i, 8, 3, seed=i)).save(root / f"t{i}.png")
        names.append(f"t{i}.png")
    return names


def _invoke(*args: object, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def _statuses(report: Path) -> list[str]:
    return sorted(f["status"] for f in json.loads(report.read_text())["files"])


# -- MED 4: --skip-existing verifies what produced each output ---------------------------------


def test_skip_existing_redoes_outputs_of_another_model_or_options(
    tmp_path: Path, tiny_x2: Path
) -> None:
    _tree(tmp_path / "in")
    out, report = tmp_path / "out", tmp_path / "r.json"
    other = write_compact(tmp_path / "other-x2.safetensors", scale=2, seed=7)

    def run(*flags: object) -> list[str]:
        result = _invoke(
            tmp_path / "in", "-o", out, "-q", "--skip-existing", "--report", report, *flags
        )
        assert result.exit_code == 0, result.output
        return _statuses(report)

    assert run("-m", tiny_x2) == ["done"] * 3
    assert run("-m", tiny_x2) == ["skipped"] * 3
    assert run("-m", other) == ["done"] * 3  # another model: redone
    assert run("-m", other) == ["skipped"] * 3
    assert run("-m", other, "--seamless", "off") == ["done"] * 3  # an option that changes pixels
    assert run("-m", other, "--seamless", "off", "--png-level", "9") == ["skipped"] * 3


def test_skip_existing_redoes_a_same_size_corrupted_or_edited_input(
    tmp_path: Path, tiny_x2: Path
) -> None:
    _tree(tmp_path / "in")
    out, report = tmp_path / "out", tmp_path / "r.json"
    args = (tmp_path / "in", "-o", out, "-m", tiny_x2, "-q", "--skip-existing", "--report", report)
    assert _invoke(*args).exit_code == 0
    first = file_hashes(out)
    damaged = bytearray((out / "t1.png").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size, one byte changed
    (out / "t1.png").write_bytes(bytes(damaged))
    assert _invoke(*args).exit_code == 0
    assert _statuses(report) == ["done", "skipped", "skipped"] and file_hashes(out) == first
    Image.fromarray(make_pixels(10, 8, 3, seed=9)).save(tmp_path / "in" / "t0.png")  # edited
    os.utime(tmp_path / "in" / "t0.png", ns=(1, 1))
    assert _invoke(*args).exit_code == 0
    assert _statuses(report) == ["done", "skipped", "skipped"]


def test_skip_existing_redoes_an_input_edited_in_place_with_its_mtime_restored(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """As ``cp -p``, ``tar``, ``rsync -t`` and unzip leave it: same size, same mtime, new pixels."""
    (tmp_path / "in").mkdir()
    for i in range(2):  # uncompressed TGA: one texel edited keeps the size
        Image.fromarray(make_pixels(10, 8, 3, seed=i)).save(tmp_path / "in" / f"t{i}.tga")
    out, report = tmp_path / "out", tmp_path / "r.json"
    args = (tmp_path / "in", "-o", out, "-m", tiny_x2, "-q", "--skip-existing", "--report", report)
    assert _invoke(*args).exit_code == 0
    before = (out / "t0.tga").read_bytes()
    source = tmp_path / "in" / "t0.tga"
    info = source.stat()
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    source.write_bytes(bytes(data))
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert source.stat().st_size == info.st_size and source.stat().st_mtime_ns == info.st_mtime_ns
    assert _invoke(*args).exit_code == 0
    assert _statuses(report) == ["done", "skipped"]
    assert (out / "t0.tga").read_bytes() != before
    os.utime(source)  # touched only: the content decides, so nothing to redo
    assert _invoke(*args).exit_code == 0
    assert _statuses(report) == ["skipped", "skipped"]


def test_resume_state_lives_outside_the_output_tree(
    tmp_path: Path, tiny_x2: Path, _state_dir: Path
) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".upscale-done.jsonl").write_text('{"target": "old"}\n')  # left by an older version
    assert _invoke(tmp_path / "in", "-o", out, "-m", tiny_x2, "-q").exit_code == 0
    assert sorted(p.name for p in out.rglob("*")) == ["t0.png", "t1.png", "t2.png"]
    states = list(_state_dir.glob("out-*.jsonl"))
    assert len(states) == 1 and len(states[0].read_text().splitlines()) == 3


def test_an_unwritable_state_folder_costs_only_the_resume(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "file").write_text("not a folder")
    env = {"UPSCALE_STATE_DIR": str(tmp_path / "file" / "state")}
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "-q", env=env)
    assert result.exit_code == 0 and "resume state not saved" in result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


# -- MED 11: reporting never takes the batch down ----------------------------------------------


@pytest.mark.parametrize("how", ["2>&-", "2>&- 1>&-"])
def test_a_closed_stderr_does_not_stop_the_batch(tmp_path: Path, tiny_x2: Path, how: str) -> None:
    names = _tree(tmp_path / "in", 4)
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    command = f'exec "$@" {how}'
    args = [sys.executable, "-m", "upscaler", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    proc = subprocess.run(
        ["bash", "-c", command, "upscale", *args, "-m", str(tiny_x2)],
        env=environment(),
        timeout=300,
        capture_output="1>&-" not in how,
    )
    assert proc.returncode == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names


def test_a_reporting_callback_that_raises_is_switched_off(tmp_path: Path, tiny_x2: Path) -> None:
    from upscaler.engine.load import load_model
    from upscaler.plan import RunOptions, make_plan
    from upscaler.runner import Runner
    from upscaler.worklist import build_worklist

    _tree(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    jobs = build_worklist([tmp_path / "in"], tmp_path / "out").jobs
    calls = []

    def broken(result: object) -> None:
        calls.append(result)
        raise BrokenPipeError(32, "Broken pipe")

    model = load_model(tiny_x2)
    runner = Runner(model, make_plan(jobs, model, RunOptions(tmp_path / "out")), broken)
    results = runner.run()
    assert len(calls) == 1 and "BrokenPipeError" in (runner.reporting_error or "")
    assert sorted(r.status for r in results) == ["done", "done", "done", "failed"]


# -- progress without a terminal ---------------------------------------------------------------


def test_without_a_terminal_a_progress_line_comes_every_few_seconds(
    tmp_path: Path, tiny_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upscaler import console

    _tree(tmp_path / "in", 4)
    monkeypatch.setattr(console, "PROGRESS_EVERY_S", 0.0)  # every file, for the test
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "--batch", "1")
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("upscaling: ")]
    assert [ln.split(",")[0] for ln in lines] == [f"upscaling: {i}/4 files" for i in range(1, 5)]
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    quiet = _invoke(tmp_path / "in", "-o", tmp_path / "o2", "-m", tiny_x2, "-q")
    assert "upscaling: " not in quiet.stderr


def test_time_left_weighs_files_by_pixels_not_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three small textures took 3 s; the one left has 16 times their pixels together."""
    from upscaler import console

    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    progress = console.Progress(console.Console(), total=5, quiet=True)
    progress.update(failed=True, target="")  # unreadable: failed while planning, no work
    clock[0] += 2.0  # reading headers: not work
    work = {"a.png": 1024, "b.png": 1024, "c.png": 1024, "big.dds": 49152}
    progress.plan(work)
    assert progress.seconds_left(clock[0] + 1) is None  # nothing done yet: no guess
    for name in ("a.png", "b.png", "c.png"):
        clock[0] += 1.0
        progress.update(target=name)
    assert progress.describe(clock[0]).endswith(", 5 s, about 48 s left")  # by files: 1 s
    clock[0] += 30.0
    progress.update(target="big.dds")
    assert progress.seconds_left(clock[0]) is None and "left" not in progress.describe(clock[0])


def test_the_runner_plans_input_pixels_times_scale_squared(tmp_path: Path, tiny_x2: Path) -> None:
    from upscaler.engine.load import load_model
    from upscaler.plan import RunOptions, make_plan
    from upscaler.runner import Runner
    from upscaler.worklist import build_worklist

    _tree(tmp_path / "in", 3)  # 10x8, 11x8, 12x8
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    jobs = build_worklist([tmp_path / "in"], tmp_path / "out").jobs
    plans: list[dict[str, int]] = []
    model = load_model(tiny_x2)
    options = RunOptions(tmp_path / "out", skip_existing=True)
    Runner(model, make_plan(jobs, model, options), on_plan=plans.append).run()
    out = tmp_path / "out"
    assert plans == [{str(out / f"t{i}.png"): (10 + i) * 8 * 4 for i in range(3)}]
    Image.fromarray(make_pixels(20, 8, 3)).save(tmp_path / "in" / "t0.png")  # changed: redone
    Runner(model, make_plan(jobs, model, options), on_plan=plans.append).run()
    assert plans[1] == {str(out / "t0.png"): 20 * 8 * 4}  # the finished ones are no work


# -- LOW: one clear line for bad options, environment and model files --------------------------


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--scale", "3"], {}, "no shipped x3 model (shipped scales: [2, 4])"),
        (["--device", "bogus"], {}, "'bogus': use auto, cpu, cuda, cuda:N or mps"),
        (["--device", "meta"], {}, "'meta': use auto, cpu, cuda, cuda:N or mps"),
        (["--device", "cuda:99"], {}, "--device"),
        ([], {"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' (set by torchrun) is not a whole number"),
        ([], {"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    _tree(tmp_path / "in", 1)
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", *args, env=env)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_rules_pattern_that_is_no_glob_is_a_usage_error(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in", 1)
    (tmp_path / "rules.toml").write_text('["[z-a].png"]\nmap = "data"\n')
    result = _invoke(
        tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "--rules", tmp_path / "rules.toml"
    )
    assert result.exit_code == 2
    assert "rule ['[z-a].png']: pattern '[z-a].png' is not a valid glob" in result.output


def test_model_metadata_with_wrong_types_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = Compact(CompactConfig(num_features=8, num_blocks=2, scale=2))
    config = '{"num_features": 8.0, "num_blocks": 2, "scale": 2}'
    path = tmp_path / "float-config.safetensors"
    save_file(
        model.state_dict(),
        str(path),
        metadata={"upscaler.arch": "compact", "upscaler.config": config},
    )
    _tree(tmp_path / "in", 1)
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", path)
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "model refused" in result.output and "num_features must be int, got 8.0" in result.output


def test_fp8_weights_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = CompactConfig(num_features=8, num_blocks=2, scale=2)
    weights = {k: v.to(torch.float8_e4m3fn) for k, v in Compact(config).state_dict().items()}
    path = tmp_path / "fp8.safetensors"
    meta = {
        "upscaler.arch": "compact",
        "upscaler.config": '{"num_features": 8, "num_blocks": 2, "scale": 2}',
    }
    save_file(weights, str(path), metadata=meta)
    save_file(weights, str(tmp_path / "fp8-bare.safetensors"))
    _tree(tmp_path / "in", 1)
    for model in (path, tmp_path / "fp8-bare.safetensors"):
        result = _invoke(tmp_path / "in", "-o", tmp_path / model.stem, "-m", model, "-q")
        assert result.exit_code == 0, result.output
