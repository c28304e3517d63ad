"""Texture files through the model: decoded pixels in, encoded-ready pixels out.

Same-size images are upscaled together in one batch. The model's output arrives in row bands;
at the model's own scale each band is quantised straight into the output array, otherwise (native
mode, ``output_scale``) it is filtered down band by band, so the full-resolution float image never
exists at once. Colour is resampled in linear light; alpha as coverage, linearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .colour import linear_to_srgb, srgb_to_linear
from .io import ImageFile
from .pipeline import Upscaler
from .resample import resize_axis
from .seamless import detect_wrap

SEAMLESS_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class TextureOptions:
    tile: int | None = None
    seamless: str = "auto"
    native: bool = False
    output_scale: float | None = None
    resample: str = "lanczos3"

    def __post_init__(self) -> None:
        if self.seamless not in SEAMLESS_MODES:
            raise ValueError(f"seamless must be one of {SEAMLESS_MODES}, got {self.seamless!r}")
        if self.native and self.output_scale is not None:
            raise ValueError("--native and --output-scale exclude each other")
        if self.output_scale is not None and not 0 < self.output_scale <= 64:
            raise ValueError(f"output scale must be in (0, 64], got {self.output_scale}")


def output_size(size: tuple[int, int], scale: int, options: TextureOptions) -> tuple[int, int]:
    """(height, width) of the final image for an input of ``size``."""
    h, w = size
    if options.native:
        return h, w
    if options.output_scale is not None:
        return max(1, round(h * options.output_scale)), max(1, round(w * options.output_scale))
    return h * scale, w * scale


def wrap_axes(image: ImageFile, seamless: str) -> tuple[bool, bool]:
    if seamless == "on":
        return True, True
    if seamless == "off":
        return False, False
    colour = image.pixels[:, :, : 3 if image.channels >= 3 else 1]
    return detect_wrap(torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1))


def batch_key(image: ImageFile, wrap: tuple[bool, bool]) -> tuple[object, ...]:
    """Images with equal keys can share one model batch."""
    return image.size, image.channels, image.bits, wrap


def _colour_channels(channels: int) -> list[int]:
    return [0, 1, 2] if channels >= 3 else [0]


def _to_linear(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    idx = _colour_channels(x.shape[1])
    x[:, idx] = srgb_to_linear(x[:, idx])
    return x


def _from_linear(x: torch.Tensor) -> torch.Tensor:
    idx = _colour_channels(x.shape[1])
    x[:, idx] = linear_to_srgb(x[:, idx])
    return x


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Float ``[0, 1]`` to integers, rounding half up; int32 holds 16-bit values (torch has few
    uint16 ops)."""
    top = 65535 if bits == 16 else 255
    q = (x.clamp(0, 1) * top + 0.5).floor_()
    return q.to(torch.int32 if bits == 16 else torch.uint8)


def upscale_images(
    upscaler: Upscaler, images: list[ImageFile], options: TextureOptions, wrap: tuple[bool, bool]
) -> list[ImageFile]:
    """Upscale images that share ``batch_key`` in one batch; returns new ``ImageFile``s."""
    first = images[0]
    h, w = first.size
    bits, c = first.bits, first.channels
    x = torch.from_numpy(np.stack([im.pixels for im in images])).permute(0, 3, 1, 2)
    target = output_size((h, w), upscaler.scale, options)
    bands = upscaler.upscale_bands(x, tile=options.tile, wrap=wrap)
    dtype = torch.int32 if bits == 16 else torch.uint8
    out = torch.empty(len(images), target[0], target[1], c, dtype=dtype)
    if target == (h * upscaler.scale, w * upscaler.scale):
        for y, band in bands:
            out[:, y : y + band.shape[2]] = quantize(band, bits).permute(0, 2, 3, 1).cpu()
    else:
        # Filter each band across first (cheap, shrinks it), then down the whole column stack.
        columns = [
            resize_axis(_to_linear(band), target[1], 3, options.resample, wrap=wrap[1]).cpu()
            for _, band in bands
        ]
        full = resize_axis(torch.cat(columns, dim=2), target[0], 2, options.resample, wrap=wrap[0])
        out[:] = quantize(_from_linear(full), bits).permute(0, 2, 3, 1)
    array = out.numpy()
    if bits == 16:
        array = array.astype(np.uint16)
    return [im.with_pixels(np.ascontiguousarray(array[i])) for i, im in enumerate(images)]
