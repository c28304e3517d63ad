"""Inputs are never written and nothing hangs: non-regular files, outputs and reports
that would land on inputs, the same file named twice, long and odd names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_pixels, within
from PIL import Image

from benchmarks.faults.procs import environment, file_hashes, run_upscale, temp_files
from upscaler.cli import main
from upscaler.formats.image import ImageReadError, probe, read_image


def _png(path: Path, h: int = 9, w: int = 7, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_pixels(h, w, 3, seed=seed)).save(path)
    return path


def _invoke(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- a FIFO (or socket, device) named like an image --------------------------------------------


def test_a_fifo_named_like_an_image_is_reported_and_never_opened(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """A real subprocess with a time bound: opening a FIFO for reading blocks until a writer
    comes, so a command that opened one would hang here (also with --dry-run)."""
    _png(tmp_path / "in" / "a.png")
    os.mkfifo(tmp_path / "in" / "x.png")
    os.mkfifo(tmp_path / "lone.tga")
    run = run_upscale(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "x.png: is a FIFO, not an image file; not read" in run.stderr
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "x.png").exists()
    dry = run_upscale(tmp_path / "in", "-o", tmp_path / "o2", "--model", tiny_x2, "--dry-run")
    assert dry.returncode == 0 and "x.png: is a FIFO" in dry.stdout
    lone = run_upscale(tmp_path / "lone.tga", "-o", tmp_path / "o3", "--model", tiny_x2)
    assert lone.returncode == 1 and "is a FIFO" in lone.stderr and not lone.aborted


def test_reading_a_fifo_or_a_device_fails_at_once(tmp_path: Path) -> None:
    """The reader itself never blocks, whoever calls it (a FIFO swapped in after the walk)."""
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    for call in (lambda: probe(fifo), lambda: read_image(fifo)):
        with pytest.raises(ImageReadError, match="is a FIFO, not an image file"):
            within(5, call, fifo)
    for device in (Path("/dev/zero"), Path("/dev/null")):
        with pytest.raises(ImageReadError, match="a character device, not an image file"):
            probe(device)


def test_ctrl_c_prints_the_summary_so_far_and_how_to_resume(tmp_path: Path, tiny_x2: Path) -> None:
    """SIGINT in the middle of a batch: exit 130, the summary so far, the resume hint, no
    temporary left; the --skip-existing rerun keeps what was finished and does the rest."""
    for i in range(40):
        _png(tmp_path / "in" / f"{i:02d}.png", 96, 80, seed=i)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "upscaler", str(tmp_path / "in"), "-o", str(out), "-m", tiny_x2],
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        # Ctrl-C's default action, whatever this test inherited: a shell starts background jobs
        # with SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted: " in stderr and "--skip-existing" in stderr
    assert "Traceback" not in stderr and not temp_files(out)
    finished = {p.name for p in out.glob("*.png")}
    summary = next(ln for ln in stderr.splitlines() if ln.startswith("interrupted: "))
    assert summary.startswith(f"interrupted: {len(finished)} upscaled")
    report = tmp_path / "r.json"
    rerun = _invoke(
        tmp_path / "in", "-o", out, "-m", tiny_x2, "-q", "--skip-existing", "--report", report
    )
    assert rerun.exit_code == 0
    assert f"{40 - len(finished)} upscaled, {len(finished)} skipped" in rerun.output


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_write_the_report_and_summary_as_ctrl_c_does(
    tmp_path: Path, tiny_x2: Path, name: str
) -> None:
    number = getattr(signal, name)
    for i in range(40):
        _png(tmp_path / "in" / f"{i:02d}.png", 96, 80, seed=i)
    out, report = tmp_path / "out", tmp_path / "r.json"
    command = [sys.executable, "-m", "upscaler", str(tmp_path / "in"), "-o", str(out)]
    proc = subprocess.Popen(
        [*command, "-m", tiny_x2, "--report", str(report)],
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        preexec_fn=lambda: signal.signal(number, signal.SIG_DFL),  # whatever this test inherited
    )
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(number)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + number, stderr
    assert "Traceback" not in stderr and not temp_files(out)
    finished = {p.name for p in out.glob("*.png")}
    summary = next(ln for ln in stderr.splitlines() if ln.startswith("interrupted: "))
    assert summary.startswith(f"interrupted: {len(finished)} upscaled") and "of 40" in summary
    assert "--skip-existing" in stderr
    written = json.loads(report.read_text())
    assert written["summary"]["interrupted"] is True
    assert sum(f["status"] == "done" for f in written["files"]) == len(finished)


def test_an_input_named_like_our_temporaries_gets_a_note(tmp_path: Path, tiny_x2: Path) -> None:
    _png(tmp_path / "in" / "a.png", 8, 6)
    odd = tmp_path / "in" / "wall.upscale-tmp-1.png"
    _png(odd, 8, 6)
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "-q")
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if odd.name in ln]
    assert len(lines) == 1 and "named like this tool's temporary files" in lines[0], lines
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]


# -- no output may land on an input ------------------------------------------------------------


def test_output_folder_inside_the_input_tree_never_replaces_an_input(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """``upscale in -o in/sub`` where in/sub/a.png is the user's: refused before any write."""
    _png(tmp_path / "in" / "a.png", seed=1)
    _png(tmp_path / "in" / "sub" / "a.png", seed=2)
    before = file_hashes(tmp_path / "in")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "in" / "sub", "--model", tiny_x2)
    assert result.exit_code == 2 and "would overwrite a file inside the input folder" in (
        result.output
    )
    assert file_hashes(tmp_path / "in") == before


def test_rerun_into_an_output_folder_inside_the_input_tree_is_allowed(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """What this tool wrote there itself is not an input: a rerun may replace it."""
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "in" / "upscaled"
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 0
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 0
    (out / "a.png").write_bytes((out / "a.png").read_bytes())  # still ours: same bytes
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 0
    _png(out / "a.png", seed=5)  # replaced by the user: now theirs
    assert _invoke(tmp_path / "in", "-o", out, "--model", tiny_x2, "-q").exit_code == 2


def test_an_output_that_is_an_input_under_another_name_is_refused(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """Compared by file identity: a hard link (or a case variant on a case-folding disk) at
    the target path is the input itself."""
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    os.link(tmp_path / "in" / "a.png", tmp_path / "out" / "a.png")
    before = file_hashes(tmp_path / "in")
    result = _invoke(tmp_path / "in" / "a.png", "-o", tmp_path / "out", "--model", tiny_x2)
    assert result.exit_code == 2 and "would overwrite an input" in result.output
    assert file_hashes(tmp_path / "in") == before


def test_the_same_file_named_twice_is_done_once(tmp_path: Path, tiny_x2: Path) -> None:
    a = _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "sub").mkdir()
    twice = _invoke(a, a, "-o", tmp_path / "o1", "--model", tiny_x2, "-q")
    assert twice.exit_code == 0 and "1 upscaled, 0 skipped, 0 failed of 1" in twice.output
    dotted = tmp_path / "in" / "sub" / ".." / "a.png"
    result = _invoke(a, dotted, "-o", tmp_path / "o2", "--model", tiny_x2, "-q")
    assert result.exit_code == 0, result.output
    assert "1 upscaled" in result.output and "named more than once" in result.output


def test_names_that_differ_only_in_case_collide_where_the_disk_folds_case(
    tmp_path: Path,
) -> None:
    """``A.png`` and ``a.png`` are one file on a case-folding disk (NTFS, APFS, FAT): refused.
    This kernel has no case-folding filesystem to mount (no vfat, no CONFIG_UNICODE), so the
    disk's answer is given; ``folds_case`` itself is asked of this (case-sensitive) disk."""
    from upscaler.worklist import PlanError, build_worklist, folds_case

    _png(tmp_path / "in" / "A.png", seed=1)
    _png(tmp_path / "in" / "a.png", seed=2)
    assert not folds_case(tmp_path / "in") and not folds_case(tmp_path / "not" / "yet")
    assert len(build_worklist([tmp_path / "in"], tmp_path / "out").jobs) == 2
    with pytest.raises(PlanError, match="would both be written"):
        build_worklist([tmp_path / "in"], tmp_path / "out", case_folding=True)


# -- the report: never over an input or an output, written atomically --------------------------


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("in/a.png", "is an input of this run"),
        ("model", "is an input of this run"),
        ("out/a.png", "is an output of this run"),
        ("OUT_DIR", "is a folder the outputs of this run go into"),
        ("out/sub", "is a folder the outputs of this run go into"),
        ("out/a.png/r.json", "lies under an output file of this run"),
        ("fifo", "is a FIFO; the report must be a file"),
        ("in/a.png/r.json", "its folder cannot be made: "),
        ("fifo/deeper/r.json", "fifo is not a folder"),
    ],
)
def test_a_report_that_would_overwrite_an_input_or_an_output_is_refused(
    tmp_path: Path, tiny_x2: Path, where: str, why: str
) -> None:
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "sub" / "b.png")
    os.mkfifo(tmp_path / "fifo")
    paths = {"model": tiny_x2, "OUT_DIR": tmp_path / "out"}
    report = paths.get(where, tmp_path / where)
    before = file_hashes(tmp_path / "in")
    model_bytes = tiny_x2.read_bytes()
    for dry in ((), ("--dry-run",)):
        result = _invoke(
            tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "--report", report, *dry
        )
        assert result.exit_code == 2 and why in result.output, result.output
    assert file_hashes(tmp_path / "in") == before and tiny_x2.read_bytes() == model_bytes
    assert not (tmp_path / "out").exists()


def test_report_and_review_page_make_their_missing_folders(tmp_path: Path, tiny_x2: Path) -> None:
    """As ``-o`` does; only once every check has passed, and not on a dry run."""
    import json

    _png(tmp_path / "in" / "a.png")
    report, page = tmp_path / "logs" / "x" / "run.json", tmp_path / "pages" / "review.html"
    args = [tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "-q", "--report", report]
    assert _invoke(*args, "--dry-run").exit_code == 0
    assert not (tmp_path / "logs").exists()
    refused = _invoke(*args, "--review", tmp_path / "in" / "new" / "review.html")
    assert refused.exit_code == 2 and not (tmp_path / "logs").exists()
    result = _invoke(*args, "--review", page)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["summary"]["done"] == 1
    assert page.is_file() and (tmp_path / "pages" / "review_files").is_dir()


def test_report_is_written_atomically_beside_its_final_name(tmp_path: Path, tiny_x2: Path) -> None:
    import json

    _png(tmp_path / "in" / "a.png")
    report = tmp_path / "run.json"
    report.write_text("an older report")
    result = _invoke(
        tmp_path / "in", "-o", tmp_path / "out", "-m", tiny_x2, "-q", "--report", report
    )
    assert result.exit_code == 0
    assert json.loads(report.read_text())["summary"]["done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "run.json"]


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [225, 251, 255])
def test_long_names_fit_their_temporary_files(tmp_path: Path, tiny_x2: Path, length: int) -> None:
    """A temporary's name is cut to NAME_MAX whatever the target's length."""
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".png"
    assert len(name.encode()) == length
    _png(tmp_path / "in" / name)
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "-q")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / name).size == (14, 18)


def test_a_name_with_a_newline_is_reported_on_one_line(tmp_path: Path, tiny_x2: Path) -> None:
    bad = tmp_path / "in" / "bad\nname\x1b[31m.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _png(tmp_path / "in" / "good.png")
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2)
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if "bad" in ln]
    assert lines and all("bad\\nname\\x1b[31m.png" in ln for ln in lines)
    assert "\x1b" not in result.output
