"""Texture files through the model: decoded pixels in, encoded-ready pixels out, per map type.

Each image is first *planned* (``plan_texture``: map kind, alpha mode, wrap axes), then prepared
for the model (a constant alpha channel is set aside, colour is bled under fully transparent
texels, a two-channel normal map gets its Z rebuilt), upscaled in a batch with same-plan images,
and finished: normals renormalised, cutout alpha re-thresholded to the input's coverage, a
constant alpha restored, palettes re-applied on request.

The model's output arrives in row bands. At the model's own scale each band is quantised straight
into the output array; otherwise (native mode, ``output_scale``) it is filtered down band by band
in the map's filter space (see ``maps``), so the full-resolution float image never exists at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath

import numpy as np
import torch

from . import alpha as alpha_
from . import maps
from .dds import DDS_FORMAT_CHOICES
from .io import ImageFile
from .levels import quantize, to_levels, to_tensor
from .maps import MapInfo
from .pipeline import Upscaler
from .resample import KERNELS, resize_axis
from .seamless import detect_wrap

SEAMLESS_MODES = ("auto", "on", "off", "x", "y")  # x: left/right edges meet; y: top/bottom
PALETTE_MODES = ("rgb", "keep")
RESAMPLE_KERNELS = (*KERNELS, "nearest")


@dataclass(frozen=True)
class TextureOptions:
    """How to treat one texture (the command line's defaults, refined per file by rules)."""

    tile: int | None = None
    seamless: str = "auto"
    native: bool = False
    output_scale: float | None = None
    resample: str = "lanczos3"
    map: str = "auto"
    alpha: str = "auto"
    palette: str = "rgb"
    dds_format: str = "auto"

    def __post_init__(self) -> None:
        for name, choices in (
            ("seamless", SEAMLESS_MODES),
            ("map", maps.MAP_CHOICES),
            ("alpha", alpha_.ALPHA_CHOICES),
            ("palette", PALETTE_MODES),
            ("dds_format", DDS_FORMAT_CHOICES),
            ("resample", RESAMPLE_KERNELS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
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
    """Whether to wrap along (rows, columns): forced, or detected from the edges."""
    forced = {"on": (True, True), "off": (False, False), "x": (False, True), "y": (True, False)}
    if seamless in forced:
        return forced[seamless]
    colour = image.pixels[:, :, : 3 if image.channels >= 3 else 1]
    return detect_wrap(torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1))


def plan_texture(
    image: ImageFile, name: str | PurePath, options: TextureOptions = TextureOptions()
) -> MapInfo:
    """Decide how ``image`` (named ``name``) is treated: map kind, alpha mode, wrap."""
    kind, two_channel, notes = maps.detect(name, image.pixels, image.bits, options.map)
    mode, coverage, soft, constant = "absent", None, None, None
    if image.channels in (2, 4):
        a = image.pixels[:, :, -1]
        constant = alpha_.constant(a, image.bits)
        if constant is None:
            mode = options.alpha
            if mode == "auto":
                mode = alpha_.classify(a, image.bits)
                if mode == "blended" and kind != "color":
                    mode = "data"  # smooth alpha in a normal or data map holds packed data
            if mode == "cutout":
                coverage = alpha_.coverage(a, image.bits)
                soft = alpha_.soft_share(a, image.bits)
    wrap = wrap_axes(image, options.seamless)
    return MapInfo(kind, mode, two_channel, coverage, soft, constant, wrap, tuple(notes))


def batch_key(image: ImageFile, info: MapInfo) -> tuple[object, ...]:
    """Images with equal keys can share one model batch."""
    return (
        image.size,
        image.channels,
        image.bits,
        info.wrap,
        info.kind,
        info.alpha,
        info.two_channel,
        info.constant_alpha is None,
    )


def model_input(image: ImageFile, info: MapInfo) -> np.ndarray:
    """The pixels the model sees, ``(H, W, C')`` in the image's dtype: without a constant alpha
    channel, with colour bled under fully transparent texels, with Z rebuilt in blue for a
    two-channel normal map."""
    pixels = image.pixels if info.constant_alpha is None else image.pixels[:, :, :-1]
    bleed = info.alpha in ("cutout", "blended")
    if not (bleed or info.two_channel):
        return pixels
    x = to_tensor(pixels, image.bits)
    if info.two_channel:
        x = maps.from_filter_space(maps.to_filter_space(x, info), maps.model_space(info))
    if bleed:  # in encoded values: only invisible texels change, and they only need to blend in
        idx = maps.colour_channels(info.kind, x.shape[1])
        x[:, idx] = alpha_.bleed(x[:, idx], x[:, -1:])
    return np.ascontiguousarray(to_levels(quantize(x, image.bits)).astype(pixels.dtype))


def upscale_images(
    upscaler: Upscaler,
    images: list[ImageFile],
    options: TextureOptions,
    wrap: tuple[bool, bool] | None = None,
    infos: list[MapInfo] | None = None,
) -> list[ImageFile]:
    """Upscale images that share ``batch_key`` in one batch; returns new ``ImageFile``s.

    ``infos``: each image's plan (default: planned here, without a file name); ``wrap``
    overrides the plans' wrap axes.
    """
    if infos is None:
        infos = [plan_texture(im, "", options) for im in images]
    if wrap is not None:
        infos = [replace(info, wrap=wrap) for info in infos]
    info, first = infos[0], images[0]
    h, w = first.size
    bits = first.bits
    x = torch.from_numpy(
        np.stack([model_input(im, i) for im, i in zip(images, infos, strict=True)])
    )
    x = x.permute(0, 3, 1, 2)
    target = output_size((h, w), upscaler.scale, options)
    bands = upscaler.upscale_bands(x, tile=options.tile, wrap=info.wrap)
    out = torch.empty(len(images), target[0], target[1], x.shape[1], dtype=_dtype(bits))
    alpha16 = np.empty((len(images), *target), np.uint16) if info.alpha == "cutout" else None
    if target == (h * upscaler.scale, w * upscaler.scale):
        for y, band in bands:
            rows = slice(y, y + band.shape[2])
            out[:, rows] = maps.quantize_encoded(band, info, bits).permute(0, 2, 3, 1).cpu()
            if alpha16 is not None:
                alpha16[:, rows] = alpha_.to_u16(band[:, -1])
    else:
        full = _resample(bands, info, target, options.resample)
        out[:] = maps.quantize_filtered(full, info, bits).permute(0, 2, 3, 1)
        if alpha16 is not None:
            alpha16[:] = alpha_.to_u16(full[:, -1])
    array = out.numpy()
    results = []
    for i, (image, plan) in enumerate(zip(images, infos, strict=True)):
        pixels = array[i].astype(np.uint16) if bits == 16 else array[i]
        results.append(
            _finish(image, plan, pixels, alpha16[i] if alpha16 is not None else None, options)
        )
    return results


def _resample(
    bands: Iterator[tuple[int, torch.Tensor]],
    info: MapInfo,
    size: tuple[int, int],
    kernel: str,
) -> torch.Tensor:
    """The model's output bands filtered to ``size`` in the map's filter space: each band across
    first (cheap, shrinks it), then down the whole column stack."""
    space = maps.model_space(info)
    columns = [
        resize_axis(maps.to_filter_space(band, space), size[1], 3, kernel, wrap=info.wrap[1]).cpu()
        for _, band in bands
    ]
    return resize_axis(torch.cat(columns, dim=2), size[0], 2, kernel, wrap=info.wrap[0])


def _dtype(bits: int) -> torch.dtype:
    return torch.int32 if bits == 16 else torch.uint8


def _finish(
    image: ImageFile,
    info: MapInfo,
    pixels: np.ndarray,
    alpha16: np.ndarray | None,
    options: TextureOptions,
) -> ImageFile:
    if alpha16 is not None and info.coverage is not None:
        pixels[:, :, -1] = alpha_.keep_coverage(alpha16, info.coverage, image.bits, info.soft)
    if info.constant_alpha is not None:
        constant = np.full_like(pixels[:, :, :1], info.constant_alpha)
        pixels = np.concatenate([pixels, constant], axis=2)
    save_options = dict(image.save_options)
    palette = image.palette
    if options.palette == "keep" and palette is not None and palette.shape[1] == pixels.shape[2]:
        from .palette import snap

        pixels = snap(pixels, palette)
        save_options["palette"] = "keep"
    if options.dds_format != "auto":
        save_options["dds_format"] = options.dds_format
    result = image.with_pixels(np.ascontiguousarray(pixels))
    return replace(result, map_info=info, save_options=save_options)
