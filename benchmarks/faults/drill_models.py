"""Drills 1-2: hostile and malformed model files, in process and through the real command.

Expected: every file refused with a one-line reason that matches its fault; no canary file (no
code from a file ever ran); the command exits 3 saying "model refused" (and, for pickles that
would run code or TorchScript, how to convert to safetensors) and writes nothing; memory does not
grow with what a file claims (refused before allocation).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from upscaler.models.checkpoint import ModelFileError
from upscaler.models.loader import read_model

from .hostile_models import CONVERT, build
from .procs import peak_rss_mb, reset_peak_rss, rss_mb, run_upscale

UNSAFE = re.compile(r"weights_only\s*=\s*False|torch\.jit\.load|pickle\.loads?\(")


def unsafe_load_sites(root: Path) -> list[str]:
    """Lines in the library that could run code from a model file (must be none)."""
    return [
        f"{path}:{n}"
        for path in sorted((root / "upscaler").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if UNSAFE.search(line)
    ]


def run(work: Path, cli_for_all: bool = False) -> dict[str, Any]:
    canary = work / "canary"
    rows = build(work / "models", canary)
    tree = work / "in"
    tree.mkdir()
    Image.fromarray(np.full((9, 7, 3), 128, np.uint8)).save(tree / "a.png")
    problems: list[str] = []
    refused = one_line = matched = 0
    worst_growth = 0.0
    for row in rows:
        before = rss_mb()
        reset_peak_rss()
        try:
            read_model(row.path)
            problems.append(f"{row.name}: loaded")
            continue
        except ModelFileError as exc:
            message = str(exc)
        worst_growth = max(worst_growth, peak_rss_mb() - before)
        refused += 1
        one_line += "\n" not in message
        if re.search(row.reason, message):
            matched += 1
        else:
            problems.append(f"{row.name}: {message!r} does not match {row.reason!r}")
    cli_rows = [r for r in rows if cli_for_all or r.runs_code or "TorchScript" in r.reason]
    cli_ok = 0
    for row in cli_rows:
        out = work / f"out-{row.name}"
        cli = run_upscale(tree, "-o", out, "--model", row.path, "-q")
        ok = cli.returncode == 3 and "model refused" in cli.stderr and not out.exists()
        ok = ok and (CONVERT in cli.stderr or not (row.runs_code or "TorchScript" in row.reason))
        cli_ok += ok and not cli.aborted
        if not ok:
            problems.append(f"{row.name}: exit {cli.returncode}: {cli.stderr.strip()[-300:]}")
    return {
        "model_files": len(rows),
        "refused": refused,
        "one_line_reasons": one_line,
        "reasons_matching_fault": matched,
        "canary_created": int(canary.exists()),
        "cli_runs": len(cli_rows),
        "cli_exit_3_model_refused": cli_ok,
        "max_rss_growth_mb_while_refusing": round(worst_growth, 1),
        "unsafe_load_sites": len(unsafe_load_sites(Path(__file__).resolve().parents[2])),
        "problems": problems,
    }
