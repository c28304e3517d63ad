"""The drill of the hardening issue: each path a run writes (``upscale``'s output folder, report,
review page and resume state; ``upscale-review``'s page) placed on each path it reads (an input
file, the input folder, the model file, the rules file, the report), and nothing read changes: the
command ends with exit 2 and one error line naming the path, before anything is written."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image

from upscaler.cli import main
from upscaler.review.command import main as review_main

WEIGHTS = Path(__file__).parents[1] / "upscaler" / "models" / "weights"
MODEL = WEIGHTS / "texture-x4-fidelity.safetensors"  # the compact shipped network: fast
READS = ("input file", "input folder", "model file", "rules file")
WRITES = ("output folder", "report", "review page", "state folder")


@dataclass(frozen=True)
class Run:
    """One run's read paths, in a fresh folder."""

    root: Path
    folder: Path  # the input folder, with one 16 x 16 PNG
    single: Path  # an input file named on its own
    model: Path
    rules: Path

    def read(self, what: str) -> Path:
        return {
            "input file": self.single,
            "input folder": self.folder,
            "model file": self.model,
            "rules file": self.rules,
        }[what]

    def args(self) -> list[str]:
        return [
            str(self.folder),
            str(self.single),
            "--model",
            str(self.model),
            "--rules",
            str(self.rules),
        ]

    def snapshot(self) -> dict[str, str]:
        """Every read file's SHA-256 and every read folder's listing (recursive)."""
        seen: dict[str, str] = {}
        for path in (self.single, self.model, self.rules):
            seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        for folder, dirs, files in os.walk(self.folder):
            for name in files:
                path = Path(folder) / name
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            seen[folder] = "folder: " + ",".join(sorted(dirs + files))
        return seen


def _png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_pixels(16, 16, 3, seed=seed)).save(path)
    return path


@pytest.fixture
def run(tmp_path: Path) -> Run:
    folder = tmp_path / "in"
    _png(folder / "a.png", seed=1)
    single = _png(tmp_path / "single.png", seed=2)
    model = tmp_path / "model.safetensors"
    model.write_bytes(MODEL.read_bytes())
    rules = tmp_path / "rules.toml"
    rules.write_text('["*.png"]\nmap = "color"\n')
    return Run(tmp_path, folder, single, model, rules)


def _command(run: Run, written: str, onto: Path) -> tuple[list[str], dict[str, str]]:
    """``upscale``'s arguments and environment with ``written`` placed on ``onto``."""
    out, state = run.root / "out", run.root / "state"
    if written == "output folder":
        out = onto
    elif written == "state folder":
        state = onto
    args = [*run.args(), "-o", str(out)]
    if written == "report":
        args += ["--report", str(onto)]
    elif written == "review page":
        args += ["--review", str(onto)]
    return args, {"UPSCALE_STATE_DIR": str(state)}


def _one_error_line(output: str, path: Path) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
    assert str(path) in errors[0], output


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("written", WRITES)
def test_a_written_path_on_a_read_path_is_refused(run: Run, written: str, read: str) -> None:
    onto = run.read(read)
    before = run.snapshot()
    args, env = _command(run, written, onto)
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, onto)
    assert run.snapshot() == before
    assert not (run.root / "out").exists() and not (run.root / "state").exists()


@pytest.mark.parametrize("read", ["report", "input file", "input folder"])
def test_upscale_review_never_writes_its_page_on_what_it_reads(
    run: Run, read: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    env = {"UPSCALE_STATE_DIR": str(tmp_path / "state")}
    made = CliRunner().invoke(
        main, [*run.args(), "-o", str(tmp_path / "out"), "--report", str(report)], env=env
    )
    assert made.exit_code == 0, made.output
    onto = {"report": report, "input file": run.single, "input folder": run.folder}[read]
    before = {**run.snapshot(), "report": hashlib.sha256(report.read_bytes()).hexdigest()}
    result = CliRunner().invoke(review_main, [str(report), "-o", str(onto)])
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, onto)
    after = {**run.snapshot(), "report": hashlib.sha256(report.read_bytes()).hexdigest()}
    assert after == before
    assert not onto.with_name(f"{onto.stem}_files").exists()


def test_the_drill_as_a_real_process(run: Run) -> None:
    """One pair through the installed entry point: the report on the model file."""
    before = run.snapshot()
    args, env = _command(run, "report", run.model)
    done = subprocess.run(
        [sys.executable, "-m", "upscaler", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    _one_error_line(done.stdout + done.stderr, run.model)
    assert run.snapshot() == before and not (run.root / "out").exists()


@pytest.mark.parametrize("read", ["input file", "model file", "rules file"])
def test_a_state_file_hard_linked_to_a_read_file_is_neither_read_nor_written(
    run: Run, read: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resume state's own file placed on a read file by a hard link, which no symlink check
    sees: appending a record would change the model, an input or the rules. The run goes on
    without resume state and says so, as for a symbolic link in its place."""
    from upscaler.state import state_path

    out, state = run.root / "out", run.root / "state"
    monkeypatch.setenv("UPSCALE_STATE_DIR", str(state))
    onto = run.read(read)
    link = state_path(out.resolve())
    link.parent.mkdir(parents=True)
    os.link(onto, link)
    before = run.snapshot()
    result = CliRunner().invoke(main, [*run.args(), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "resume state not saved" in result.output and "hard links" in result.output
    assert run.snapshot() == before and (out / "a.png").is_file()
