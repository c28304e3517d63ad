"""The ``upscale`` command end to end, on real files in a folder tree."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_pixels, write_compact
from PIL import Image

from upscaler.cli import main


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """A small texture tree in several formats and modes; returns name -> (h, w, mode)."""
    (root / "env" / "rock").mkdir(parents=True)
    (root / "ui").mkdir()
    files = {
        "env/rock/albedo.png": (17, 11, "RGB"),
        "env/rock/mask.tga": (12, 20, "L"),
        "env/leaf.png": (16, 16, "RGBA"),
        "ui/icon.png": (9, 13, "LA"),
        "ui/photo.jpg": (24, 16, "RGB"),
    }
    for seed, (name, (h, w, mode)) in enumerate(files.items()):
        c = len(mode)
        pixels = make_pixels(h, w, c, seed=seed)
        Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, mode=mode).save(root / name)
    return files


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _invoke(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_mirrors_tree_keeps_format_mode_and_never_touches_inputs(
    tmp_path: Path, tiny_x4: Path
) -> None:
    files = _tree(tmp_path / "in")
    before = _hashes(tmp_path / "in")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x4, "-q")
    assert result.exit_code == 0, result.output
    for name, (h, w, mode) in files.items():
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size == (w * 4, h * 4) and im.mode == mode, name
            assert im.format == {".png": "PNG", ".tga": "TGA", ".jpg": "JPEG"}[Path(name).suffix]
    assert _hashes(tmp_path / "in") == before


@pytest.mark.parametrize(
    ("flags", "factor"),
    [(["--native"], 1), (["--output-scale", "2"], 2), (["--output-scale", "0.5"], 0.5)],
)
def test_native_and_output_scale_sizes(
    tmp_path: Path, tiny_x4: Path, flags: list[str], factor: float
) -> None:
    files = _tree(tmp_path / "in")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x4, "-q", *flags)
    assert result.exit_code == 0, result.output
    for name, (h, w, _) in files.items():
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size == (max(1, round(w * factor)), max(1, round(h * factor)))


def test_single_file_lands_directly_in_output(tmp_path: Path, tiny_x2: Path) -> None:
    Image.fromarray(make_pixels(10, 6, 4), "RGBA").save(tmp_path / "a.tga")
    result = _invoke(tmp_path / "a.tga", "-o", tmp_path / "out", "--model", tiny_x2, "-q")
    assert result.exit_code == 0
    with Image.open(tmp_path / "out" / "a.tga") as im:
        assert im.size == (12, 20) and im.mode == "RGBA"


def test_format_conversion_and_collisions(tmp_path: Path, tiny_x2: Path) -> None:
    Image.fromarray(make_pixels(8, 8, 3)).save(tmp_path / "a.tga")
    Image.fromarray(make_pixels(8, 8, 3)).save(tmp_path / "a.png")
    result = _invoke(
        tmp_path, "-o", tmp_path.parent / "conv", "--model", tiny_x2, "--format", "png"
    )
    assert result.exit_code == 2 and "would both be written" in result.output
    assert not (tmp_path.parent / "conv").exists()
    (tmp_path / "a.png").unlink()
    result = _invoke(
        tmp_path, "-o", tmp_path.parent / "conv", "--model", tiny_x2, "--format", "png"
    )
    assert result.exit_code == 0 and (tmp_path.parent / "conv" / "a.png").is_file()


def test_output_inside_input_is_never_re_entered(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "in" / "upscaled"
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 0
    result = _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "--dry-run")
    assert "upscaled/upscaled" not in result.output and "5 files planned" in result.output
    assert _invoke(tmp_path / "in", "-o", tmp_path / "in", "--model", tiny_x2).exit_code == 2


def test_skip_existing_redoes_incomplete_outputs(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    out = tmp_path / "out"
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 0
    first = _hashes(out)
    truncated = out / "env" / "leaf.png"
    truncated.write_bytes(truncated.read_bytes()[:100])  # as if written by a crashed tool
    report = tmp_path / "r.json"
    result = _invoke(
        tmp_path / "in", "-o", out, "--model", tiny_x2, "-q", "--skip-existing", "--report", report
    )
    assert result.exit_code == 0
    data = json.loads(report.read_text())
    status = {Path(f["source"]).name: f["status"] for f in data["files"]}
    assert status["leaf.png"] == "done"
    assert sorted(status.values()).count("skipped") == 4
    assert _hashes(out) == first


def test_dry_run_writes_nothing(tmp_path: Path, tiny_x4: Path) -> None:
    _tree(tmp_path / "in")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x4, "--dry-run")
    assert result.exit_code == 0 and "(11x17 -> 44x68)" in result.output
    assert not (tmp_path / "out").exists()


def test_report_and_exit_code_with_a_bad_file(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "in" / "ui" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = tmp_path / "report.json"
    result = _invoke(
        tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--report", report
    )
    assert result.exit_code == 1
    data = json.loads(report.read_text())
    assert data["summary"]["done"] == 5 and data["summary"]["failed"] == 1
    failed = [f for f in data["files"] if f["status"] == "failed"]
    assert failed[0]["source"].endswith("broken.png") and failed[0]["reason"]
    assert not (tmp_path / "out" / "ui" / "broken.png").exists()


def test_refused_model_is_fatal(tmp_path: Path) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "m.pth").write_bytes(b"not a model")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tmp_path / "m.pth")
    assert result.exit_code == 3 and "model refused" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_fatal(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "ro").mkdir(mode=0o500)
    result = _invoke(tmp_path / "in", "-o", tmp_path / "ro" / "out", "--model", tiny_x2)
    assert result.exit_code == 3


def test_unwritable_output_root_is_fatal_even_as_root(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "file" / "out", "--model", tiny_x2)
    assert result.exit_code == 3 and "not writable" in result.output


def test_shards_split_the_work(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    for k in (1, 2):
        result = _invoke(
            tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--shard", f"{k}/2"
        )
        assert result.exit_code == 0
        written = [p for p in (tmp_path / "out").rglob("*.*") if "jsonl" not in p.name]
        assert len(written) == (3 if k == 1 else 5)


def test_scale_selects_and_checks_the_model(tmp_path: Path, tiny_x2: Path) -> None:
    _tree(tmp_path / "in")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "--scale", "4")
    assert result.exit_code == 2 and "x2" in result.output


def test_sharp_picks_the_shipped_gan_model_and_says_what_is_missing(tmp_path: Path) -> None:
    """``--sharp`` uses texture-x4-sharp; there is no x2 sharp model, and it cannot go with
    ``--model`` (one line each, nothing written)."""
    (tmp_path / "in").mkdir()
    Image.fromarray(make_pixels(8, 12, 3, seed=5)).save(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    result = _invoke(tmp_path / "in", "-o", out, "--sharp", "--dry-run")
    assert result.exit_code == 0 and "model: texture-x4-sharp (x4, " in result.output, result.output
    result = _invoke(tmp_path / "in", "-o", out, "--sharp", "--scale", "2")
    assert result.exit_code == 2 and "no shipped sharp x2 model (sharp models: x4)" in result.output
    result = _invoke(tmp_path / "in", "-o", out, "--sharp", "--model", "texture-x4")
    assert result.exit_code == 2 and "cannot go with --model" in result.output
    assert not out.exists()


def test_list_models() -> None:
    result = _invoke("--list-models")
    assert result.exit_code == 0 and "texture-x4" in result.output


def test_real_subprocess_run_with_a_corrupt_file(tmp_path: Path) -> None:
    """The installed command, as a user runs it: one corrupt file fails, the rest are done."""
    model = write_compact(tmp_path / "m.safetensors", scale=2)
    files = _tree(tmp_path / "in")
    (tmp_path / "in" / "env" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    command = [
        sys.executable,
        "-m",
        "upscaler",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(model),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "corrupt.png" in proc.stderr and "1 failed" in proc.stderr
    for name in files:
        assert (tmp_path / "out" / name).is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give INPUTS (the texture files or folders to upscale) and -o OUTPUT"),
        (["-o", "out"], "give INPUTS (the texture files or folders to upscale):"),
        (["in"], "give -o OUTPUT (the folder to write the results into):"),
        (["", "-o", "out"], "an empty path would mean the working folder"),
        (["in", "-o", ""], "an empty path would mean the working folder"),
    ],
)
def test_a_run_without_inputs_or_output_says_what_to_give(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_x2: Path
) -> None:
    """Neither the inputs nor -o fall back to the working folder: nothing is read or written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    Image.fromarray(make_pixels(6, 8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(make_pixels(6, 8)).save(tmp_path / "b.png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = _invoke(*args, "--model", tiny_x2, "-q")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
