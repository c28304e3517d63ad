"""The README's benchmark commands start: each script imports the project, not a namesake.

``benchmarks/training.py`` sits beside the other scripts, and a script's own folder comes first
on ``sys.path``: a script that does not put the project root before it imports this file as
``training``. ``--help`` is enough to run every import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": "."}
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()
