"""The degradation recipe: sample parameters in one place, apply them deterministically in another.

``sample_params`` (torchvision's ``_get_params``) draws one sample's parameters from an explicit
``torch.Generator`` as a dict of scalar tensors, so a DataLoader collates them into ``(B,)``
tensors. ``degrade`` (the ``_transform``) applies a batch of them to GT crops on any device: the
filters and resizes batched in torch, the codec round trips per image on CPU. The same seed gives
the same low-res image wherever it runs.

The chain follows how a game texture is made: (optional) blur of the source, shrink with one of
several kernels including point sampling, (optional) camera noise, then the storage codecs: palette
reduction, block compression, JPEG. Normal maps are renormalised after filtering and never
palettised.
"""

from __future__ import annotations

import torch

from upscaler.texture.levels import round_to_levels

from . import codecs
from .config import DOWN_KERNELS, DegradeConfig
from .degradations import (
    gaussian_blur,
    gaussian_noise,
    point_sample,
    renormalise_normals,
    resize_down,
)

BC_CODES = {1: "bc1", 2: "bc3"}
KEYS = (
    "kernel",
    "phase_y",
    "phase_x",
    "blur_sigma",
    "noise_sigma",
    "noise_gray",
    "noise_seed",
    "palette",
    "dither",
    "bc",
    "jpeg",
)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _chance(generator: torch.Generator, p: float) -> bool:
    # Always draw, so one setting's probability never shifts the stream of the others.
    return float(torch.rand((), generator=generator)) < p


def sample_params(
    config: DegradeConfig, generator: torch.Generator, scale: int
) -> dict[str, torch.Tensor]:
    """One sample's degradation parameters, drawn from ``generator`` in a fixed order."""
    weights = torch.tensor(config.down_weights, dtype=torch.float64)
    pick = int(torch.multinomial(weights / weights.sum(), 1, generator=generator))
    kernel = DOWN_KERNELS.index(config.down_kernels[pick])
    phase = torch.randint(0, scale, (2,), generator=generator).tolist()
    blur = _uniform(generator, *config.blur_sigma)
    blur = blur if _chance(generator, config.blur_prob) else 0.0
    noise = _uniform(generator, *config.noise_sigma) / 255
    noise = noise if _chance(generator, config.noise_prob) else 0.0
    gray = _chance(generator, config.noise_gray_prob)
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    colours = round(_uniform(generator, *config.palette_colors))
    colours = colours if _chance(generator, config.palette_prob) else 0
    dither = _chance(generator, config.dither_prob)
    fmt = config.bc_formats[int(torch.randint(0, len(config.bc_formats), (), generator=generator))]
    bc = (1 if fmt == "bc1" else 2) if _chance(generator, config.bc_prob) else 0
    quality = round(_uniform(generator, *config.jpeg_quality))
    quality = quality if _chance(generator, config.jpeg_prob) else 0
    values = (kernel, phase[0], phase[1], blur, noise, gray, seed, colours, dither, bc, quality)
    return {
        key: torch.tensor(value, dtype=torch.float32 if isinstance(value, float) else torch.int64)
        for key, value in zip(KEYS, values, strict=True)
    }


def stack_params(params: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([p[key] for p in params]) for key in KEYS}


def _shrink(x: torch.Tensor, params: dict[str, torch.Tensor], scale: int) -> torch.Tensor:
    b, c, h, w = x.shape
    out = x.new_empty(b, c, h // scale, w // scale)
    kernels = params["kernel"].tolist()
    for code in sorted(set(kernels)):
        name = DOWN_KERNELS[code]
        index = [i for i, k in enumerate(kernels) if k == code]
        if name == "nearest":
            for i in index:
                py, px = int(params["phase_y"][i]), int(params["phase_x"][i])
                out[i] = point_sample(x[i : i + 1], scale, py, px)[0]
        else:
            rows = torch.tensor(index, device=x.device)
            out[rows] = resize_down(x[rows], scale, name)
    return out


def _codecs(x: torch.Tensor, params: dict[str, torch.Tensor], normal: torch.Tensor) -> torch.Tensor:
    """The per-image CPU codecs, in storage order: palette, block compression, JPEG."""
    palette, bc, jpeg = params["palette"].tolist(), params["bc"].tolist(), params["jpeg"].tolist()
    out = x
    for i in range(x.shape[0]):
        if not (palette[i] and not bool(normal[i])) and not bc[i] and not jpeg[i]:
            continue
        image = x[i].cpu()
        if palette[i] and not bool(normal[i]):
            image = codecs.palette_quantise(image, palette[i], dither=bool(params["dither"][i]))
        if bc[i]:
            image = codecs.bc_roundtrip(image, BC_CODES[bc[i]])
        if jpeg[i]:
            image = codecs.jpeg_roundtrip(image, jpeg[i])
        if out is x:
            out = x.clone()
        out[i] = image.to(x.device, x.dtype)
    return out


def degrade(
    gt: torch.Tensor,
    params: dict[str, torch.Tensor],
    scale: int,
    normal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Low-res inputs ``(B, C, H/scale, W/scale)`` in ``[0, 1]`` from GT ``(B, C, H, W)``.

    ``params`` holds ``(B,)`` tensors from ``stack_params`` (or a DataLoader's collate);
    ``normal`` ``(B,)`` bool marks tangent-space normal maps. The result is quantised to 8 bits.
    """
    if gt.ndim != 4 or not gt.is_floating_point():
        raise ValueError(f"gt must be float (B, C, H, W), got {tuple(gt.shape)} {gt.dtype}")
    b = gt.shape[0]
    if normal is None:
        normal = torch.zeros(b, dtype=torch.bool)
    normal = normal.to(gt.device)
    sigma = params["blur_sigma"].to(gt.device)
    x = gaussian_blur(gt, sigma) if bool((sigma > 0).any()) else gt
    x = _shrink(x, params, scale)
    x = gaussian_noise(x, params["noise_sigma"], params["noise_gray"].bool(), params["noise_seed"])
    x = round_to_levels(x)
    x = _codecs(x, params, normal)
    if bool(normal.any()):
        x = torch.where(normal[:, None, None, None], renormalise_normals(x), x)
    return round_to_levels(x)
