"""Tiny real generators for the drills (random weights: they test plumbing, not quality)."""

from __future__ import annotations

from pathlib import Path

import torch

from upscaler import save_weights
from upscaler.models import Compact, CompactConfig


def tiny_compact(path: Path, scale: int = 2, seed: int = 0) -> Path:
    """A compact generator with 8 features and 2 blocks, saved in our safetensors format."""
    if not path.is_file():
        torch.manual_seed(seed)
        config = CompactConfig(num_features=8, num_blocks=2, scale=scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, Compact(config), arch="compact", config=config)
    return path
