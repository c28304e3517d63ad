"""DDP through torchrun: 2 CPU processes with the gloo backend train like one process with the
same global batch (the gradients are averaged, each process sees its half of every batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from training_helpers import tiny_overrides, write_texture_tree

from training.checkpoint import latest_checkpoint
from training.cli import main

ROOT = Path(__file__).parents[1]


def _args(tmp: Path, train: Path, batch: int) -> list[str]:
    args = []
    for value in [
        *tiny_overrides("compact-x4-gan", tmp, train),
        f"data.batch_size={batch}",
        "run.max_steps=3",
        "run.save_every=3",
        "optim.warmup_steps=0",
    ]:
        args += ["--set", value]
    return args


@pytest.mark.slow  # a drill: CI runs it (-m slow)
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    train = write_texture_tree(tmp_path / "train")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.cli",
        "fit",
        "compact-x4-gan",
        "-q",
        *_args(tmp_path / "ddp", train, batch=1),
    ]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("done at step 3") == 1  # only rank 0 reports (and saves)
    single = CliRunner().invoke(
        main, ["fit", "compact-x4-gan", "-q", *_args(tmp_path / "one", train, 2)]
    )
    assert single.exit_code == 0, single.output
    run = Path("runs") / "compact-x4-gan" / "checkpoints"
    ddp = latest_checkpoint(tmp_path / "ddp" / run)
    one = latest_checkpoint(tmp_path / "one" / run)
    assert ddp["step"] == one["step"] == 3 and ddp["data"]["global_batch"] == 2
    for part in ("generator", "ema", "discriminator"):
        for name, value in one[part].items():
            assert torch.allclose(ddp[part][name], value, atol=1e-5, rtol=1e-4), (part, name)
