"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is ``<run>/checkpoints/step-<step>.pt``: a dict of tensors and plain values (no
classes, no code), written with ``torch.save`` through a temporary file + rename, and read back
only with ``torch.load(weights_only=True)``. It holds the config, the step, generator, EMA and
discriminator weights, optimiser and grad-scaler state, RNG states and the data position (the
learning-rate schedule is a function of the step, so the step restores it). The newest ``keep``
files are kept (and ``best.pt``, a link to the best one by ``run.best_metric``); a newest file
that cannot be read (truncated by a crash, a full disk) is skipped with a warning in favour of
the one before it.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from upscaler.atomic import atomic_write, remove_stale_temps, temp_path_for
from upscaler.models.checkpoint import ModelFileError, read_safetensors_header

FORMAT = "upscaler-train/1"
NOT_OURS = "not a training checkpoint of this project"
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(Exception):
    """No usable checkpoint; the message names the file or folder and the reason."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(m[1]), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step-<step>.pt`` atomically, then drop all but the newest ``keep``.

    The new file is renamed into place before older ones are pruned, so a kill between the two
    leaves ``keep + 1`` checkpoints (never fewer than ``keep``, never an unloadable newest one);
    the next save prunes the extra one. Pruning first would leave none at all with ``keep=1``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    path = folder / f"step-{step:09d}.pt"
    with atomic_write(path) as handle:
        torch.save({"format": FORMAT, "step": step, **state}, handle)
    for _, old in list_checkpoints(folder)[keep:]:
        old.unlink(missing_ok=True)
    return path


BEST = "best.pt"


def mark_best(path: Path) -> Path:
    """Make ``checkpoints/best.pt`` the checkpoint at ``path``: a hard link (a copy where links
    are not possible), so deleting old ``step-*.pt`` files (``keep_last``) never removes it."""
    target = path.parent / BEST
    temp = temp_path_for(target)
    try:
        os.link(path, temp)
    except OSError:
        shutil.copyfile(path, temp)
    os.replace(temp, target)
    return target


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint safely (tensors and plain values only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, it holds more than tensors and values ({exc})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        # The first sentence: torch's zip reader goes on about "an internal miniz error".
        reason = str(exc).strip().splitlines()[0].split(". ")[0][:160] if str(exc).strip() else ""
        reason = reason or type(exc).__name__
        raise CheckpointError(f"{path}: unreadable, probably truncated ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: {NOT_OURS}")
    return state


def latest_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``folder`` (None if there is none at all).

    Unreadable newer files are skipped with a warning naming them; if every file is unreadable,
    ``CheckpointError`` says so rather than silently starting over.
    """
    candidates = list_checkpoints(folder)
    problems = []
    for _, path in candidates:
        try:
            state = read_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; falling back to an older checkpoint", stacklevel=2)
            problems.append(str(exc))
            continue
        state["path"] = str(path)
        return state
    if problems:
        raise CheckpointError(f"no readable checkpoint in {folder}: {problems[0]}")
    return None


def generator_weights(
    source: str | Path, weights: str = "ema"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Generator weights to start from or to export, and what is known about them.

    ``source``: a training checkpoint or a run folder (its newest checkpoint), whose ``weights``
    are taken (``ema``: the average; ``live``: the trained weights themselves), or a model file
    (``.safetensors``, ``.pth``) of ours or of any architecture spandrel loads, read through
    ``upscaler``'s safe reader. Returns ``(state_dict, info)`` with ``info`` holding ``arch``
    (``training.archs`` names; ``spandrel:<id>`` for architectures we do not train),
    ``arch_config``, ``path`` and, for checkpoints, ``step`` and ``config``.
    """
    if weights not in ("ema", "live"):
        raise ValueError(f"weights must be ema or live, got {weights!r}")
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint, run folder or model file")
    if path.is_dir():
        folder = checkpoint_dir(path) if checkpoint_dir(path).is_dir() else path
        state = latest_checkpoint(folder)
        if state is None:
            raise CheckpointError(f"{path}: no checkpoints in this run folder")
    else:
        state = training_checkpoint(path)
        if state is None:
            return _model_file_weights(path)
    info = {k: state[k] for k in ("arch", "arch_config", "step", "config", "path")}
    info["weights"] = weights
    return state["ema" if weights == "ema" else "generator"], info


def training_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when the file is a ``.pt`` of another kind (or not a
    ``.pt`` at all); a damaged checkpoint is an error."""
    if path.suffix != ".pt":
        return None
    try:
        state = read_checkpoint(path)
    except CheckpointError as exc:
        if str(exc).endswith(NOT_OURS):
            return None
        raise
    state["path"] = str(path)
    return state


def _model_file_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import dataclasses
    import json

    from upscaler.models import ARCHITECTURES
    from upscaler.models.loader import read_model

    from .archs import from_spandrel

    try:
        module, model = read_model(path)
    except ModelFileError as exc:
        raise CheckpointError(str(exc)) from None
    metadata = dict(model.metadata)
    if path.suffix.lower() == ".safetensors":  # spandrel-built models do not carry it along
        metadata = read_safetensors_header(path)[1]
    config = getattr(module, "config", None)
    native = model.arch in ARCHITECTURES and ARCHITECTURES[model.arch].native
    if native and dataclasses.is_dataclass(config):
        arch, arch_config = model.arch, dataclasses.asdict(config)  # type: ignore[arg-type]
    else:
        arch, arch_config = from_spandrel(model.arch, module)
        if not arch_config:  # an architecture we do not train: what the loader knows of it
            arch_config = {"scale": model.scale, "in_channels": model.in_channels}
    info = {
        "arch": arch,
        "arch_config": arch_config,
        "training": json.loads(metadata.get("upscaler.training", "{}")),
        "path": str(path),
        "source": f"{model.arch} ({model.num_params:,} parameters)",
    }
    return module.state_dict(), info
