"""Drill 9: a training run SIGKILLed during checkpoint saves, and truncated newest checkpoints.

An uninterrupted reference run keeps every checkpoint. Then a second run is killed again and
again: the watcher waits for the child's ``save-start`` mark of a randomly chosen save and sends
SIGKILL a random fraction of a typical save later. After each kill the newest checkpoint at a final
path must load without a fallback and be bit-identical to the reference's checkpoint of that step;
the run is then resumed in a new process (and killed again). Every few kills the newest checkpoint
is also truncated at a random offset (as a cut-off copy or a damaged disk would leave it): the
resume must warn, naming the file, and fall back to the one before. At the end the resumed run's
final state must equal the reference's bit for bit. ``run`` also runs drill 10 (``drill_nan``)
on the same set-up.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np

from training import checkpoint as ckpt

from . import drill_nan
from .procs import temp_files
from .train_runs import (
    MODEL_STATE,
    RUN_STATE,
    Child,
    checkpoints,
    fit,
    make_textures,
    max_abs_diff,
    max_steps,
    newest_checkpoint,
    overrides,
    reference_run,
    reference_state,
)


def _save_seconds(child: Child) -> float:
    """Median duration of a save, from the ``save-start`` / ``save-end`` marks."""
    starts = {int(s): t for t, line in child.marks if (s := _mark(line, "save-start"))}
    ends = {int(s): t for t, line in child.marks if (s := _mark(line, "save-end"))}
    spans = sorted(ends[k] - starts[k] for k in starts if k in ends)
    return spans[len(spans) // 2] if spans else 0.02


def _mark(line: str, name: str) -> str:
    return line.split()[1] if line.startswith(name + " ") else ""


def _truncate_newest(folder: Path, rng: np.random.Generator) -> Path:
    _, path = ckpt.list_checkpoints(folder)[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(rng.integers(0, len(data)))])
    return path


def kill_drill(
    work: Path,
    data: Path,
    reference: Child,
    kills: int,
    truncate_every: int,
    seed: int = 0,
    window: float = 1.25,
) -> dict[str, Any]:
    """SIGKILL a training run during ``kills`` checkpoint saves; see the module docstring.

    Each kill comes ``uniform(0, window)`` typical save durations after a save starts (past 1,
    some land just after the save: those count as tried, not landed). Tries up to twice as many
    kills as asked for (and at least 3 more) until ``kills`` of them landed inside a save.
    """
    rng = np.random.default_rng(seed)
    save_s = _save_seconds(reference)
    args = overrides(work / "killed", data, max_steps(kills))
    folder = checkpoints(work / "killed")
    f = dict.fromkeys(
        (
            "kills_tried",
            "kills_landed_in_save",
            "kills_survived",
            "killed_mid_write",
            "killed_after_rename",
            "unloadable_latest_checkpoints",
            "previous_checkpoint_loads",
            "fallback_needed_after_kill",
            "kills_not_survived",
            "truncations",
            "fallbacks_with_warning",
            "runs_finished_before_kill",
            "runs_failed",
        ),
        0,
    )
    worst, failure, attempts = 0.0, "", 0
    truncated: Path | None = None
    while f["kills_landed_in_save"] < kills and attempts < max(2 * kills, kills + 3):
        attempts += 1
        # The 1st, 2nd or 3rd save of this process; not the 1st after a truncation, whose save
        # replaces the damaged file (the figures below are about what the kill leaves); later
        # while the run has fewer than 2 checkpoints (a kill should find one to keep).
        target = int(rng.integers(1 if truncated is None else 2, 4))
        target += max(0, 2 - len(ckpt.list_checkpoints(folder)))
        child = fit(args, kill_at_save=target, kill_delay=float(rng.uniform(0, window * save_s)))
        if truncated is not None:  # this process resumed past a truncated newest checkpoint
            f["fallbacks_with_warning"] += _fell_back(child, truncated)
            truncated = None
        if child.returncode != -signal.SIGKILL:
            f["runs_finished_before_kill" if child.returncode == 0 else "runs_failed"] += 1
            failure = failure or (child.stderr[-1000:] if child.returncode != 0 else "")
            continue
        f["kills_tried"] += 1
        started = [int(s) for s in child.lines("save-start ")]
        saving = started[-1] if len(started) >= target else None
        landed = saving is not None and saving not in {int(s) for s in child.lines("save-end ")}
        state, unloadable, warned = newest_checkpoint(folder)
        f["unloadable_latest_checkpoints"] += unloadable
        f["fallback_needed_after_kill"] += warned
        good = state is not None and unloadable == 0 and not warned
        if state is not None:
            expected = reference_state(work / "reference", state["step"])
            diff = max_abs_diff(state, expected, RUN_STATE)
            worst, good = max(worst, diff), good and diff == 0
        if landed:
            assert saving is not None
            f["kills_landed_in_save"] += 1
            f["killed_mid_write"] += len(temp_files(folder)) > 0
            f["killed_after_rename"] += state is not None and state["step"] == saving
            # the previous checkpoint loads (or the new one, if the kill came after its rename)
            f["previous_checkpoint_loads"] += state is not None and state["step"] >= saving - 1
            f["kills_survived"] += good
        f["kills_not_survived"] += not good
        # Only where there is an older checkpoint to fall back to (else: a clear error, exit 2).
        due = truncate_every and f["kills_tried"] % truncate_every == 0
        if due and len(ckpt.list_checkpoints(folder)) >= 2:
            truncated = _truncate_newest(folder, rng)
            f["truncations"] += 1
    final = fit(args)
    failure = failure or (final.stderr[-1000:] if final.returncode != 0 else "")
    if truncated is not None:
        f["fallbacks_with_warning"] += _fell_back(final, truncated)
    resumed = ckpt.latest_checkpoint(folder) if final.returncode == 0 else None
    whole = reference_state(work / "reference", max_steps(kills))
    final_diff = max_abs_diff(resumed, whole, MODEL_STATE) if resumed else float("inf")
    return {
        "kills": kills,
        **f,
        "final_exit_code": final.returncode,
        "final_step": resumed["step"] if resumed else None,
        "max_steps": max_steps(kills),
        "resumed_vs_uninterrupted_max_abs_weight_diff": final_diff,
        "resumed_vs_uninterrupted_full_state_identical": resumed is not None
        and max_abs_diff(resumed, whole, RUN_STATE) == 0,
        "checkpoints_after_kills_max_abs_diff_vs_reference": worst,
        "unloadable_checkpoints_after_final_run": _unloadable(folder),
        "temps_left_after_final_run": len(temp_files(folder)),
        "median_save_ms": round(1000 * save_s, 1),
        "first_failure": failure,
    }


def _unloadable(folder: Path) -> int:
    count = 0
    for _, path in ckpt.list_checkpoints(folder):
        try:
            ckpt.read_checkpoint(path)
        except ckpt.CheckpointError:
            count += 1
    return count


def _fell_back(child: Child, truncated: Path) -> bool:
    """Whether ``child`` warned about ``truncated`` and resumed from an older checkpoint."""
    warned = any(
        str(truncated) in line and "falling back" in line for line in child.stderr.splitlines()
    )
    older = [
        line
        for line in child.stderr.splitlines()
        if line.startswith("resuming from ") and str(truncated) not in line
    ]
    return warned and bool(older)


def run(
    work: Path,
    kills: int,
    nan_steps: int,
    max_bad: int = 3,
    truncate_every: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Drills 9 and 10 on one tiny run set-up; returns ``{"kill": ..., "nan": ...}`` figures."""
    data = make_textures(work / "data", seed=seed)
    reference = reference_run(work, data, kills)
    return {
        "kill": kill_drill(work, data, reference, kills, truncate_every, seed),
        "nan": drill_nan.run(work, data, nan_steps, max_bad, max_steps(kills), seed),
    }
