"""Drill 6: the disk fills up during a batch.

A real tmpfs a fraction of the outputs' size where one can be mounted (root with CAP_SYS_ADMIN),
else the same command with ENOSPC injected past a byte budget (``benchmarks.faults.enospc``).
Expected: exit 3 and "disk full", no traceback, every output already written intact (byte-identical
to an uninterrupted run), inputs untouched; the next run (with room again, ``--skip-existing``)
finishes, keeps those outputs, and leaves no temporaries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .drill_kill import _outputs, make_tree
from .enospc import FREE_BYTES_VARIABLE
from .procs import CliRun, file_hashes, run_upscale, temp_files


def can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    try:
        with _tmpfs(where, 1 << 20):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _tmpfs(where: Path, size: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True)


def _resize(where: Path, size: int) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True
    )


def run(
    work: Path, model: Path, files: int = 24, seed: int = 1, method: str = "auto"
) -> dict[str, Any]:
    """``method``: ``tmpfs``, ``injected`` or ``auto`` (tmpfs when it can be mounted)."""
    tree, ref_out, disk = work / "in", work / "reference", work / "disk"
    make_tree(tree, files, seed)
    inputs = file_hashes(tree)
    args = ("--model", model, "-q", "--workers", "2")
    reference = run_upscale(tree, "-o", ref_out, *args)
    expected = _outputs(ref_out)
    needed = sum(p.stat().st_size for p in ref_out.rglob("*") if p.is_file())
    free = needed * 2 // 5
    if method == "auto":
        method = "tmpfs" if can_mount_tmpfs(disk) else "injected"
    out, report = disk / "out", disk / "report.json"
    if method == "tmpfs":
        with _tmpfs(disk, free):
            full = run_upscale(tree, "-o", out, *args, "--report", report)
            figures = _after_full(full, out, expected)
            _resize(disk, needed * 3)
            rerun = run_upscale(tree, "-o", out, *args, "--skip-existing")
            figures.update(_after_rerun(rerun, out, expected))
    else:
        disk.mkdir(parents=True, exist_ok=True)
        env = {FREE_BYTES_VARIABLE: str(free)}
        full = run_upscale(
            tree, "-o", out, *args, "--report", report, module="benchmarks.faults.enospc", env=env
        )
        figures = _after_full(full, out, expected)
        rerun = run_upscale(tree, "-o", out, *args, "--skip-existing")
        figures.update(_after_rerun(rerun, out, expected))
    return {
        "method": method,
        "free_bytes": free,
        "outputs_need_bytes": needed,
        **figures,
        "inputs_modified": sum(1 for k, v in file_hashes(tree).items() if inputs.get(k) != v),
        "reference_exit_code": reference.returncode,
    }


def _after_full(full: CliRun, out: Path, expected: dict[str, str]) -> dict[str, Any]:
    written = _outputs(out) if out.exists() else {}
    return {
        "exit_code": full.returncode,
        "says_disk_full": "disk full" in full.stderr,
        "aborted": full.aborted,
        "outputs_written_before_full": len(written),
        "earlier_outputs_intact": sum(1 for k, v in written.items() if expected.get(k) == v),
        "temps_after_full_run": len(temp_files(out)),
        "last_error_line": next(
            (ln for ln in reversed(full.stderr.splitlines()) if ln.startswith("error:")), ""
        ),
    }


def _after_rerun(rerun: CliRun, out: Path, expected: dict[str, str]) -> dict[str, Any]:
    result = _outputs(out)
    return {
        "rerun_exit_code": rerun.returncode,
        "outputs_byte_identical_after_rerun": sum(
            1 for k, v in expected.items() if result.get(k) == v
        ),
        "outputs_expected": len(expected),
        "temps_left_after_rerun": len(temp_files(out)),
    }
