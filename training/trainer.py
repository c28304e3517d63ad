"""The training loop: PSNR stage (pixel losses) or GAN stage (plus a discriminator), one file.

Read ``fit`` top to bottom: set up, resume, then per batch: make the low-res input, a generator
step with the discriminator frozen (``requires_grad_(False)``: the adversarial gradient must still
flow *through* D into G, which ``no_grad`` or ``inference_mode`` would silently cut), a
discriminator step on real and detached fake images, the EMA update, and the periodic logging,
validation and checkpoints. Non-finite losses skip the step; too many in a row stop the run with
its last good checkpoint untouched.
"""

from __future__ import annotations

import math
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import ddp
from .checkpoint import checkpoint_dir, latest_checkpoint, mark_best, save_checkpoint
from .config import METRICS, Config, to_dict
from .contracts import CONTRACTS, cautions
from .data import build_loader, check_paths
from .distances import InceptionFeatures
from .losses import (
    checker_loss,
    clip_weights_,
    colour_consistency_loss,
    detail_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    gradient_penalty,
    hostile_inputs,
    lattice_loss,
    low_pass_loss,
    mix_real_fake,
    pixel_loss,
    r1_penalty,
    range_loss,
    step_loss,
)
from .metrics import diversity, out_of_range
from .monitor import Health, IntervalMeans, MetricsLog, Progress, shown
from .perceptual import (
    ALEXNET_FILE,
    SRFeatures,
    Teacher,
    VGGFeatures,
    build_lpips,
    lpips_loss,
    sr_feature_loss,
    vgg_perceptual_loss,
    weights_available,
)
from .recipe import finish_batch
from .schedule import lr_factor
from .state import TrainState, autocast_dtype, changed_keys, emulated_precision
from .transfer import initialise
from .validate import Validation, describe, validate, write_sample_grid


@dataclass(frozen=True)
class FitResult:
    step: int
    status: str  # "done", "interrupted", "diverged", "nothing to do"
    checkpoint: str | None
    message: str = ""


class Trainer:
    """One run: its ``TrainState``, the losses, and the loop (``fit``)."""

    def __init__(
        self, config: Config, dist: ddp.Dist | None = None, log: Callable[[str], None] = print
    ) -> None:
        check_paths(config)
        self.config, self.dist = config, dist or ddp.Dist()
        self.log = log if self.dist.main else (lambda _message: None)
        run, device = config.run, self.dist.device
        if run.threads:
            torch.set_num_threads(run.threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        torch.manual_seed(run.seed)  # for library code that draws from the global generator
        self.amp_dtype = autocast_dtype(config, device)
        note = emulated_precision(config, device)
        if note:
            self.log(note)
        self.state = TrainState(
            config, device, global_batch=config.data.batch_size * self.dist.world
        )
        # The newest good checkpoint: the one resumed from, then each one this run saves.
        self.checkpoint: str | None = None
        resumed = latest_checkpoint(checkpoint_dir(config.run_dir))
        if resumed is not None:
            self.log(f"resuming from {resumed['path']} (step {resumed['step']})")
            changed = changed_keys(resumed.get("config", {}), to_dict(config))
            if changed:
                self.log(f"note: config differs from the checkpoint's in {', '.join(changed)}")
            self.state.load_state_dict(resumed)
            self.checkpoint = resumed["path"]
        else:
            initialise(self.state, self.log)
        self.cautions = (
            cautions(
                config.loss.gan_type,
                clip_value=config.loss.clip_value,
                spectral_norm=config.discriminator.spectral_norm,
                r1_weight=config.loss.r1_weight,
            )
            if config.loss.adversarial
            else []
        )
        for note in self.cautions:
            self.log(f"warning: {note}")
        # DDP wrappers sync gradients; the G step calls the bare D (no gradients of its own).
        self.g_train: nn.Module = self.state.g
        self.d_train: nn.Module | None = self.state.d
        if self.dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.g_train = DistributedDataParallel(self.state.g, device_ids=ids)
            if self.state.d is not None:
                self.d_train = DistributedDataParallel(self.state.d, device_ids=ids)
        if run.compile:
            self.g_train = torch.compile(self.g_train)  # type: ignore[assignment]
        loss = config.loss
        self.lpips = build_lpips().to(device) if loss.lpips_weight > 0 else None
        self.vgg = VGGFeatures().to(device) if loss.vgg_weight > 0 else None
        self.sr_features = (
            SRFeatures(loss.sr_feature_model, loss.sr_feature_blocks).to(device)
            if loss.sr_feature_weight > 0
            else None
        )
        self.teacher = (
            Teacher(loss.detail_teacher, config.model.scale).to(device)
            if loss.detail_weight > 0
            else None
        )
        self.val_lpips = self.lpips
        if self.val_lpips is None and weights_available(ALEXNET_FILE) and config.val.folder:
            self.val_lpips = build_lpips().to(device)
        self.inception = (
            InceptionFeatures().to(device) if config.val.fid and config.val.folder else None
        )

    @property
    def step(self) -> int:
        return self.state.counters.step

    # -- one iteration ----------------------------------------------------------------------------

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        lq, gt = finish_batch(batch, self.config.model.scale, self.dist.device)
        memory = self.state.memory_format
        return lq.contiguous(memory_format=memory), gt.contiguous(memory_format=memory)

    def _autocast(self) -> Any:
        device = self.dist.device.type
        return torch.autocast(
            device, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _generator_losses(
        self, sr: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor, normal: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        loss, scale, d = self.config.loss, self.config.model.scale, self.state.d
        terms = {"pixel": loss.pixel_weight * pixel_loss(loss.pixel, sr, gt)}
        if loss.colour_weight:
            terms["colour"] = loss.colour_weight * colour_consistency_loss(sr, lq, scale)
        if loss.step_weight:
            period = 4 * scale  # the input's texels, and the 4x4 blocks of block compression
            terms["step"] = loss.step_weight * step_loss(sr, gt, period, loss.step_window)
        if loss.checker_weight:
            terms["checker"] = loss.checker_weight * checker_loss(sr, gt, loss.step_window)
        if loss.lattice_weight:
            lattice = lattice_loss(sr, gt, scale, loss.step_window)
            terms["lattice"] = loss.lattice_weight * lattice
        if loss.low_pass_weight:
            terms["low_pass"] = loss.low_pass_weight * low_pass_loss(sr, gt, scale)
        if loss.range_weight:
            # drawn from the step number, so a resumed run sees the same inputs
            draws = torch.Generator().manual_seed(self.config.run.seed * 1_000_003 + self.step)
            side = max(8, lq.shape[-1])
            hostile = hostile_inputs(loss.range_count, side, draws).to(lq.device, lq.dtype)
            with self._autocast():
                memory = self.state.memory_format
                wild = self.g_train(hostile.contiguous(memory_format=memory)).float()
            terms["range"] = loss.range_weight * range_loss(wild)
        if self.teacher is not None:
            with self._autocast():
                taught = self.teacher(lq).float()
            terms["detail"] = loss.detail_weight * detail_loss(sr, taught, scale)
        colour = ~normal.to(sr.device)  # perceptual nets know photos, not vector fields
        if self.lpips is not None and bool(colour.any()):
            terms["lpips"] = loss.lpips_weight * lpips_loss(sr[colour], gt[colour], self.lpips)
        if self.vgg is not None and bool(colour.any()):
            terms["vgg"] = loss.vgg_weight * vgg_perceptual_loss(sr[colour], gt[colour], self.vgg)
        if self.sr_features is not None and bool(colour.any()):
            with self._autocast():
                sr_term = sr_feature_loss(sr[colour], gt[colour], self.sr_features)
            terms["sr_feature"] = loss.sr_feature_weight * sr_term.float()
        if d is not None:
            with self._autocast():
                logits, features = d(torch.cat([gt, sr]))
            real, fake = logits.float().chunk(2)
            if loss.gan_weight:
                terms["gan"] = loss.gan_weight * generator_loss(loss.gan_type, real, fake)
            if loss.feature_match_weight:
                pairs = [f.float().chunk(2) for f in features]
                fm = feature_matching_loss([p[1] for p in pairs], [p[0] for p in pairs])
                terms["feature_match"] = loss.feature_match_weight * fm
        return terms

    def _apply(
        self,
        total: torch.Tensor,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        name: str,
        stats: dict[str, float],
    ) -> bool:
        """Backward and step unless the loss or gradients are not finite; returns success."""
        scaler = self.state.scaler
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        clip = self.config.optim.grad_clip or math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), clip))
        stats[f"grad_norm_{name}"] = norm
        scaler_handles_overflow = scaler.is_enabled() and math.isfinite(float(total.detach()))
        bad = not math.isfinite(float(total.detach())) or (
            not math.isfinite(norm) and not scaler_handles_overflow
        )
        if ddp.any_true(self.dist, bad):
            optimizer.zero_grad(set_to_none=True)
            return False
        scaler.step(optimizer)
        return True

    def g_step(
        self,
        lq: torch.Tensor,
        gt: torch.Tensor,
        normal: torch.Tensor,
        lr_scale: float,
        stats: dict[str, float],
        *,
        measure: bool = False,
    ) -> tuple[torch.Tensor, bool]:
        """Update G on one batch (D frozen, not detached: its gradient must reach G).
        Returns the output and whether the step was taken (False: non-finite, skipped)."""
        s = self.state
        for group in s.opt_g.param_groups:
            group["lr"] = self.config.optim.learning_rate * lr_scale
        if s.d is not None:
            s.d.requires_grad_(False).eval()
        with self._autocast():
            sr = self.g_train(lq).float()
        terms = self._generator_losses(sr, gt, lq, normal)
        total = torch.stack(list(terms.values())).sum()
        stats.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        if measure and "gan" in terms:
            # Per pixel: the gradient of a mean over N values is 1/N of each value's own.
            (grad,) = torch.autograd.grad(terms["gan"], sr, retain_graph=True)
            unweighted = grad / self.config.loss.gan_weight
            stats["grad_adv"] = float(unweighted.norm() * math.sqrt(unweighted.numel()))
        return sr, self._apply(total, s.g, s.opt_g, "g", stats)

    def d_step(
        self, gt: torch.Tensor, fake: torch.Tensor, lr_scale: float, stats: dict[str, float]
    ) -> bool:
        """Update D on real and (detached) generated images, with the penalties its loss and
        the config ask for (``training.contracts``); returns whether the step was taken."""
        s, loss = self.state, self.config.loss
        assert s.d is not None and self.d_train is not None and s.opt_d is not None
        s.d.requires_grad_(True).train()
        for group in s.opt_d.param_groups:
            group["lr"] = self.config.optim.d_learning_rate * lr_scale
        gp = CONTRACTS[loss.gan_type].penalty == "gp"
        real_in = gt.detach().requires_grad_(True) if loss.r1_weight else gt
        parts = [real_in, fake.detach()]
        if gp:
            parts.append(mix_real_fake(gt, fake, s.rng))
        with self._autocast():
            logits = self.d_train(torch.cat(parts))[0].float()
        n = len(gt)
        real, fake_logits = logits[:n], logits[n : 2 * n]
        d_loss = discriminator_loss(loss.gan_type, real, fake_logits)
        if gp:
            penalty = gradient_penalty(logits[2 * n :], parts[2])
            d_loss = d_loss + loss.gp_weight * penalty
            stats["gp"] = float(penalty.detach())
        if loss.r1_weight:
            penalty = r1_penalty(real, real_in)
            d_loss = d_loss + 0.5 * loss.r1_weight * penalty
            stats["r1"] = float(penalty.detach())
        stats.update(
            loss_d=float(d_loss.detach()),
            d_real=float(real.detach().mean()),
            d_fake=float(fake_logits.detach().mean()),
        )
        ok = self._apply(d_loss, s.d, s.opt_d, "d", stats)
        if ok and loss.clip_value:
            clip_weights_(s.d, loss.clip_value)
        return ok

    def train_step(self, batch: dict[str, Any], *, measure: bool = False) -> dict[str, float]:
        """One batch: a G step and/or a D step (per the d_steps/g_steps cycle), then the EMA.
        ``measure``: also measure the adversarial gradient reaching G (costs a D backward)."""
        s, optim = self.state, self.config.optim
        counters = s.counters
        factor = lr_factor(counters.step, self.config.run.max_steps, optim)
        phase = counters.step % max(optim.d_steps, optim.g_steps)
        update_g = phase < optim.g_steps
        update_d = s.d is not None and phase < optim.d_steps
        lq, gt = self._inputs(batch)
        stats: dict[str, float] = {"lr": optim.learning_rate * factor}
        if update_g:
            sr, g_ok = self.g_step(lq, gt, batch["normal"], factor, stats, measure=measure)
        else:
            with torch.no_grad(), self._autocast():
                sr = s.g(lq).float()
            g_ok = True
        d_ok = self.d_step(gt, sr, factor, stats) if update_d and g_ok else True
        s.scaler.update()
        if update_g and g_ok:  # the average moves only when G did
            s.ema.update(s.g)
        if g_ok and d_ok:
            counters.bad_in_row = 0
        else:
            counters.bad_in_row += 1
            counters.bad_total += 1
        with torch.no_grad():
            stats["diversity"] = diversity(sr, gt)
            stats["out_of_range"] = out_of_range(sr)
        stats["skipped_total"] = float(counters.bad_total)
        counters.step += 1
        counters.position += s.global_batch
        return stats

    # -- the run ----------------------------------------------------------------------------------

    def run_validation(self, metrics: MetricsLog, val: Validation) -> bool:
        """Validate the EMA generator (main process); returns whether it is the best so far by
        ``run.best_metric`` (the same answer on every process)."""
        best = False
        if self.dist.main and val.images:
            values, triples = validate(
                self.state.ema.module,
                val.images,
                val.seams,
                arch=self.config.model.arch,
                scale=self.config.model.scale,
                device=self.dist.device,
                lpips_model=self.val_lpips,
                inception=val.inception,
            )
            metrics.write("val", self.step, values)
            grid = write_sample_grid(
                self.config.run_dir / "samples" / f"step-{self.step:09d}.png",
                triples,
                self.config.model.scale,
                self.config.val.samples,
            )
            if grid is not None:
                metrics.image("val/samples", self.step, grid)
            self.log(f"step {self.step} validation: {describe(values, val.baselines)}")
            best = self._is_best(values)
        best = ddp.any_true(self.dist, best)
        ddp.barrier(self.dist)
        return best

    def _is_best(self, values: dict[str, float]) -> bool:
        metric = self.config.run.best_metric
        if not metric or metric not in values:
            return False
        return self.state.counters.record_best(values[metric], METRICS[metric])

    def save(self, best: bool = False) -> str | None:
        """Checkpoint this step (atomically; ``best``: also as ``checkpoints/best.pt``)."""
        path = None
        if self.dist.main:
            folder = checkpoint_dir(self.config.run_dir)
            state = self.state.state_dict()
            written = save_checkpoint(folder, self.step, state, self.config.run.keep_last)
            path = self.checkpoint = str(written)
            if best:
                self.log(
                    f"best {self.config.run.best_metric} so far "
                    f"({self.state.counters.best_value:.4g}): {mark_best(written)}"
                )
        ddp.barrier(self.dist)
        return path

    def _load_validation(self, metrics: MetricsLog) -> Validation:
        """Held-out images, and bicubic and Lanczos scores on them (logged once per fit)."""
        if not self.dist.main:
            return Validation([], [], {})
        val = Validation.load(self.config, self.dist.device, self.val_lpips, self.inception)
        scores = {f"{n}_{k}": v for n, values in val.baselines.items() for k, v in values.items()}
        metrics.write("baseline", self.step, scores)
        for name, values in val.baselines.items():
            self.log(f"{name} on {len(val.images)} validation images: {describe(values, {})}")
        return val

    def fit(self) -> FitResult:
        config, run = self.config, self.config.run
        if self.step >= run.max_steps:
            return FitResult(self.step, "nothing to do", None, f"already at step {self.step}")
        metrics = MetricsLog(config.run_dir, enabled=self.dist.main)
        metrics.write("config", self.step, {"config": to_dict(config), "world": self.dist.world})
        for note in self.cautions:
            metrics.write("warning", self.step, {"check": "gan_contract", "message": note})
        val = self._load_validation(metrics)
        gan_type = config.loss.gan_type if config.loss.adversarial else ""
        health, interval = Health(gan_type), IntervalMeans()
        progress = Progress(
            run.max_steps,
            self.step,
            self.state.global_batch,
            enabled=run.progress and self.dist.main,
        )
        log = self.log
        self.log = lambda message: (progress.newline(), log(message))[-1]
        stop = {"flag": False}
        previous = _install_interrupt(stop)
        last_path, status, message, save_due = None, "done", "", False
        loader = iter(build_loader(config, self.dist, self.state.counters.position, self.log))
        suspects: list[str] = []  # the sources of the current run of non-finite steps
        try:
            if self.step == 0:  # the starting point; a later step must beat it to be "best"
                self.run_validation(metrics, val)
            while self.step < run.max_steps:
                waited = time.perf_counter()
                batch = next(loader)
                progress.data_wait += time.perf_counter() - waited
                upcoming = self.step + 1
                measure = upcoming % run.log_every == 0 or upcoming == run.max_steps
                interval.add(self.train_step(batch, measure=measure))
                bad_in_row = self.state.counters.bad_in_row
                suspects = _suspects(suspects if bad_in_row > 1 else [], batch, bad_in_row)
                if bad_in_row:
                    metrics.write("nonfinite", self.step, {"sources": _sources(batch)})
                if bad_in_row >= run.max_bad_steps:
                    status, last_path = "diverged", self.checkpoint
                    message = (
                        f"stopped: {bad_in_row} non-finite steps in a row at step {self.step};"
                        + (
                            " the last good checkpoint is intact"
                            if last_path
                            else " no checkpoint had been written yet"
                        )
                        + f"; those batches held samples from {_listed(suspects)}"
                    )
                    break
                progress.update(self.step, shown(interval.peek()))
                last = self.step == run.max_steps
                if self.step % run.log_every == 0 or last:
                    values = {**ddp.mean(self.dist, interval.take()), **progress.rates(self.step)}
                    metrics.write("train", self.step, values)
                    for check, warning in health.check(values):
                        self.log(f"warning: step {self.step}: {warning}")
                        metrics.write("warning", self.step, {"check": check, "message": warning})
                best = False
                if self.step % run.val_every == 0 or last:
                    best = self.run_validation(metrics, val)
                # A periodic save waits out a run of skipped steps: the newest checkpoint
                # should be one taken while training was healthy.
                save_due = save_due or self.step % run.save_every == 0
                interrupted = ddp.any_true(self.dist, stop["flag"])
                if (save_due and not bad_in_row) or best or last or interrupted:
                    last_path, save_due = self.save(best=best), False
                    if interrupted:
                        status, message = "interrupted", f"saved at step {self.step}"
                        break
            if self.state.counters.best_step == 0 and self.step > 0:
                self.log(
                    f"note: no step beat the starting weights by {run.best_metric}; "
                    "no best.pt was kept"
                )
        finally:
            self.log = log
            signal.signal(signal.SIGINT, previous)
            progress.close()
            metrics.close()
        return FitResult(self.step, status, last_path, message)


def _sources(batch: dict[str, Any]) -> list[str]:
    """The files a batch's samples came from (this process's share of it), in batch order."""
    return [str(s) for s in batch.get("source", [])]


def _suspects(known: list[str], batch: dict[str, Any], bad_in_row: int) -> list[str]:
    """``known`` plus the sources of ``batch`` when its step was non-finite, each once."""
    if not bad_in_row:
        return []
    return list(dict.fromkeys([*known, *_sources(batch)]))


def _listed(sources: list[str], most: int = 8) -> str:
    """``sources`` for a one-line message: the first ``most``, then how many more."""
    if not sources:
        return "(no recorded source)"
    shown = ", ".join(sources[:most])
    return shown + (f" and {len(sources) - most} more" if len(sources) > most else "")


def _install_interrupt(stop: dict[str, bool]) -> Any:
    """First Ctrl-C: finish the step, save, stop. Second: stop at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        warnings.warn(
            "interrupted: saving a checkpoint after this step (Ctrl-C again to abort)", stacklevel=1
        )

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        return signal.getsignal(signal.SIGINT)
