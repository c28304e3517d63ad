"""Tiny real training runs for the training drills: data, config, and the ``fit`` subprocess.

Every drill run is the real ``upscale-train fit`` (through ``benchmarks.faults.train_faults``,
which adds the fault hooks) as a subprocess: a GAN run with an 8-feature compact generator and
discriminator, 16 px crops of real textures, deterministic, one thread, a checkpoint every step.
An uninterrupted reference run keeps every checkpoint, so any state a drill ends with can be
compared with the reference's at the same step.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from training import checkpoint as ckpt

from .corpus import load_patches, source_textures
from .procs import environment
from .train_faults import SAVE_MARKS

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
        # The context closes the pipe: left to the garbage collector, it raised a
        # ResourceWarning at a random later moment (once inside ``newest_checkpoint``).
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=full_env, text=True
        ) as proc:
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


def reference_state(reference: Path, step: int) -> dict[str, Any]:
    return ckpt.read_checkpoint(checkpoints(reference) / f"step-{step:09d}.pt")


def newest_checkpoint(folder: Path) -> tuple[dict[str, Any] | None, int, bool]:
    """``(state, unloadable, warned)``: the checkpoint a resume would take, how many files at
    final paths newer than it cannot be read, and whether loading it needed a fallback."""
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
    fell_back = any("falling back to an older checkpoint" in str(w.message) for w in caught)
    return state, unloadable, fell_back


def max_steps(kills: int) -> int:
    """Steps of the drill runs: a kill costs about one step of progress; room to spare."""
    return 3 * kills + 6


def reference_run(work: Path, data: Path, kills: int) -> Child:
    """The uninterrupted run, keeping every checkpoint, in ``work/reference``."""
    args = overrides(work / "reference", data, max_steps(kills), "run.keep_last=1000000")
    reference = fit(args)
    if reference.returncode != 0:
        raise RuntimeError(f"uninterrupted training run failed: {reference.stderr[-2000:]}")
    return reference
