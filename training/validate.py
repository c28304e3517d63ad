"""Validation on a held-out folder: quality metrics, seams, normal maps, and a PNG sample grid.

Low-res inputs are made with the run's own degradation recipe from fixed seeds, so every
validation sees the same inputs and measures what the run trains for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from upscaler.engine.pipeline import Upscaler
from upscaler.formats.image import ImageFile, ImageReadError, write_image
from upscaler.models import ARCHITECTURES, loader
from upscaler.models.descriptor import ModelInfo
from upscaler.texture.resample import resize
from upscaler.texture.seamless import detect_wrap, seam_error

from .config import Config
from .degradations import resize_down
from .distances import InceptionFeatures, activations, distances
from .images import list_images, load_texture
from .metrics import normal_angular_error, psnr_y, ssim_y
from .recipe import degrade, sample_params, stack_params

VAL_SEED = 20_240_531


@dataclass(frozen=True)
class ValImage:
    name: str
    gt: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    lq: torch.Tensor  # (1, 3, H/s, W/s)
    normal: bool


def _centre(x: torch.Tensor, size: int, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = (min(size, h), min(size, w)) if size else (h, w)
    th, tw = th - th % multiple, tw - tw % multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def load_val_set(config: Config) -> tuple[list[ValImage], list[ValImage]]:
    """``(images, seam_images)``: centre crops for the metrics, and whole tileable textures."""
    folder, scale = config.val.folder, config.model.scale
    if not folder:
        return [], []
    paths = list_images([folder])
    if config.val.max_images and len(paths) > config.val.max_images:
        step = len(paths) / config.val.max_images  # spread the picks over the whole folder
        paths = [paths[int(i * step)] for i in range(config.val.max_images)]
    images, seams = [], []
    for i, path in enumerate(paths):
        try:
            pixels, kind = load_texture(path)
        except ImageReadError:
            continue  # reported by the dataset checks; validation is best effort
        if kind == "data" or min(pixels.shape[:2]) < max(16, scale * 4):
            continue
        whole = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        gt = _centre(whole, config.val.crop_size, scale)
        normal = torch.tensor([kind == "normal"])
        params = stack_params(
            [sample_params(config.degrade, torch.Generator().manual_seed(VAL_SEED + i), scale)]
        )
        images.append(ValImage(path.name, gt, degrade(gt, params, scale, normal), kind == "normal"))
        whole = _centre(whole, 0, scale)
        if len(seams) < config.val.seam_images and all(detect_wrap(whole[0])) and kind != "normal":
            seams.append(ValImage(path.name, whole, resize_down(whole, scale, "area"), False))
    return images, seams


_CONTRACTS: dict[tuple[str, int, int], ModelInfo] = {}


def _info(module: nn.Module, arch: str, scale: int) -> ModelInfo:
    """The descriptor ``upscale`` would use for this generator, measured once per architecture
    and size in a run: validation tiles as ``upscale`` does. ``arch``: a name of the registry,
    whose modules carry their config, or ``spandrel:<id>`` for one that spandrel built."""
    key = (arch, scale, sum(p.numel() for p in module.parameters()))
    if key not in _CONTRACTS:
        if arch in ARCHITECTURES:
            entry, config = ARCHITECTURES[arch], module.config
            _CONTRACTS[key] = loader.describe_built(module, entry, config, name="validation")
        else:
            _CONTRACTS[key] = loader.describe(
                module, name="validation", arch=arch, scale=scale, channels=(3, 3)
            )
    return _CONTRACTS[key]


Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BASELINES = {"bicubic": "bicubic", "lanczos": "lanczos3"}  # name -> upscaler's resample kernel


@torch.no_grad()
def measure(
    upscale: Callable[[torch.Tensor, bool], torch.Tensor],
    images: list[ValImage],
    seams: list[ValImage],
    *,
    scale: int,
    device: torch.device,
    lpips_model: nn.Module | None = None,
    inception: FeatureReference | None = None,
) -> tuple[dict[str, float], list[Triple]]:
    """Metrics (means over the set) of ``upscale(lq, wrap)`` and ``(lq, sr, gt)`` triples;
    with ``inception``, also FID and KID of the colour images against their ground truths."""
    psnr, ssim, lp, angle, triples = [], [], [], [], []
    colour_outputs = []
    for image in images:
        sr = upscale(image.lq.to(device), False).clamp(0, 1)
        gt = image.gt.to(device)
        triples.append((image.lq, sr.cpu(), image.gt))
        if image.normal:
            angle.append(float(normal_angular_error(sr, gt)[0]))
            continue
        colour_outputs.append(sr)
        psnr.append(float(psnr_y(sr, gt, border=scale)[0]))
        if min(gt.shape[-2:]) - 2 * scale >= 11:
            ssim.append(float(ssim_y(sr, gt, border=scale)[0]))
        if lpips_model is not None:
            lp.append(float(lpips_model(sr, gt, normalize=True).mean()))
    metrics = {}
    for key, values in (
        ("psnr_y", psnr),
        ("ssim_y", ssim),
        ("lpips", lp),
        ("normal_angle_deg", angle),
    ):
        if values:
            metrics[key] = float(np.mean(values))
    if seams:
        ratios = [max(seam_error(upscale(i.lq.to(device), True).cpu(), step=scale)) for i in seams]
        metrics["seam_error"] = float(np.mean(ratios))
    if inception is not None and inception.real is not None:
        fake = activations(inception.features, colour_outputs, device)
        metrics.update(distances(inception.real, fake, pretrained=inception.features.pretrained))
    return metrics, triples


@dataclass(frozen=True)
class FeatureReference:
    """Inception and its activations on a validation set's colour ground truths (once)."""

    features: InceptionFeatures
    real: torch.Tensor | None  # None: fewer than two colour images

    @classmethod
    def of(
        cls, features: InceptionFeatures, images: list[ValImage], device: torch.device
    ) -> FeatureReference:
        colour = [image.gt for image in images if not image.normal]
        real = activations(features, colour, device) if len(colour) >= 2 else None
        return cls(features, real)


@torch.no_grad()
def validate(
    module: nn.Module,
    images: list[ValImage],
    seams: list[ValImage],
    *,
    arch: str,
    scale: int,
    device: torch.device,
    lpips_model: nn.Module | None = None,
    inception: FeatureReference | None = None,
) -> tuple[dict[str, float], list[Triple]]:
    """The model's metrics (means over the set) and ``(lq, sr, gt)`` triples for the grid."""
    was_training = module.training
    module.eval()
    upscaler = Upscaler(module, _info(module, arch, scale), device=device)
    try:
        return measure(
            lambda lq, wrap: upscaler.upscale(lq, wrap=(wrap, wrap)),
            images,
            seams,
            scale=scale,
            device=device,
            lpips_model=lpips_model,
            inception=inception,
        )
    finally:
        module.train(was_training)


def baselines(
    images: list[ValImage],
    seams: list[ValImage],
    *,
    scale: int,
    device: torch.device,
    lpips_model: nn.Module | None = None,
    inception: FeatureReference | None = None,
) -> dict[str, dict[str, float]]:
    """The same metrics for plain bicubic and Lanczos-3 upscales of the same inputs."""

    def upscaler(kernel: str) -> Callable[[torch.Tensor, bool], torch.Tensor]:
        def upscale(lq: torch.Tensor, wrap: bool) -> torch.Tensor:
            size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
            return resize(lq, size, kernel, wrap=(wrap, wrap))

        return upscale

    return {
        name: measure(
            upscaler(kernel),
            images,
            seams,
            scale=scale,
            device=device,
            lpips_model=lpips_model,
            inception=inception,
        )[0]
        for name, kernel in BASELINES.items()
    }


@dataclass(frozen=True)
class Validation:
    """A run's validation set, its bicubic and Lanczos scores, and Inception's activations on
    its ground truths (for FID/KID), computed once per fit."""

    images: list[ValImage]
    seams: list[ValImage]
    baselines: dict[str, dict[str, float]]
    inception: FeatureReference | None = None

    @classmethod
    def load(
        cls,
        config: Config,
        device: torch.device,
        lpips_model: nn.Module | None = None,
        inception: InceptionFeatures | None = None,
    ) -> Validation:
        images, seams = load_val_set(config)
        if not images:
            return cls(images, seams, {})
        reference = FeatureReference.of(inception, images, device) if inception else None
        scores = baselines(
            images,
            seams,
            scale=config.model.scale,
            device=device,
            lpips_model=lpips_model,
            inception=reference,
        )
        return cls(images, seams, scores, reference)


def describe(values: dict[str, float], reference: dict[str, dict[str, float]]) -> str:
    """``psnr_y 27.31 (bicubic 25.10, lanczos 25.42), ssim_y ...`` for a log line."""
    parts = []
    for key, value in values.items():
        others = [f"{name} {ref[key]:.4g}" for name, ref in reference.items() if key in ref]
        parts.append(f"{key} {value:.4g}" + (f" ({', '.join(others)})" if others else ""))
    return ", ".join(parts)


def write_sample_grid(
    path: Path,
    triples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    scale: int,
    count: int,
) -> np.ndarray | None:
    """PNG with one row per image: low-res input (nearest-upscaled), output, ground truth.
    Returns its ``(H, W, 3)`` uint8 pixels (None: no images)."""
    rows = []
    size = max(t[2].shape[-1] for t in triples[:count]) if triples else 0
    for lq, sr, gt in triples[:count]:
        lq_big = F.interpolate(lq, scale_factor=scale, mode="nearest")
        row = torch.cat([lq_big, sr, gt], dim=-1)
        pad = 3 * size - row.shape[-1]
        rows.append(F.pad(row, (0, pad, 0, 4)))
    if not rows:
        return None
    grid = torch.cat(rows, dim=-2)[0].clamp(0, 1)
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, ImageFile(np.ascontiguousarray(pixels), "PNG"))
    return pixels
