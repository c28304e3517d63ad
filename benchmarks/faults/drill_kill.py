"""Drill 5: SIGKILL the real ``upscale`` command at random moments, rerun with --skip-existing.

Expected after every kill: inputs unchanged (hashes), no partial file at any final output path
(every file there is byte-identical to the uninterrupted run's). After the last rerun: every output
byte-identical to the uninterrupted run, no temporaries left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from upscaler.atomic import is_temp_file

from .corpus import VALID, load_patches, source_textures
from .procs import file_hashes, run_upscale, temp_files

TREE_KINDS = (
    "png-rgb",
    "png-rgba",
    "png-16-gray",
    "tga-rle-bottom-left",
    "jpg",
    "dds-dxt5",
    "png-palette",
)


def make_tree(root: Path, files: int, seed: int) -> list[str]:
    """A small texture tree of real crops in several formats; a few large ones slow the writes."""
    rng = np.random.default_rng(seed)
    patches = load_patches(source_textures(), rng, files, sides=(24, 160))
    big = max(3, files // 12)
    patches[-big:] = load_patches(source_textures(), rng, big, sides=(320, 513))
    names = []
    for index, patch in enumerate(patches):
        kind = TREE_KINDS[index % len(TREE_KINDS)]
        name = f"{'sub/' if index % 2 else ''}{index:03d}.{kind.split('-')[0]}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(VALID[kind](patch, rng))
        names.append(name)
    return names


def _outputs(out: Path) -> dict[str, str]:
    """Files at final paths (not temporaries) and their hashes: resume state is kept outside
    the output tree, so anything else here would be a stray file."""
    return {k: v for k, v in file_hashes(out).items() if not is_temp_file(Path(k))}


def run(work: Path, model: Path, kills: int, files: int = 48, seed: int = 0) -> dict[str, Any]:
    tree, ref_out, out = work / "in", work / "reference", work / "out"
    make_tree(tree, files, seed)
    inputs = file_hashes(tree)
    args = ("--model", model, "-q", "--workers", "2")
    reference = run_upscale(tree, "-o", ref_out, *args)
    if reference.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed: {reference.stderr[-2000:]}")
    expected = _outputs(ref_out)
    # Start-up and planning alone: the same command with every output already done.
    startup = run_upscale(tree, "-o", ref_out, *args, "--skip-existing").seconds
    work_seconds = max(0.1, reference.seconds - startup)
    rng = np.random.default_rng(seed)
    figures = dict.fromkeys(
        (
            "kills_landed",
            "kills_mid_batch",
            "partial_outputs_at_final_paths",
            "inputs_modified",
            "temps_seen_after_kills",
            "kills_survived",
        ),
        0,
    )
    for _ in range(kills):
        before = _outputs(out) if out.exists() else {}
        remaining = 1 - len(before) / len(expected)  # this run's share of the work
        delay = float(rng.uniform(0.6 * startup, startup + remaining * work_seconds))
        killed = run_upscale(tree, "-o", out, *args, "--skip-existing", kill_after=delay)
        landed = killed.returncode == -9
        now = _outputs(out) if out.exists() else {}
        temps = len(temp_files(out))
        partial = sum(1 for k, v in now.items() if expected.get(k) != v)
        modified = sum(1 for k, v in file_hashes(tree).items() if inputs.get(k) != v)
        figures["kills_landed"] += landed
        figures["kills_mid_batch"] += landed and (temps > 0 or len(now) > len(before))
        figures["partial_outputs_at_final_paths"] += partial
        figures["inputs_modified"] += modified
        figures["temps_seen_after_kills"] += temps
        figures["kills_survived"] += landed and partial == 0 and modified == 0
        if len(now) == len(expected):  # all done: take some away so the next kill meets work
            for name in sorted(now)[:: 2 if rng.random() < 0.5 else 3]:
                (out / name).unlink()
    final = run_upscale(tree, "-o", out, *args, "--skip-existing")
    result = _outputs(out)
    return {
        "kills": kills,
        **figures,
        "final_exit_code": final.returncode,
        "outputs_expected": len(expected),
        "outputs_byte_identical": sum(1 for k, v in expected.items() if result.get(k) == v),
        "outputs_extra": len(set(result) - set(expected)),
        "temps_left_after_rerun": len(temp_files(out)),
        "inputs_modified_total": sum(1 for k, v in file_hashes(tree).items() if inputs.get(k) != v),
        "uninterrupted_seconds": round(reference.seconds, 2),
        "startup_seconds": round(startup, 2),
    }
