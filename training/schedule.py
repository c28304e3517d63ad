"""Learning-rate schedules as pure functions of the step (nanoGPT's ``get_lr``).

No scheduler object holds state, so a resumed run gets exactly the rate it would have had.
"""

from __future__ import annotations

import math

from .config import OptimConfig


def lr_factor(step: int, total: int, optim: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a ``total``-step run.

    Linear warm-up over ``warmup_steps``, then ``constant``; ``multistep`` (times ``gamma`` at
    each of ``milestones``, as BasicSR's MultiStepLR); or ``cosine`` down to ``min_lr_ratio``.
    """
    if optim.warmup_steps and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "multistep":
        return optim.gamma ** sum(1 for m in optim.milestones if step >= m)
    if optim.schedule == "cosine":
        span = max(1, total - optim.warmup_steps)
        progress = min(1.0, (step - optim.warmup_steps) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cosine
    return 1.0
