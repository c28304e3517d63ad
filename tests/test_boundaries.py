"""Package boundaries: the inference library stays light and never reaches into training."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_importing_upscaler_pulls_in_no_training_code() -> None:
    code = (
        "import sys, upscaler, upscaler.cli, upscaler.runner\n"
        "heavy = [m for m in ('training', 'lpips', 'kornia', 'spandrel', 'torchvision')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_unsafe_loading_in_library_code() -> None:
    pattern = re.compile(r"weights_only\s*=\s*False|torch\.jit\.load|pickle\.loads?\(|\.cuda\(\)")
    offenders = [
        f"{path}:{n}"
        for folder in ("upscaler", "training")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
