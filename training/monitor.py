"""Watching a run: progress line, JSON-lines metrics, TensorBoard if installed, health warnings."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .contracts import CONTRACTS

# Outputs have "lost diversity" when their spread across a batch falls below this share of the
# ground truth's spread: the generator is making the same image whatever the input (collapse).
MIN_DIVERSITY = 0.2
# Share of output values beyond [-0.02, 1.02] (a little overshoot at edges is normal).
MAX_OUT_OF_RANGE = 0.01
# Gradient norms below this have vanished (a saturated D gives ~1e-18).
MIN_GRADIENT = 1e-8
HEALTH_PATIENCE = 3


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class IntervalMeans:
    """Means of each statistic over the steps since the last ``take()`` that reported it.

    Steps of a ``d_steps``/``g_steps`` cycle report different keys (a D-only step has no G
    losses); each key is averaged over the steps that had it, so nothing logged depends on
    where a log interval happens to fall in the cycle.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def peek(self) -> dict[str, float]:
        return {key: total / self.counts[key] for key, total in self.sums.items()}

    def take(self) -> dict[str, float]:
        means = self.peek()
        self.sums, self.counts = {}, {}
        return means


# What the progress line shows first: G's pixel and adversarial losses, D's loss and logits.
SHOWN_FIRST = ("loss_pixel", "loss_gan", "loss_d", "d_real", "d_fake")


def shown(values: dict[str, float], count: int = 6) -> dict[str, float]:
    """The statistics worth a place on the progress line (losses, D's logits), at most ``count``."""
    keys = [k for k in SHOWN_FIRST if k in values]
    keys += [k for k in values if k.startswith("loss_") and k not in keys]
    return {k.removeprefix("loss_") if k != "loss_d" else k: values[k] for k in keys[:count]}


class Progress:
    """One self-overwriting status line: step, it/s, images/s, share of time waiting for data,
    ETA and the losses (means over the current log interval). Redrawn at most twice a second."""

    def __init__(
        self,
        total: int,
        start: int,
        images_per_step: int,
        *,
        enabled: bool,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.images_per_step, self.enabled = total, images_per_step, enabled
        self.stream = stream or sys.stderr
        self.start_step, self.start_time = start, time.perf_counter()
        self.last_draw = 0.0
        self.data_wait = 0.0
        self.drawn = False  # a status line is on screen without its newline

    def rates(self, step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start_time, 1e-9)
        done = step - self.start_step
        its = done / elapsed
        return {
            "it_per_s": its,
            "images_per_s": its * self.images_per_step,
            "data_wait_share": self.data_wait / elapsed,
            "eta_s": (self.total - step) / its if its > 0 else float("inf"),
        }

    def update(self, step: int, losses: dict[str, float], *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last_draw < 0.5 and step < self.total:
            return
        self.last_draw = now
        r = self.rates(step)
        shown = " ".join(f"{k}={v:.4g}" for k, v in list(losses.items())[:6])
        line = (
            f"\r{step}/{self.total} {r['it_per_s']:.2f} it/s {r['images_per_s']:.1f} img/s "
            f"data {100 * r['data_wait_share']:.0f}% ETA {_format_seconds(r['eta_s'])} {shown}"
        )
        self.stream.write(line[:200].ljust(100))
        self.stream.flush()
        self.drawn = True

    def newline(self) -> None:
        """End the status line so that a message printed next gets a line of its own."""
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def close(self) -> None:
        self.newline()


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``; mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard: Any = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tensorboard = None

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def image(self, tag: str, step: int, pixels: Any) -> None:
        """An ``(H, W, 3)`` uint8 picture (the sample grid) for TensorBoard's image tab."""
        if self.enabled and self.tensorboard is not None:
            self.tensorboard.add_image(tag, pixels, step, dataformats="HWC")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class Health:
    """Turns logged statistics into warnings a person can act on.

    Each check must hold for ``patience`` log intervals in a row before it warns (once per
    streak). The D checks read their thresholds from the loss's contract, since ``d_real`` and
    ``d_fake`` mean different things for each loss (``training.contracts``).
    """

    def __init__(self, gan_type: str = "", patience: int = HEALTH_PATIENCE) -> None:
        self.contract = CONTRACTS.get(gan_type)
        self.patience = patience
        self.streaks: dict[str, int] = {}

    def _streak(self, name: str, failing: bool) -> bool:
        self.streaks[name] = self.streaks.get(name, 0) + 1 if failing else 0
        return self.streaks[name] == self.patience

    def check(self, values: dict[str, float]) -> list[tuple[str, str]]:
        """``(check, message)`` for each warning due at this log interval."""
        out = []
        for name, failing, message in self._checks(values):
            if self._streak(name, failing):
                out.append((name, message))
        return out

    def _checks(self, v: dict[str, float]) -> list[tuple[str, bool, str]]:
        checks = []
        c, n = self.contract, self.patience
        if c is not None and "d_real" in v and "d_fake" in v:
            gap, kind = v["d_real"] - v["d_fake"], c.kind
            if c.d_wins is not None:
                checks.append(
                    (
                        "d_wins",
                        gap > c.d_wins,
                        f"the discriminator wins outright (D(real) - D(fake) = {gap:.3g} > "
                        f"{c.d_wins:g} for {kind}, {n} log intervals): G learns little from it; "
                        "lower optim.d_learning_rate or raise optim.g_steps",
                    )
                )
            if c.g_fools is not None:
                checks.append(
                    (
                        "g_fools_d",
                        -gap > c.g_fools,
                        f"the generator fools the discriminator outright (D(fake) - D(real) = "
                        f"{-gap:.3g} > {c.g_fools:g} for {kind}): D is too slow or frozen and G "
                        "exploits it; raise optim.d_learning_rate or optim.d_steps",
                    )
                )
            worst = max(abs(v["d_real"]), abs(v["d_fake"]))
            checks.append(
                (
                    "logits",
                    worst > c.max_logit,
                    f"D's outputs blow up (|D| = {worst:.3g} > {c.max_logit:g} for {kind}): "
                    "constrain D (spectral norm, loss.r1_weight) or lower its learning rate",
                )
            )
        if "out_of_range" in v:
            checks.append(
                (
                    "out_of_range",
                    v["out_of_range"] > MAX_OUT_OF_RANGE,
                    f"{100 * v['out_of_range']:.1f}% of the generator's outputs leave [0, 1] "
                    "by more than 2%: it is chasing something other than the pictures",
                )
            )
        if "grad_norm_g" in v:
            checks.append(
                (
                    "g_gradient",
                    v["grad_norm_g"] < MIN_GRADIENT,
                    f"the generator's gradients vanish (norm {v['grad_norm_g']:.3g}): it stopped "
                    "learning",
                )
            )
        if "grad_adv" in v:
            checks.append(
                (
                    "adversarial_gradient",
                    v["grad_adv"] < MIN_GRADIENT,
                    f"the adversarial gradient reaching the generator vanishes "
                    f"({v['grad_adv']:.3g} per pixel): D saturates; it is no longer teaching G",
                )
            )
        if "diversity" in v:
            checks.append(
                (
                    "diversity",
                    v["diversity"] < MIN_DIVERSITY,
                    f"outputs lose diversity ({v['diversity']:.2f} of the ground truth's spread "
                    "across a batch): possible mode collapse; lower loss.gan_weight",
                )
            )
        return checks
