"""Training speed of a recipe (default: the compact x4 GAN, G + D + losses): steps/s, images/s
and the share of step time spent waiting on data.

    python benchmarks/training.py                       # CPU-sized: batch 4, crop 128, 20 steps
    python benchmarks/training.py --batch 16 --crop 256 --workers 6 --data data/train.safetensors
    python benchmarks/training.py --set degrade.where=trainer   # blur/resize/noise on the device

A fit's own loop is timed: each step waits for the loader's next batch (``wait``) and then runs
``train_step`` (G step through the frozen D, the D step, EMA). The loader's workers run alongside,
as in a fit, so ``wait`` is what the data pipeline costs the step. Warm-up steps come first.
Defaults fit a 2-core CPU; set the recipe's own sizes on a GPU. Results: a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script, ``training`` would otherwise be this file


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config, dist, steps: int, warmup: int) -> dict[str, float]:  # noqa: ANN001
    """Seconds waiting for data and in ``train_step`` over ``steps`` timed steps."""
    from training.data import build_loader
    from training.trainer import Trainer

    trainer = Trainer(config, dist, log=lambda _m: None)
    batches = iter(build_loader(config, dist, 0, print))
    for _ in range(warmup):  # workers started, kernels chosen, optimiser state allocated
        trainer.train_step(next(batches))
    _sync(dist.device)
    wait = compute = 0.0
    samples = made_in_workers = 0
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(batches)
        ready = time.perf_counter()
        trainer.train_step(batch)
        _sync(dist.device)
        wait += ready - start
        compute += time.perf_counter() - ready
        samples += len(batch["ready"])
        made_in_workers += int(batch["ready"].sum())
    return {"wait_s": wait, "compute_s": compute, "worker_share": made_in_workers / samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="compact-x4-gan")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128, help="ground-truth crop side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--data", default=str(ROOT / "samples" / "textures"), help="folder or packed crops"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    from training import ddp
    from training.config import load_config

    out_dir = tempfile.mkdtemp(prefix="bench-training-")
    config = load_config(
        args.recipe,
        [
            f"data.train=[{json.dumps(args.data)}]",
            f"data.batch_size={args.batch}",
            f"data.crop_size={args.crop}",
            f"data.num_workers={args.workers}",
            f"run.device={json.dumps(args.device)}",
            "model.init_from=''",
            "val.folder=''",
            f"run.out_dir={json.dumps(out_dir)}",
            *args.overrides,
        ],
    )
    dist = ddp.setup(config.run.device)
    times = measure(config, dist, args.steps, args.warmup)
    total = times["wait_s"] + times["compute_s"]
    report = {
        "recipe": args.recipe,
        "model": f"{config.model.arch} {config.model.num_features}f/{config.model.num_blocks}b "
        f"x{config.model.scale}",
        "discriminator": config.discriminator.arch if config.loss.adversarial else "none",
        "device": str(dist.device),
        "threads": torch.get_num_threads(),
        "workers": config.data.workers(),
        "batch": config.data.batch_size,
        "crop": config.data.crop_size,
        "steps": args.steps,
        "steps_per_s": round(args.steps / total, 4),
        "images_per_s": round(args.steps * config.data.batch_size / total, 3),
        "step_ms": round(1000 * total / args.steps, 1),
        "data_wait_share": round(times["wait_s"] / total, 4),
        "degrade_where": config.degrade.where,
        "lq_made_in_workers": round(times["worker_share"], 3),  # the rest: on the device
    }
    print(f"{'recipe':<16}{'device':<8}{'batch':>6}{'crop':>6}{'steps/s':>9}{'img/s':>8}"
          f"{'ms/step':>9}{'data wait':>11}")  # fmt: skip
    print(
        f"{report['recipe']:<16}{report['device']:<8}{report['batch']:>6}{report['crop']:>6}"
        f"{report['steps_per_s']:>9.3f}{report['images_per_s']:>8.2f}{report['step_ms']:>9.0f}"
        f"{report['data_wait_share']:>10.1%}"
    )
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
