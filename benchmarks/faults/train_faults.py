"""Run ``upscale-train`` with faults injected, for the training drills (issue 7, items 9 and 10).

    UPSCALE_DRILL_SAVE_MARKS=1 python -m benchmarks.faults.train_faults fit RECIPE --set ...
    UPSCALE_DRILL_NAN_G=3:nan,4:inf UPSCALE_DRILL_NAN_D=7:nan python -m benchmarks.faults....

The real CLI, with three optional hooks set from the environment:

- ``UPSCALE_DRILL_SAVE_MARKS``: print ``save-start STEP`` / ``save-end STEP`` on stdout around
  every checkpoint save, so that a watching process can SIGKILL this one in the middle of a save.
- ``UPSCALE_DRILL_NAN_G`` / ``UPSCALE_DRILL_NAN_D``: ``STEP:nan`` or ``STEP:inf`` pairs; the
  generator's pixel loss (or the discriminator's loss) of that step (1-based, as logged) is
  multiplied by NaN or +Inf.
- ``UPSCALE_DRILL_STEP_RECORDS``: print one JSON line per step on stdout saying which of the
  generator, its EMA and the discriminator changed, and whether all their weights are finite.
"""

from __future__ import annotations

import json
import os
from typing import Any

SAVE_MARKS = "UPSCALE_DRILL_SAVE_MARKS"
NAN_G = "UPSCALE_DRILL_NAN_G"
NAN_D = "UPSCALE_DRILL_NAN_D"
STEP_RECORDS = "UPSCALE_DRILL_STEP_RECORDS"


def parse_steps(text: str) -> dict[int, str]:
    """``"3:nan,4:inf"`` -> ``{3: "nan", 4: "inf"}``."""
    steps = {}
    for item in filter(None, text.split(",")):
        step, kind = item.split(":")
        if kind not in ("nan", "inf"):
            raise ValueError(f"{item}: the fault must be nan or inf")
        steps[int(step)] = kind
    return steps


def format_steps(steps: dict[int, str]) -> str:
    return ",".join(f"{step}:{kind}" for step, kind in sorted(steps.items()))


def _say(line: str) -> None:
    print(line, flush=True)


def _install_save_marks() -> None:
    import training.trainer as trainer

    real = trainer.save_checkpoint

    def save_checkpoint(folder: Any, step: int, state: Any, keep: int) -> Any:
        _say(f"save-start {step}")
        path = real(folder, step, state, keep)
        _say(f"save-end {step}")
        return path

    trainer.save_checkpoint = save_checkpoint  # type: ignore[assignment]


def _install_nan(current: dict[str, int], name: str, steps: dict[int, str]) -> None:
    """Make ``training.trainer.<name>`` non-finite at ``steps`` (``current['step']``, 1-based)."""
    import training.trainer as trainer

    real = getattr(trainer, name)
    factor = {"nan": float("nan"), "inf": float("inf")}

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        value = real(*args, **kwargs)
        kind = steps.get(current["step"])
        return value * factor[kind] if kind else value

    setattr(trainer, name, poisoned)


def _install_step_hooks(records: bool) -> dict[str, int]:
    """Track the step being computed; with ``records``, report what each step changed."""
    import torch

    from training.trainer import Trainer

    current = {"step": 0}
    real = Trainer.train_step

    def weights(trainer: Trainer) -> dict[str, list[torch.Tensor]]:
        parts = {"g": trainer.state.g, "ema": trainer.state.ema.module, "d": trainer.state.d}
        return {
            name: [p.detach().clone() for p in module.parameters()]
            for name, module in parts.items()
            if module is not None
        }

    def train_step(self: Trainer, batch: dict[str, Any], **options: Any) -> dict[str, float]:
        current["step"] = self.step + 1
        before = weights(self) if records else {}
        stats = real(self, batch, **options)
        if records:
            after = weights(self)
            changed = {
                name: any(
                    not torch.equal(a, b) for a, b in zip(before[name], after[name], strict=True)
                )
                for name in before
            }
            finite = all(bool(torch.isfinite(p).all()) for ps in after.values() for p in ps)
            record = {"step": current["step"], "changed": changed, "finite": finite}
            record["skipped_total"] = stats["skipped_total"]
            _say("record " + json.dumps(record))
        return stats

    Trainer.train_step = train_step  # type: ignore[method-assign]
    return current


def install() -> None:
    if os.environ.get(SAVE_MARKS):
        _install_save_marks()
    nan_g, nan_d = parse_steps(os.environ.get(NAN_G, "")), parse_steps(os.environ.get(NAN_D, ""))
    records = bool(os.environ.get(STEP_RECORDS))
    if nan_g or nan_d or records:
        current = _install_step_hooks(records)
        if nan_g:
            _install_nan(current, "pixel_loss", nan_g)
        if nan_d:
            _install_nan(current, "discriminator_loss", nan_d)


def main() -> None:
    install()
    from training.cli import main as upscale_train

    upscale_train()


if __name__ == "__main__":
    main()
