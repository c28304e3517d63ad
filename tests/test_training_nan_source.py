"""A run that stops on non-finite losses names the files its bad batches came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from training_helpers import tiny_overrides, write_texture_tree

import training.trainer as trainer_module
from training.cli import main
from training.pack import pack_folders


def _pack_with_a_bad_file(tmp_path: Path) -> tuple[Path, Path]:
    """A real pack of real PNG files, one of them ``glitch.png`` (the one the test makes
    non-finite)."""
    folder = write_texture_tree(tmp_path / "textures", size=24, count=3)
    rng = np.random.default_rng(5)
    bad = folder / "glitch.png"
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(bad)
    pack = tmp_path / "crops.safetensors"
    pack_folders([folder], pack, crop_size=16, per_image=2, workers=1)
    return pack, bad


def _poison_inputs_from(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Samples cut from ``name`` decode to NaN, as a float (HDR) texture holding NaN would:
    the trainer's inputs turn non-finite for exactly the batches that hold such a sample."""
    real = trainer_module.Trainer._inputs

    def inputs(self: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        lq, gt = real(self, batch)
        rows = [i for i, source in enumerate(batch["source"]) if name in source]
        gt[rows] = float("nan")
        return lq, gt

    monkeypatch.setattr(trainer_module.Trainer, "_inputs", inputs)


def test_a_nan_stop_names_the_source_files_of_its_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack, bad = _pack_with_a_bad_file(tmp_path)
    _poison_inputs_from(monkeypatch, "glitch.png")
    recipe = "compact-x4-psnr"
    args = ["fit", recipe, "-q"]
    extra = ["run.max_steps=40", "run.max_bad_steps=2", "data.batch_size=4"]
    for value in [*tiny_overrides(recipe, tmp_path, pack), *extra]:
        args += ["--set", value]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "2 non-finite steps in a row" in result.output
    line = next(x for x in result.output.splitlines() if "non-finite steps in a row" in x)
    assert f"{bad} (crop " in line and str(pack) in line  # the file, the crop and the pack
    run_dir = tmp_path / "runs" / recipe
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    nonfinite = [r for r in records if r["kind"] == "nonfinite"]
    assert len(nonfinite) >= 2
    assert all(any(str(bad) in s for s in r["sources"]) for r in nonfinite)
    assert all(len(r["sources"]) == 4 for r in nonfinite)  # the whole batch, in order
