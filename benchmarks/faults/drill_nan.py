"""Drill 10: NaN/Inf losses in a training run.

Non-finite values are injected into the generator's and the discriminator's loss at scattered
steps (runs shorter than K = ``run.max_bad_steps``): every such step must be skipped (the weights
it must not touch unchanged, all weights finite) and counted, and the run must finish. Then K in
a row: the run stops with exit 3 and says why, its newest checkpoint is the last healthy step's
(bit-identical to the uninterrupted reference's), and a rerun resumes from it and ends with the
reference's weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from training import checkpoint as ckpt

from .procs import temp_files
from .train_faults import NAN_D, NAN_G, STEP_RECORDS, format_steps
from .train_runs import (
    MODEL_STATE,
    RUN_STATE,
    checkpoints,
    fit,
    max_abs_diff,
    newest_checkpoint,
    overrides,
    reference_state,
)


def _scattered_faults(
    steps: int, max_bad: int, rng: np.random.Generator
) -> tuple[dict[int, str], dict[int, str]]:
    """Runs of 1..``max_bad - 1`` non-finite losses, in G or D, NaN or Inf, with good steps
    between them; ``({step: kind} for G, {step: kind} for D)``."""
    nan_g: dict[int, str] = {}
    nan_d: dict[int, str] = {}
    step = 1 + int(rng.integers(0, 3))
    while step <= steps:
        for _ in range(int(rng.integers(1, max_bad))):
            if step > steps:
                break
            kind = "nan" if rng.random() < 0.6 else "inf"
            (nan_g if rng.random() < 0.6 else nan_d)[step] = kind
            step += 1
        step += 1 + int(rng.integers(0, 4))
    return nan_g, nan_d


def _expected_changes(step: int, nan_g: dict[int, str], nan_d: dict[int, str]) -> dict[str, bool]:
    """What a step may change: nothing after a bad G loss; not D after a bad D loss."""
    if step in nan_g:
        return {"g": False, "ema": False, "d": False}
    return {"g": True, "ema": True, "d": step not in nan_d}


def run(
    work: Path, data: Path, steps: int, max_bad: int, reference_steps: int, seed: int = 0
) -> dict[str, Any]:
    """Scattered non-finite losses are skipped and counted; ``max_bad`` in a row stop the run."""
    rng = np.random.default_rng(seed + 1)
    nan_g, nan_d = _scattered_faults(steps, max_bad, rng)
    run_dir = work / "nan-scattered"
    bad = {**nan_g, **nan_d}
    scattered = fit(
        overrides(run_dir, data, steps, f"run.max_bad_steps={max_bad}"),
        env={NAN_G: format_steps(nan_g), NAN_D: format_steps(nan_d), STEP_RECORDS: "1"},
    )
    records = scattered.records()
    as_expected = sum(
        1 for r in records if r["changed"] == _expected_changes(r["step"], nan_g, nan_d)
    )
    last = ckpt.latest_checkpoint(checkpoints(run_dir))
    train = _metrics(run_dir / "drill", "train")
    figures: dict[str, Any] = {
        "nan_steps_injected": len(bad),
        "nan_steps_in_g": len(nan_g),
        "nan_steps_in_d": len(nan_d),
        "nan_steps_skipped": sum(
            1 for r in records if r["step"] in bad and not any(_bad_parts(r, nan_g))
        ),
        "steps_changing_exactly_what_they_should": f"{as_expected} / {len(records)}",
        "steps_as_expected": as_expected == len(records) == steps,
        "nan_steps_counted_in_metrics": train[-1]["skipped_total"] if train else None,
        "nan_steps_counted_in_checkpoint": last["counters"]["bad_total"] if last else None,
        "all_weights_finite_every_step": all(r["finite"] for r in records),
        "scattered_run_exit_code": scattered.returncode,
        "scattered_run_final_step": last["step"] if last else None,
        "scattered_run_traceback": "Traceback" in scattered.stderr,
    }
    return {**figures, **_streak(work, data, max_bad, reference_steps, rng)}


def _bad_parts(record: dict[str, Any], nan_g: dict[int, str]) -> list[str]:
    """Parts a skipped step changed although it must not have."""
    frozen = ("g", "ema", "d") if record["step"] in nan_g else ("d",)
    return [part for part in frozen if record["changed"].get(part)]


def _streak(
    work: Path, data: Path, max_bad: int, steps: int, rng: np.random.Generator
) -> dict[str, Any]:
    """``max_bad`` non-finite losses in a row: a clean stop at the last healthy checkpoint, from
    which a rerun resumes and ends bit-identical to the uninterrupted reference."""
    first = int(rng.integers(3, max(4, steps - max_bad - 1)))
    run_dir = work / "nan-streak"
    streak = {s: "nan" if rng.random() < 0.6 else "inf" for s in range(first, first + max_bad)}
    in_g = {s: k for s, k in streak.items() if rng.random() < 0.6}
    in_d = {s: k for s, k in streak.items() if s not in in_g}
    args = overrides(run_dir, data, steps, f"run.max_bad_steps={max_bad}")
    stopped = fit(args, env={NAN_G: format_steps(in_g), NAN_D: format_steps(in_d)})
    folder = checkpoints(run_dir)
    state, unloadable, warned = newest_checkpoint(folder)
    healthy = first - 1  # the last step before the run of bad ones
    same = state is not None and state["step"] == healthy
    diff = (
        max_abs_diff(state, reference_state(work / "reference", healthy), RUN_STATE)
        if same and state is not None
        else float("inf")
    )
    rerun = fit(args)
    resumed = ckpt.latest_checkpoint(folder)
    whole = reference_state(work / "reference", steps)
    return {
        "max_bad_steps": max_bad,
        "streak_first_step": first,
        "streak_exit_code": stopped.returncode,
        "streak_says_why": f"{max_bad} non-finite steps in a row" in stopped.stderr
        and "last good checkpoint is intact" in stopped.stderr,
        "streak_traceback": "Traceback" in stopped.stderr,
        "streak_stopped_at_step": _stopped_step(stopped.stderr),
        "streak_last_checkpoint_step": state["step"] if state else None,
        "streak_last_checkpoint_is_last_healthy_step": same,
        "streak_last_checkpoint_loads_without_fallback": state is not None
        and not warned
        and unloadable == 0,
        "streak_last_checkpoint_max_abs_diff_vs_reference": diff,
        "streak_temps_left": len(temp_files(folder)),
        "rerun_exit_code": rerun.returncode,
        "rerun_resumed_from_step": _resumed_step(rerun.stderr),
        "rerun_vs_uninterrupted_max_abs_weight_diff": (
            max_abs_diff(resumed, whole, MODEL_STATE) if resumed else float("inf")
        ),
    }


def _stopped_step(stderr: str) -> int | None:
    match = re.search(r"in a row at step (\d+)", stderr)
    return int(match[1]) if match else None


def _resumed_step(stderr: str) -> int | None:
    match = re.search(r"resuming from .* \(step (\d+)\)", stderr)
    return int(match[1]) if match else None


def _metrics(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]
