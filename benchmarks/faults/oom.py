"""Out-of-memory injected into a real model (CPU; the model is wrapped, nothing mocked), and one
texture upscaled through the real texture path under a small memory budget.

The OOM drill (``drill_oom``) and its tests share these pieces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from upscaler.engine.pipeline import Upscaler
from upscaler.formats.image import ImageFile
from upscaler.process import TextureOptions, upscale_images

BUDGET = 12 << 20  # bytes: 200-300 px textures take 4-8 tiles of 96-136 px, each still splittable


class InjectedOOM(nn.Module):
    """``inner``, except that the forward calls numbered in ``fail_at`` raise out-of-memory."""

    def __init__(self, inner: nn.Module, fail_at: set[int] | None = None) -> None:
        super().__init__()
        self.inner, self.fail_at = inner, set(fail_at or ())
        self.calls, self.injected = 0, 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self.calls
        self.calls += 1
        self.shapes.append(tuple(x.shape))
        if index in self.fail_at:
            self.injected += 1
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"
            )
        return self.inner(x)


def upscale_under_budget(
    model: nn.Module, info: Any, image: ImageFile, tile: int | None
) -> np.ndarray:
    """``image`` through ``upscale_images`` with ``model`` and a memory budget of ``BUDGET``;
    ``tile`` is the user's tile size (``None``: chosen from the budget)."""
    upscaler = Upscaler(model, info)
    upscaler.budget = BUDGET
    return upscale_images(upscaler, [image], TextureOptions(tile=tile), (False, False))[0].pixels


def max_lsb_difference(a: np.ndarray, b: np.ndarray) -> int:
    """The largest difference between two integer images, in least significant bits."""
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def repeat_to(patch: np.ndarray, side: int) -> np.ndarray:
    """Repeat a small texture (the bundled crops are ~64 px) to at least ``side`` x ``side`` so
    that it needs several tiles."""
    reps = (-(-side // patch.shape[0]), -(-side // patch.shape[1]), 1)
    return np.ascontiguousarray(
        np.tile(patch, reps)[: max(side, patch.shape[0]), : max(side, patch.shape[1])]
    )
