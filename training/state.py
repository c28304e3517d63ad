"""Everything a run is, built whole: models, optimisers, grad scaler, EMA, RNG and counters.

``TrainState(config, device)`` builds every part at once (generator and discriminator seeded,
moved to the device, then the EMA copy and the optimisers over the moved parameters), so nothing
ever sees a half-built trainer. ``state_dict()`` / ``load_state_dict()`` are the two halves of
exact resume, as on a torch module: every entry is a tensor or a plain value, so
``torch.load(weights_only=True)`` reads a checkpoint back. Starting weights from another file
(``model.init_from``) is ``training.transfer``'s job, on a built state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from upscaler.engine.load import native_bf16

from .checkpoint import CheckpointError
from .config import Config, ConfigError, to_dict
from .discriminator import build_discriminator
from .generator import ModelEMA, build


def autocast_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``run.precision`` on ``device`` (None: full fp32). ``auto`` is bf16
    where the device computes it natively (a GPU from Ampere on, a CPU with AVX512-BF16 or AMX:
    about 2x faster than fp32 there) and fp32 elsewhere: an AVX2 CPU only emulates bf16, and a
    bf16 step there took 25x an fp32 one (``benchmarks/training.py texture-x2-clean-cpu --batch 8
    --crop 96 --workers 1``, one thread of a 2-core AMD EPYC: 72.9 s against 2.9 s a step)."""
    precision = config.run.precision
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def emulated_precision(config: Config, device: torch.device) -> str | None:
    """A note where ``run.precision`` asks for a half type this device only emulates."""
    precision = config.run.precision
    if precision == "bf16" and not native_bf16(device):
        return (
            "note: run.precision='bf16' on a device without native bf16 (no AVX512-BF16/AMX, or "
            "a GPU before Ampere): steps run far slower than in fp32 (25x on an AVX2 CPU); "
            "run.precision='auto' picks fp32 here"
        )
    return None


@dataclass
class Counters:
    """Plain-value progress of a run."""

    step: int = 0
    position: int = 0  # global index of the next training sample
    bad_in_row: int = 0  # non-finite steps in a row (skipped)
    bad_total: int = 0
    best_value: float | None = None  # of ``run.best_metric``, at ``best_step``
    best_step: int = -1

    def record_best(self, value: float, higher_is_better: bool) -> bool:
        """Whether ``value`` at this step beats the best so far (then it becomes the best)."""
        old = self.best_value
        if old is not None and not (value > old if higher_is_better else value < old):
            return False
        self.best_value, self.best_step = value, self.step
        return True


def freeze(module: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Keep the parameters of ``module`` whose names start with one of ``prefixes`` as they are
    (no gradient, so no optimiser step); a prefix that names no parameter is an error."""
    names = [name for name, _ in module.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ConfigError(f"model.frozen: no parameter starts with {prefix!r}")
    for name, parameter in module.named_parameters():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)


class TrainState:
    """The models, optimisers, grad scaler, EMA, RNG and counters of one run (on ``device``)."""

    def __init__(self, config: Config, device: torch.device, *, global_batch: int = 0) -> None:
        run, optim = config.run, config.optim
        self.config, self.device = config, device
        self.global_batch = global_batch or config.data.batch_size
        self.memory_format = (
            torch.channels_last
            if run.channels_last and device.type == "cuda"
            else torch.preserve_format
        )
        self.g, self.arch_config = build(config.model, run.seed)
        freeze(self.g, config.model.frozen)
        self.g.to(device, memory_format=self.memory_format)
        self.d: nn.Module | None = None
        if config.loss.adversarial:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run.seed + 1)
                self.d = build_discriminator(
                    config.discriminator, clip_value=config.loss.clip_value
                )
            self.d.to(device, memory_format=self.memory_format)
        self.ema = ModelEMA(self.g, optim.ema_decay, warmup=optim.ema_warmup)
        self.opt_g = torch.optim.AdamW(
            [p for p in self.g.parameters() if p.requires_grad],
            lr=optim.learning_rate,
            betas=optim.betas,
            weight_decay=optim.weight_decay,
        )
        self.opt_d: torch.optim.Optimizer | None = None
        if self.d is not None:
            self.opt_d = torch.optim.AdamW(
                self.d.parameters(),
                lr=optim.d_learning_rate,
                betas=optim.betas,
                weight_decay=optim.weight_decay,
            )
        fp16 = autocast_dtype(config, device) == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.rng = torch.Generator().manual_seed(run.seed + 2)  # GP mixing weights
        self.counters = Counters()

    def state_dict(self) -> dict[str, Any]:
        c = self.counters
        cuda = self.device.type == "cuda"
        return {
            "config": to_dict(self.config),
            "step": c.step,
            "arch": self.config.model.arch,
            "arch_config": dataclasses.asdict(self.arch_config),  # type: ignore[call-overload]
            "generator": self.g.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_updates": self.ema.updates,
            "discriminator": self.d.state_dict() if self.d is not None else {},
            "optim_g": self.opt_g.state_dict(),
            "optim_d": self.opt_d.state_dict() if self.opt_d is not None else {},
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "trainer": self.rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if cuda else [],
            },
            "counters": {
                "bad_in_row": c.bad_in_row,
                "bad_total": c.bad_total,
                "best_value": c.best_value,
                "best_step": c.best_step,
            },
            "data": {"position": c.position, "global_batch": self.global_batch},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint of this run (``state`` from ``read_checkpoint``)."""
        self.g.load_state_dict(state["generator"])
        self.ema.module.load_state_dict(state["ema"])
        # Checkpoints from before the EMA warm-up: as if warmed up long ago.
        self.ema.updates = int(state.get("ema_updates", 1 << 30))
        self.opt_g.load_state_dict(state["optim_g"])
        if self.d is not None:
            if not state["discriminator"]:
                raise CheckpointError(
                    f"{state.get('path', 'checkpoint')}: has no discriminator; start the GAN "
                    "stage in a new run with model.init_from pointing at this one"
                )
            self.d.load_state_dict(state["discriminator"])
            assert self.opt_d is not None
            self.opt_d.load_state_dict(state["optim_d"])
        self.scaler.load_state_dict(state["scaler"])
        counters = state["counters"]
        self.counters = Counters(
            step=int(state["step"]),
            position=int(state["data"]["position"]),  # kept even if the batch size changes
            bad_in_row=int(counters["bad_in_row"]),
            bad_total=int(counters["bad_total"]),
            best_value=counters.get("best_value"),
            best_step=int(counters.get("best_step", -1)),
        )
        self.rng.set_state(state["rng"]["trainer"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``section.key`` names whose values differ between two ``to_dict`` configs."""
    return sorted(
        f"{section}.{key}"
        for section, table in new.items()
        for key, value in table.items()
        if old.get(section, {}).get(key, value) != value
    )
