"""Benchmarks and reliability drills (run from the repository root)."""

import sys
from pathlib import Path


def require_data(script: str, folder: Path, option: str = "--data") -> None:
    """End ``script`` with one line (exit 2) when its data ``folder`` is missing: the default
    ones are the curated textures of ``../shared/data``, which sits beside the repository in
    its development workspace and is not shipped with it."""
    if not folder.is_dir():
        print(
            f"{script}: {folder} is not a folder (the default is the curated textures of "
            f"../shared/data, beside the repository in its workspace; give your own with {option})",
            file=sys.stderr,
        )
        raise SystemExit(2)
