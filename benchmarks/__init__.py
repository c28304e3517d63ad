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


ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"  # the pretrained peers, beside the repository


def shipped_and_peers(peer_files: tuple[str, ...]) -> list[tuple[str, Path]]:
    """``(name, file)`` of every installed shipped model, then of each of ``peer_files`` found
    in ``../shared/peers`` (named by its file name)."""
    from upscaler.models.sources import SHIPPED

    found = [(m.name, m.path) for m in SHIPPED.values() if m.installed]
    return found + [(name, PEERS / name) for name in peer_files if (PEERS / name).is_file()]


def write_report(path: Path, report: object, indent: int = 2) -> None:
    """Write a benchmark's JSON ``report`` to ``path`` (its folder made) and say so."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=indent) + "\n")
    print(f"written {path}")
