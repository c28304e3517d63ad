"""Degradations that turn a high-res crop into the low-res input a model will meet in a game.

Every function here is pure: the same tensor and the same parameters give the same output. Batched
functions take ``(B, C, H, W)`` float images in ``[0, 1]`` and per-sample parameters as tensors of
shape ``(B,)``; they run on whatever device the images are on (the filters through kornia's
batched ops). Randomness (noise) comes from a seed carried in the parameters, never from global
state. Codec round trips that need a real encoder (JPEG, BC1/BC3, palettes) are in
``training.codecs`` and run on CPU.
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


def blur_kernels(
    sigma_x: torch.Tensor, sigma_y: torch.Tensor, angle: torch.Tensor, radius: int
) -> torch.Tensor:
    """Normalised 2-D Gaussian kernels ``(B, 2r+1, 2r+1)``: standard deviations ``sigma_x`` and
    ``sigma_y`` (pixels) along axes turned by ``angle`` (radians), each ``(B,)``; equal sigmas
    give the isotropic kernel, sigma 0 the identity. Built on the parameters' device."""
    taps = torch.arange(-radius, radius + 1, device=sigma_x.device, dtype=torch.float32)
    y, x = torch.meshgrid(taps, taps, indexing="ij")
    cos, sin = angle.float().cos()[:, None, None], angle.float().sin()[:, None, None]
    u, v = cos * x + sin * y, -sin * x + cos * y  # coordinates along the kernel's own axes
    sx = sigma_x.float().clamp(min=1e-3)[:, None, None]
    sy = sigma_y.float().clamp(min=1e-3)[:, None, None]
    kernels = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def blur(
    x: torch.Tensor,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor | None = None,
    angle: torch.Tensor | None = None,
    *,
    wrap: bool = False,
) -> torch.Tensor:
    """Blur each image of ``(B, C, H, W)`` with its own Gaussian (``blur_kernels``), with
    kornia's batched per-image ``filter2d``; edges reflected, or wrapped for tileable images.

    kornia measured as fast as our own separable convolution for these sizes on CPU (a 16 x 3 x
    128^2 batch, sigma up to 1: 14 ms vs 23 ms, one thread) and takes rotated kernels.
    """
    import kornia

    _check(x)
    b, _, h, w = x.shape
    for name, value in (("sigma_x", sigma_x), ("sigma_y", sigma_y), ("angle", angle)):
        if value is not None and value.shape != (b,):
            raise ValueError(f"{name} must have shape ({b},), got {tuple(value.shape)}")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    angle = torch.zeros_like(sigma_x) if angle is None else angle
    widest = float(torch.maximum(sigma_x, sigma_y).max()) if b else 0.0
    radius = max(1, math.ceil(3 * widest))
    if not wrap:  # reflection cannot reach further than the image
        radius = max(1, min(radius, h - 1, w - 1))
    device = x.device
    kernels = blur_kernels(sigma_x.to(device), sigma_y.to(device), angle.to(device), radius)
    border = "circular" if wrap else "reflect"
    return kornia.filters.filter2d(x, kernels.to(x.dtype), border_type=border)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, *, wrap: bool = False) -> torch.Tensor:
    """Blur each image of ``(B, C, H, W)`` with its own isotropic Gaussian ``sigma`` ``(B,)``.

    Edges are reflected (or wrapped, for tileable images). Sigma 0 leaves an image unchanged.
    """
    return blur(x, sigma, wrap=wrap)


_MASK32 = 0xFFFFFFFF


def _mul32(a: torch.Tensor, b: int) -> torch.Tensor:
    """``a * b mod 2**32`` for ``a`` in ``[0, 2**32)``, exact in int64 without overflow."""
    low, high = b & 0xFFFF, b >> 16
    return (a * low + (((a * high) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' ``lowbias32`` integer hash, on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_normal(seed: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Standard normal values of ``shape``, a pure function of ``seed`` computed on ``device``:
    a counter-based generator (an integer hash of ``(seed, index)``, then Box-Muller), so every
    device draws the same field - unlike ``torch.Generator``, whose CUDA and CPU streams
    differ - and no CPU work or transfer is needed per image."""
    count = math.prod(shape)
    key = _hash32(torch.tensor([(seed >> 32) & 0x3FFFFFFF], device=device))
    key = _hash32(key ^ (seed & _MASK32))
    index = torch.arange(2 * count, device=device, dtype=torch.int64)
    bits = _hash32(_hash32(index ^ key) ^ (key >> 1)).double()
    u1 = (bits[:count] + 0.5) / 2**32
    u2 = (bits[count:] + 0.5) / 2**32
    normal = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
    return normal.float().view(shape)


def gaussian_noise(
    x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: torch.Tensor
) -> torch.Tensor:
    """Add zero-mean Gaussian noise of std ``sigma`` ``(B,)`` (``[0, 1]`` units) to each image.

    ``gray`` ``(B,)`` bool: the same noise in every channel (luminance noise). ``seed`` ``(B,)``
    int64 seeds each image's noise (``hashed_normal``), drawn on the device of ``x``.
    """
    _check(x)
    b, c, h, w = x.shape
    sigmas, grays, seeds = sigma.tolist(), gray.tolist(), seed.tolist()
    out = x
    for i in range(b):
        if sigmas[i] <= 0:
            continue
        channels = 1 if grays[i] else c
        noise = hashed_normal(int(seeds[i]), (channels, h, w), x.device).to(x.dtype)
        if out is x:
            out = x.clone()
        out[i] += noise.expand(c, h, w) * sigmas[i]
    return out


def colour_jitter(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
) -> torch.Tensor:
    """Per-image colour changes of ``(B, 3, H, W)`` with kornia: ``brightness`` added, then
    ``contrast`` and ``saturation`` factors (1: unchanged), then ``hue`` turned by that fraction
    of the colour circle; each ``(B,)``. Clamped to ``[0, 1]``."""
    import kornia

    _check(x)
    device = x.device
    x = kornia.enhance.adjust_brightness(x, brightness.to(device, x.dtype), clip_output=True)
    x = kornia.enhance.adjust_contrast_with_mean_subtraction(x, contrast.to(device, x.dtype))
    x = kornia.enhance.adjust_saturation(x, saturation.to(device, x.dtype))
    x = kornia.enhance.adjust_hue(x, (2 * math.pi * hue).to(device, x.dtype))
    return x.clamp(0, 1)


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
