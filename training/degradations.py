"""Degradations that turn a high-res crop into the low-res input a model will meet in a game.

Every function here is pure: the same tensor and the same parameters give the same output. Batched
functions take ``(B, C, H, W)`` float images in ``[0, 1]`` and per-sample parameters as tensors of
shape ``(B,)``; they run on whatever device the images are on. Randomness (noise) comes from a seed
carried in the parameters, never from global state. Codec round trips that need a real encoder
(JPEG, BC1/BC3, palettes) are in ``training.codecs`` and run on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from upscaler.texture import normals
from upscaler.texture.resample import resize

# Our kernel names -> upscaler.texture.resample's (one resampler for the whole project).
RESAMPLE_KERNELS = {
    "area": "box",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "lanczos": "lanczos3",
}


def _check(x: torch.Tensor, name: str = "x") -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"{name} must be a float (B, C, H, W) tensor, got {tuple(x.shape)} {x.dtype}"
        )


def resize_down(x: torch.Tensor, factor: int, kernel: str) -> torch.Tensor:
    """Shrink ``(B, C, H, W)`` by an integer ``factor`` with an anti-aliased ``kernel``.

    ``kernel`` is one of area, bilinear, bicubic, lanczos (as Pillow filters them). For point
    sampling use ``point_sample``. H and W must be multiples of ``factor``.
    """
    _check(x)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"size {h}x{w} is not a multiple of the factor {factor}")
    if kernel not in RESAMPLE_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(RESAMPLE_KERNELS)}")
    if kernel == "area":  # exact box average for integer factors, and much faster
        return F.avg_pool2d(x, factor)
    return resize(x, (h // factor, w // factor), RESAMPLE_KERNELS[kernel])


def point_sample(x: torch.Tensor, factor: int, phase_y: int = 0, phase_x: int = 0) -> torch.Tensor:
    """Nearest-neighbour shrink keeping every ``factor``-th texel from ``(phase_y, phase_x)``.

    What old games and pixel-art pipelines did: no filtering, so thin lines alias or vanish.
    """
    _check(x)
    h, w = x.shape[-2:]
    if not (0 <= phase_y < factor and 0 <= phase_x < factor):
        raise ValueError(f"phase ({phase_y}, {phase_x}) must lie in [0, {factor})")
    return x[..., phase_y : h - h % factor : factor, phase_x : w - w % factor : factor]


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels ``(B, 2 * radius + 1)``; sigma 0 gives the identity."""
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    safe = sigma.float().clamp(min=1e-6)[:, None]
    kernels = torch.exp(-0.5 * (taps[None, :] / safe) ** 2)
    identity = (taps == 0).float().expand_as(kernels)
    kernels = torch.where(sigma[:, None] > 0, kernels, identity)
    return kernels / kernels.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, *, wrap: bool = False) -> torch.Tensor:
    """Blur each image of ``(B, C, H, W)`` with its own isotropic Gaussian ``sigma`` ``(B,)``.

    Edges are reflected (or wrapped, for tileable images). Sigma 0 leaves an image unchanged.
    """
    _check(x)
    b, c, h, w = x.shape
    if sigma.shape != (b,):
        raise ValueError(f"sigma must have shape ({b},), got {tuple(sigma.shape)}")
    radius = max(1, math.ceil(3 * float(sigma.max()))) if b else 1
    radius = min(radius, h - 1, w - 1) if not wrap else radius
    kernels = gaussian_kernels(sigma.to(x.device), radius).to(x.dtype)
    weight = kernels.repeat_interleave(c, dim=0)  # one kernel per (image, channel) group
    mode = "circular" if wrap else "reflect"
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(
        F.pad(flat, (radius, radius, 0, 0), mode=mode), weight[:, None, None, :], groups=b * c
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, radius, radius), mode=mode), weight[:, None, :, None], groups=b * c
    )
    return flat.reshape(b, c, h, w)


def gaussian_noise(
    x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: torch.Tensor
) -> torch.Tensor:
    """Add zero-mean Gaussian noise of std ``sigma`` ``(B,)`` (``[0, 1]`` units) to each image.

    ``gray`` ``(B,)`` bool: the same noise in every channel (luminance noise). ``seed`` ``(B,)``
    int64 seeds each image's noise, drawn on CPU so every device gives the same field.
    """
    _check(x)
    b, c, h, w = x.shape
    out = x.clone()
    for i in range(b):
        if float(sigma[i]) <= 0:
            continue
        generator = torch.Generator().manual_seed(int(seed[i]))
        channels = 1 if bool(gray[i]) else c
        noise = torch.randn(channels, h, w, generator=generator).to(x.device, x.dtype)
        out[i] += noise.expand(c, h, w) * float(sigma[i])
    return out


def renormalise_normals(x: torch.Tensor) -> torch.Tensor:
    """Re-encode tangent-space normals ``(B, 3+, H, W)`` as unit vectors (after a filter), as
    ``upscale`` does (``upscaler.texture.normals``); channels past the third pass through."""
    _check(x)
    v = normals.normalize(normals.decode(x[:, :3]))
    return torch.cat([normals.encode(v), x[:, 3:]], dim=1)


def wrap_crop(image: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` at ``(top, left)``; a crop running past an edge continues from the
    opposite edge, as the texture does when it tiles."""
    h, w = image.shape[-2:]
    rows = torch.arange(top, top + height, device=image.device) % h
    cols = torch.arange(left, left + width, device=image.device) % w
    return image.index_select(-2, rows).index_select(-1, cols)
