"""Training speed: where a step's time goes (data, generator step, discriminator step).

    PYTHONPATH=. python benchmarks/train_speed.py compact-x4-gan \
        --set 'data.train=["train.safetensors"]' --steps 4

Measures, on the chosen device, with the recipe's own sizes unless overridden:
  * loader: batches/s of the data pipeline alone (workers decode/crop/degrade),
  * psnr:   train steps/s of the generator alone (the recipe with the GAN losses switched off),
  * gan:    train steps/s of the full recipe (G step through the frozen D, then the D step),
and reports it/s, images/s and the share of a fit that would wait for data. Each timed phase
runs one warm-up step first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from training import ddp
from training.config import load_config
from training.data import build_loader
from training.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loader(config, dist: ddp.Dist, steps: int) -> float:  # noqa: ANN001
    loader = iter(build_loader(config, dist, 0, print))
    next(loader)  # workers started and warm
    start = time.perf_counter()
    for _ in range(steps):
        next(loader)
    return steps / (time.perf_counter() - start)


def time_steps(config, dist: ddp.Dist, steps: int) -> float:  # noqa: ANN001
    trainer = Trainer(config, dist, log=lambda _m: None)
    batches = list(itertools.islice(iter(build_loader(config, dist, 0, print)), steps + 1))
    trainer.train_step(batches[0])
    _sync(dist.device)
    start = time.perf_counter()
    for batch in batches[1:]:
        trainer.train_step(batch)
    _sync(dist.device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    base = [
        *args.overrides,
        "model.init_from=''",
        "val.folder=''",
        "run.out_dir='/tmp/train-speed'",
    ]
    config = load_config(args.recipe, base)
    dist = ddp.setup(config.run.device)
    batch = config.data.batch_size
    loader_bps = time_loader(config, dist, args.steps * 2)
    psnr = load_config(args.recipe, [*base, "loss.gan_weight=0", "loss.feature_match_weight=0"])
    g_its = time_steps(psnr, dist, args.steps)
    gan_its = time_steps(config, dist, args.steps) if config.loss.adversarial else g_its
    # With workers running alongside, a step waits when the loader is slower than the step.
    wait = (
        max(0.0, 1 / loader_bps - 1 / gan_its) / (1 / loader_bps) if loader_bps < gan_its else 0.0
    )
    report = {
        "device": str(dist.device),
        "threads": torch.get_num_threads(),
        "workers": config.data.num_workers,
        "batch": batch,
        "crop": config.data.crop_size,
        "loader_batches_per_s": round(loader_bps, 3),
        "loader_images_per_s": round(loader_bps * batch, 2),
        "g_only_it_per_s": round(g_its, 4),
        "gan_it_per_s": round(gan_its, 4),
        "gan_images_per_s": round(gan_its * batch, 3),
        "d_share_of_gan_step": round(1 - gan_its / g_its, 3) if config.loss.adversarial else 0.0,
        "expected_data_wait_share": round(wait, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
