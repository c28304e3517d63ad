"""``upscale-train eval``: a model's quality on a folder of held-out textures, beside bicubic and
Lanczos upscales of the same low-res inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .config import Config, DegradeConfig, ModelConfig, ValConfig, config_from_dict
from .distances import InceptionFeatures
from .export import load_generator
from .perceptual import ALEXNET_FILE, build_lpips, weights_available
from .validate import FeatureReference, baselines, load_val_set, validate


def recipe_degradations(info: dict[str, Any]) -> DegradeConfig:
    """The degradations a model was trained with: its checkpoint's config, or for an exported
    file the recipe in its metadata; the default mix for files that carry neither."""
    if info.get("config"):
        return config_from_dict(info["config"]).degrade
    degrade = (info.get("training") or {}).get("degrade")
    return config_from_dict({"degrade": degrade}).degrade if degrade else DegradeConfig()


def evaluate(
    source: str | Path,
    folder: str | Path,
    *,
    crop_size: int | None = None,
    max_images: int | None = None,
    device: torch.device | None = None,
    degrade: DegradeConfig | None = None,
    weights: str = "ema",
    fid: bool = False,
    inception: InceptionFeatures | None = None,
) -> dict[str, Any]:
    """PSNR-Y, SSIM-Y, LPIPS (when its weights are present), normal angular error and seam error
    of the model, and under ``baselines`` the same for bicubic and Lanczos.

    Low-res inputs are made from fixed seeds with ``degrade``, or when it is None with the
    model's own recipe (``recipe_degradations``): pass one ``degrade`` to compare several models
    on identical inputs. ``crop_size`` 0 evaluates whole images; on the
    validation folder of a checkpoint's run, ``crop_size`` and ``max_images`` left None take
    the run's ``[val]`` settings, so that ``eval`` repeats the figures ``fit`` logged; anywhere
    else they mean whole images, all of them. ``fid``: also FID and KID,
    with Inception's ImageNet weights from the torch hub cache (or the ``inception`` given).
    """
    device = device or torch.device("cpu")
    module, info = load_generator(source, weights)
    scale = int(info["arch_config"]["scale"])
    arch = info["arch"]
    own = config_from_dict(info["config"]).val if info.get("config") else None
    if own and not (own.folder and Path(own.folder).resolve() == Path(folder).resolve()):
        own = None  # another folder than the run's validation: whole images, all of them
    if crop_size is None:
        crop_size = own.crop_size if own else 0
    if max_images is None:
        max_images = own.max_images if own else 0
    config = dataclasses.replace(
        Config(),
        degrade=degrade or recipe_degradations(info),
        model=dataclasses.replace(ModelConfig(), scale=scale),
        val=ValConfig(
            folder=str(folder),
            max_images=max_images,
            crop_size=crop_size,
            seam_images=own.seam_images if own else max_images or 1_000_000,
        ),
    )
    images, seams = load_val_set(config)
    if not images:
        raise ValueError(f"{folder}: no usable validation images")
    lpips_model = build_lpips().to(device) if weights_available(ALEXNET_FILE) else None
    if fid and inception is None:
        inception = InceptionFeatures()
    reference_features = (
        FeatureReference.of(inception.to(device), images, device) if inception else None
    )
    metrics: dict[str, Any] = dict(
        validate(
            module.to(device).requires_grad_(False),
            images,
            seams,
            arch=arch,
            scale=scale,
            device=device,
            lpips_model=lpips_model,
            inception=reference_features,
        )[0]
    )
    reference: dict[str, Any] = dict(
        baselines(
            images,
            seams,
            scale=scale,
            device=device,
            lpips_model=lpips_model,
            inception=reference_features,
        )
    )
    metrics["images"] = len(images)
    metrics["crop_size"] = crop_size
    metrics["seam_images"] = len(seams)
    if lpips_model is None:
        metrics["lpips"] = None  # not measured: the AlexNet weights are missing
        for values in reference.values():
            values["lpips"] = None
    metrics["baselines"] = reference
    return metrics
