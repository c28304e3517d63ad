"""``upscale-train eval``: a model's quality on a folder of held-out textures."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .config import Config, ModelConfig, ValConfig, config_from_dict
from .export import load_generator
from .perceptual import ALEXNET_FILE, build_lpips, weights_available
from .validate import load_val_set, validate


def evaluate(
    source: str | Path,
    folder: str | Path,
    *,
    crop_size: int = 0,
    max_images: int = 0,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """PSNR-Y, SSIM-Y, LPIPS (when its weights are present), normal angular error and seam error.

    Low-res inputs are made with the checkpoint's own degradation recipe (fixed seeds); a plain
    model file gets the default recipe. ``crop_size`` 0 evaluates whole images.
    """
    device = device or torch.device("cpu")
    module, info = load_generator(source)
    if info.get("config"):
        config = config_from_dict(info["config"])
    else:  # an exported model file: its recipe's degradations travel in its metadata
        degrade = (info.get("training") or {}).get("degrade")
        config = config_from_dict({"degrade": degrade}) if degrade else Config()
    scale = int(info["arch_config"]["scale"])
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(ModelConfig(), arch=info["arch"], scale=scale),
        val=ValConfig(
            folder=str(folder),
            max_images=max_images,
            crop_size=crop_size,
            seam_images=max_images or 1_000_000,
        ),
    )
    images, seams = load_val_set(config)
    if not images:
        raise ValueError(f"{folder}: no usable validation images")
    lpips_model = build_lpips().to(device) if weights_available(ALEXNET_FILE) else None
    metrics, _ = validate(
        module.to(device).requires_grad_(False),
        images,
        seams,
        arch=info["arch"],
        scale=scale,
        device=device,
        lpips_model=lpips_model,
    )
    metrics["images"] = len(images)
    metrics["seam_images"] = len(seams)
    if lpips_model is None:
        metrics["lpips"] = None  # not measured: the AlexNet weights are missing
    return metrics
