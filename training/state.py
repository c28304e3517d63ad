"""What a checkpoint holds, and how a trainer gets it back (or starts from an earlier stage).

``capture`` and ``restore`` are the two halves of exact resume: generator, EMA, discriminator,
optimisers, grad scaler, step, RNG states, skip counters and the data position. Everything is a
tensor or a plain value, so ``torch.load(weights_only=True)`` reads it back.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import CheckpointError, checkpoint_dir, generator_weights, latest_checkpoint
from .config import to_dict

if TYPE_CHECKING:
    from .trainer import Trainer


def capture(trainer: Trainer) -> dict[str, Any]:
    t = trainer
    cuda = t.dist.device.type == "cuda"
    return {
        "config": to_dict(t.config),
        "arch": t.config.model.arch,
        "arch_config": dataclasses.asdict(t.arch_config),
        "generator": t.g.state_dict(),
        "ema": t.ema.module.state_dict(),
        "discriminator": t.d.state_dict() if t.d is not None else {},
        "optim_g": t.opt_g.state_dict(),
        "optim_d": t.opt_d.state_dict() if t.opt_d is not None else {},
        "scaler": t.scaler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "trainer": t.rng.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if cuda else [],
        },
        "counters": {"bad_in_row": t.bad_in_row, "bad_total": t.bad_total},
        "data": {"position": t.position, "global_batch": t.global_batch},
    }


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    t = trainer
    t.g.load_state_dict(state["generator"])
    t.ema.module.load_state_dict(state["ema"])
    t.opt_g.load_state_dict(state["optim_g"])
    if t.d is not None:
        if not state["discriminator"]:
            raise CheckpointError(
                f"{state['path']}: has no discriminator; start the GAN stage in a new run "
                "with model.init_from pointing at this one"
            )
        t.d.load_state_dict(state["discriminator"])
        assert t.opt_d is not None
        t.opt_d.load_state_dict(state["optim_d"])
    t.scaler.load_state_dict(state["scaler"])
    t.step = int(state["step"])
    t.position = int(state["data"]["position"])  # kept even if the batch size changes
    t.bad_in_row = int(state["counters"]["bad_in_row"])
    t.bad_total = int(state["counters"]["bad_total"])
    t.rng.set_state(state["rng"]["trainer"])
    torch.set_rng_state(state["rng"]["torch"])
    if t.dist.device.type == "cuda" and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def resume_or_init(trainer: Trainer) -> dict[str, Any] | None:
    """The run's newest readable checkpoint, to ``restore`` once everything is built; or, for a
    new run with ``model.init_from``, load those generator weights now and return None."""
    t = trainer
    state = latest_checkpoint(checkpoint_dir(t.config.run_dir))
    if state is not None:
        t.log(f"resuming from {state['path']} (step {state['step']})")
        changed = changed_keys(state.get("config", {}), to_dict(t.config))
        if changed:
            t.log(f"note: config differs from the checkpoint's in {', '.join(changed)}")
        return state
    source = t.config.model.init_from
    if source:
        try:
            weights, info = generator_weights(source)
        except CheckpointError as exc:
            raise CheckpointError(
                f"model.init_from: {exc} (train the PSNR stage first, or set model.init_from='')"
            ) from None
        ours = dataclasses.asdict(t.arch_config)
        theirs = dict(info["arch_config"])
        other_scale = {**theirs, "scale": ours["scale"]} == ours and theirs != ours
        if info["arch"] != t.config.model.arch or (theirs != ours and not other_scale):
            raise CheckpointError(
                f"{source}: a {info['arch']} {info['arch_config']} generator cannot start "
                f"a {t.config.model.arch} {ours} run"
            )
        if other_scale:
            # Same trunk, another scale (x2 from x4): take every weight whose shape fits and
            # keep this run's own (ICNR-initialised) upsampling layers for the rest.
            own = t.g.state_dict()
            fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
            t.g.load_state_dict({**own, **fitting})
            kept = sorted(set(own) - set(fitting))
            t.log(
                f"generator trunk initialised from {info['path']} (x{theirs['scale']}); "
                f"own layers kept: {', '.join(kept)}"
            )
        else:
            t.g.load_state_dict(weights)
            t.log(f"generator initialised from {info['path']}")
    return None


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(
        f"{section}.{key}"
        for section, table in new.items()
        for key, value in table.items()
        if old.get(section, {}).get(key, value) != value
    )
