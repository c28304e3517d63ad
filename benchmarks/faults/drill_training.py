"""Drills 9 and 10: training checkpoints under SIGKILL, and non-finite losses.

Both run the real ``upscale-train fit`` (through ``benchmarks.faults.train_faults``, which adds the
fault hooks) as a subprocess on a tiny GAN run: an 8-feature compact generator and discriminator,
16 px crops of real textures, deterministic, one thread, a checkpoint every step.

9. **Kills during checkpoint saves.** An uninterrupted reference run keeps every checkpoint. Then a
   second run is killed again and again: the watcher waits for the child's ``save-start`` mark of
   a randomly chosen save and sends SIGKILL a random fraction of a typical save later. After each
   kill: the newest checkpoint at a final path must load without a fallback and be bit-identical
   to the reference's checkpoint of that step; the run is then resumed (and killed again). Every
   few kills the newest checkpoint is also truncated at a random offset (as a non-atomic copy or a
   damaged disk would leave it): the resume must warn, naming the file, and fall back to the one
   before. At the end the resumed run's final state must equal the reference's bit for bit.
10. **NaN/Inf losses.** Non-finite values injected into the generator's and the discriminator's
   loss at scattered steps (runs shorter than K): every such step skipped (weights unchanged) and
   counted, the run finishes. Then K in a row: the run stops with exit 3 and says why, its newest
   checkpoint is the last healthy one (bit-identical to the reference's of that step), and a
   rerun resumes from it and finishes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from training import checkpoint as ckpt

from .corpus import load_patches, source_textures
from .procs import environment, temp_files
from .train_faults import NAN_D, NAN_G, SAVE_MARKS, STEP_RECORDS, format_steps

RECIPE = "compact-x4-gan"
MODEL_STATE = ("generator", "ema", "discriminator")
RUN_STATE = (*MODEL_STATE, "optim_g", "optim_d", "scaler", "rng", "counters", "data")


def make_textures(folder: Path, count: int = 6, seed: int = 0) -> Path:
    """``count`` small RGB crops of real textures, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, patch in enumerate(load_patches(source_textures(), rng, count, sides=(40, 57))):
        Image.fromarray(patch[:, :, :3].copy(), "RGB").save(folder / f"crop_{index:02d}.png")
    return folder


def overrides(out_dir: Path, data: Path, max_steps: int, *extra: str) -> list[str]:
    """``--set`` values: a tiny deterministic GAN run that saves a checkpoint every step."""
    values = [
        f"run.out_dir={str(out_dir)!r}",
        "run.name='drill'",
        f"run.max_steps={max_steps}",
        "run.log_every=1",
        f"run.val_every={max_steps + 1}",
        "run.save_every=1",
        "run.keep_last=2",
        "run.progress=false",
        "run.threads=1",
        "run.deterministic=true",
        f"data.train=[{str(data)!r}]",
        "data.crop_size=16",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.num_features=8",
        "model.num_blocks=1",
        "model.init_from=''",
        "discriminator.num_features=8",
        "loss.gan_type='wgan-gp'",  # draws from the trainer's own generator as well
        "val.folder=''",
        *extra,
    ]
    return [a for value in values for a in ("--set", value)]


@dataclass
class Child:
    """One ``upscale-train fit`` process, its stdout marks and where it ended."""

    returncode: int
    marks: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)
    stderr: str = ""

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for _, line in self.marks if line.startswith(prefix)]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.lines("record ")]


def fit(
    args: list[str],
    env: dict[str, str] | None = None,
    kill_at_save: int = 0,
    kill_delay: float = 0.0,
    timeout: float = 600,
) -> Child:
    """Run ``fit`` to the end, or SIGKILL it ``kill_delay`` s after its ``kill_at_save``-th
    ``save-start`` mark (1-based; 0: no kill)."""
    command = [sys.executable, "-m", "benchmarks.faults.train_faults", "fit", RECIPE, "-q", *args]
    full_env = {**environment(), "OMP_NUM_THREADS": "1", SAVE_MARKS: "1", **(env or {})}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=full_env, text=True
        )
        assert proc.stdout is not None
        child, saves = Child(0), 0
        with _deadline(proc, timeout):
            for line in proc.stdout:
                child.marks.append((time.perf_counter() - started, line.rstrip("\n")))
                if line.startswith("save-start"):
                    saves += 1
                    if saves == kill_at_save:
                        time.sleep(kill_delay)
                        proc.send_signal(signal.SIGKILL)
            child.returncode = proc.wait()
        err.seek(0)
        child.stderr = err.read().decode(errors="replace")
    return child


@contextlib.contextmanager
def _deadline(proc: subprocess.Popen[str], timeout: float) -> Iterator[None]:
    """SIGKILL ``proc`` if it runs past ``timeout`` seconds (a hung child must not hang the
    drill)."""
    import threading

    timer = threading.Timer(timeout, lambda: proc.poll() is None and proc.kill())
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def checkpoints(run_dir: Path) -> Path:
    return ckpt.checkpoint_dir(run_dir / "drill")


def max_abs_diff(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> float:
    """Largest absolute difference between the tensors of ``a`` and ``b`` under ``keys``
    (``inf`` when their structure or any non-tensor value differs)."""
    worst = 0.0
    for key in keys:
        worst = max(worst, _diff(a[key], b[key]))
    return worst


def _diff(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return float("inf")
        if a.numel() == 0:
            return 0.0
        if a.is_floating_point():
            return float((a.double() - b.double()).abs().max())
        return 0.0 if torch.equal(a, b) else float("inf")
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return float("inf")
        return max((_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list | tuple):
        if not isinstance(b, list | tuple) or len(a) != len(b):
            return float("inf")
        return max((_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    return 0.0 if a == b else float("inf")


# -- drill 9: kills during checkpoint saves ------------------------------------------------------


def _save_seconds(child: Child) -> float:
    """Median duration of a save, from the ``save-start`` / ``save-end`` marks."""
    starts = {int(s): t for t, line in child.marks if (s := _mark(line, "save-start"))}
    ends = {int(s): t for t, line in child.marks if (s := _mark(line, "save-end"))}
    spans = sorted(ends[k] - starts[k] for k in starts if k in ends)
    return spans[len(spans) // 2] if spans else 0.02


def _mark(line: str, name: str) -> str:
    return line.split()[1] if line.startswith(name + " ") else ""


def _reference_state(reference: Path, step: int) -> dict[str, Any]:
    return ckpt.read_checkpoint(checkpoints(reference) / f"step-{step:09d}.pt")


def _newest_after_kill(folder: Path) -> tuple[dict[str, Any] | None, int, bool]:
    """``(state, unloadable, warned)``: the checkpoint a resume would take, how many files at
    final paths newer than it cannot be read, and whether loading it needed a fallback."""
    import warnings

    unloadable = 0
    for _, path in ckpt.list_checkpoints(folder):
        try:
            ckpt.read_checkpoint(path)
            break
        except ckpt.CheckpointError:
            unloadable += 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = ckpt.latest_checkpoint(folder)
    return state, unloadable, bool(caught)


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
        state, unloadable, warned = _newest_after_kill(folder)
        f["unloadable_latest_checkpoints"] += unloadable
        f["fallback_needed_after_kill"] += warned
        good = state is not None and unloadable == 0 and not warned
        if state is not None:
            reference_state = _reference_state(work / "reference", state["step"])
            diff = max_abs_diff(state, reference_state, RUN_STATE)
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
    whole = _reference_state(work / "reference", max_steps(kills))
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


def max_steps(kills: int) -> int:
    """Steps of the drill runs: a kill costs about one step of progress; room to spare."""
    return 3 * kills + 6


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


# -- drill 10: non-finite losses -----------------------------------------------------------------


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


def nan_drill(
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
    state, unloadable, warned = _newest_after_kill(folder)
    healthy = first - 1  # the last step before the run of bad ones
    same = state is not None and state["step"] == healthy
    diff = (
        max_abs_diff(state, _reference_state(work / "reference", healthy), RUN_STATE)
        if same and state is not None
        else float("inf")
    )
    rerun = fit(args)
    resumed = ckpt.latest_checkpoint(folder)
    whole = _reference_state(work / "reference", steps)
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
    import re

    match = re.search(r"in a row at step (\d+)", stderr)
    return int(match[1]) if match else None


def _resumed_step(stderr: str) -> int | None:
    import re

    match = re.search(r"resuming from .* \(step (\d+)\)", stderr)
    return int(match[1]) if match else None


def _metrics(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


# -- both ------------------------------------------------------------------------------------------


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
        "nan": nan_drill(work, data, nan_steps, max_bad, max_steps(kills), seed),
    }


def reference_run(work: Path, data: Path, kills: int) -> Child:
    """The uninterrupted run, keeping every checkpoint, in ``work/reference``."""
    args = overrides(work / "reference", data, max_steps(kills), "run.keep_last=1000000")
    reference = fit(args)
    if reference.returncode != 0:
        raise RuntimeError(f"uninterrupted training run failed: {reference.stderr[-2000:]}")
    return reference
