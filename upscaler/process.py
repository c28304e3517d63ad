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

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import PurePath

import numpy as np
import torch

from upscaler import options
from upscaler.engine.budget import chunk_bytes
from upscaler.engine.pipeline import Upscaler
from upscaler.formats.dds import DdsWrite, wants_mips
from upscaler.formats.image import ImageFile
from upscaler.texture import alpha as alpha_
from upscaler.texture import maps
from upscaler.texture.blocks import looks_block_compressed
from upscaler.texture.cube import FACES, pad_faces
from upscaler.texture.levels import quantize, to_levels, to_tensor
from upscaler.texture.maps import MapInfo
from upscaler.texture.mips import build_chain, chain_sizes
from upscaler.texture.resample import RowResampler, resize_axis
from upscaler.texture.seamless import detect_wrap


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
    dds_quality: str = "balanced"

    def __post_init__(self) -> None:
        for name, choices in (
            ("seamless", options.SEAMLESS_MODES),
            ("map", options.MAP_CHOICES),
            ("alpha", options.ALPHA_CHOICES),
            ("palette", options.PALETTE_MODES),
            ("dds_format", options.DDS_FORMATS),
            ("dds_quality", options.DDS_QUALITIES),
            ("resample", options.RESAMPLE_KERNELS),
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
    colour = _as_tensor(image.pixels).permute(2, 0, 1)[: 3 if image.channels >= 3 else 1]
    return detect_wrap(colour)  # measured in slices: no copy of the image


def plan_texture(
    image: ImageFile,
    name: str | PurePath,
    options: TextureOptions = TextureOptions(),
    *,
    blocks: bool = True,
) -> MapInfo:
    """Decide how ``image`` (named ``name``) is treated: map kind, alpha mode, wrap, and (with
    ``blocks``: for a model with weights for them, ``Upscaler.for_blocks``) whether its pixels
    were block-compressed."""
    if image.layers:
        return _plan_layers(image, name, options, blocks)
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
    premultiplied = image.premultiplied and image.channels in (2, 4) and kind != "normal"
    if image.premultiplied and not premultiplied and kind == "normal":
        notes.append("premultiplied alpha on a normal map: treated as straight alpha")
    # Gray kept in RGB goes through the model as one channel: a colour model fed three equal
    # channels can still give three different answers (a checker of invented colour).
    gray = kind == "color" and maps.is_gray_rgb(image.pixels, image.bits)
    if gray:
        notes.append("gray stored as RGB: upscaled as one gray channel")
    return MapInfo(
        kind,
        mode,
        two_channel,
        coverage,
        soft,
        constant,
        wrap,
        tuple(notes),
        premultiplied,
        gray,
        block_compressed=blocks and image.bits == 8 and looks_block_compressed(image.pixels),
    )


def _plan_layers(
    image: ImageFile, name: str | PurePath, options: TextureOptions, blocks: bool
) -> MapInfo:
    """A cube map's or an array's plan: kind and alpha judged on all layers together, then one
    plan per layer. Cube faces do not wrap on themselves: the faces around them are their wrap.
    Array slices are separate textures, each with its own wrap and alpha-test coverage."""
    whole = image.with_pixels(np.concatenate(image.layers, axis=0))
    plan = plan_texture(whole, name, replace(options, seamless="off"), blocks=blocks)
    cube = bool(image.info["dds"].cube)
    layers = []
    for pixels in image.layers:
        layer = image.with_pixels(pixels)
        wrap = (False, False) if cube else wrap_axes(layer, options.seamless)
        coverage, soft = plan.coverage, plan.soft
        if plan.alpha == "cutout":
            coverage = alpha_.coverage(pixels[:, :, -1], image.bits)
            soft = alpha_.soft_share(pixels[:, :, -1], image.bits)
        layers.append(replace(plan, wrap=wrap, coverage=coverage, soft=soft, notes=()))
    n = len(layers)
    note = (
        f"cube map{f's ({n // FACES})' if n > FACES else ''}: each face upscaled with the "
        "edges of the faces around it"
        if cube
        else f"texture array of {n} slices: each upscaled as its own texture"
    )
    return replace(
        plan, wrap=layers[0].wrap, notes=(*plan.notes, note), layers=tuple(layers), cube=cube
    )


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
        info.gray_rgb,
        len(image.layers),
        info.cube,
        info.block_compressed,
    )


def model_input(image: ImageFile, info: MapInfo) -> np.ndarray:
    """The pixels the model sees, ``(H, W, C')`` in the image's dtype: without a constant alpha
    channel, with colour bled under fully transparent texels, with Z rebuilt in blue for a
    two-channel normal map."""
    pixels = image.pixels if info.constant_alpha is None else image.pixels[:, :, :-1]
    if info.gray_rgb:
        pixels = maps.gray_of(pixels)
    # Premultiplied colour is already zero where nothing shows: it filters right as it is.
    bleed = info.alpha in ("cutout", "blended") and not info.premultiplied
    if not (bleed or info.two_channel):
        return pixels
    if not info.two_channel:  # in bands: a whole float copy of a 16k texture does not fit
        idx = maps.colour_channels(info.kind, pixels.shape[2])
        return alpha_.bleed_levels(pixels, image.bits, idx)
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
    cube: bool = False,
) -> list[ImageFile]:
    """Upscale images that share ``batch_key`` in one batch; returns new ``ImageFile``s.

    ``infos``: each image's plan (default: planned here, without a file name); ``wrap``
    overrides the plans' wrap axes (of 2D textures). The output rows arrive in bands and go
    straight into the final pixel arrays; nothing else of output size is held. Cube maps and
    arrays (``ImageFile.layers``) are upscaled one file at a time, layer by layer; ``cube``:
    ``images`` are the six faces of one cube map, each padded with its neighbours' edges.
    """
    if infos is None:
        blocks = upscaler.for_blocks is not None
        infos = [plan_texture(im, "", options, blocks=blocks) for im in images]
    if images[0].layers:
        return [
            _upscale_layers(upscaler, im, options, i) for im, i in zip(images, infos, strict=True)
        ]
    if wrap is not None:
        infos = [replace(info, wrap=wrap) for info in infos]
    info, first = infos[0], images[0]
    if info.block_compressed and upscaler.for_blocks is not None:
        upscaler = upscaler.for_blocks
    h, w = first.size
    bits = first.bits
    inputs = [model_input(im, i) for im, i in zip(images, infos, strict=True)]
    # One image is used in place; several are stacked (batches are capped in size).
    x = _as_tensor(inputs[0])[None] if len(inputs) == 1 else torch.from_numpy(np.stack(inputs))
    x = x.permute(0, 3, 1, 2)
    channels = x.shape[1]
    target = output_size((h, w), upscaler.scale, options)
    # A cube face sees as much of its neighbours as a wrapping texture sees of itself.
    context = min(upscaler.wrap_width(h), h) if cube else 0
    if cube:
        x = pad_faces(x, context)
    # Converting a band costs several float copies of it (normals: ~8), so it is converted in
    # chunks of the size the memory budget plans for, however large the band the model made.
    bands = _in_chunks(
        upscaler.upscale_bands(x, tile=options.tile, wrap=info.wrap, context=context),
        chunk_bytes(upscaler.budget),
    )
    extra = 1 if info.constant_alpha is not None else 0
    dtype = np.uint16 if bits == 16 else np.uint8
    # Gray kept in RGB came through as gray: its one channel is copied back into R, G and B.
    spread = [0, 0, 0, *range(1, channels)] if info.gray_rgb else None
    width = channels if spread is None else len(spread)
    outputs = [np.empty((*target, width + extra), dtype) for _ in images]
    alpha16 = [np.empty(target, np.uint16) for _ in images] if info.alpha == "cutout" else None
    if target == (h * upscaler.scale, w * upscaler.scale):
        quantized = ((y, band, maps.quantize_encoded(band, info, bits)) for y, band in bands)
    else:
        quantized = (
            (y, rows, maps.quantize_filtered(rows, info, bits))
            for y, rows in _resample(bands, info, (h * upscaler.scale, target), options.resample)
        )
    for y, band, levels in quantized:
        rows = slice(y, y + band.shape[2])
        chunk = levels.permute(0, 2, 3, 1).cpu().numpy()
        alpha = alpha_.to_u16(band[:, -1]) if alpha16 is not None else None
        for i, out in enumerate(outputs):
            out[rows, :, :width] = chunk[i] if spread is None else chunk[i][:, :, spread]
            if alpha16 is not None and alpha is not None:
                alpha16[i][rows] = alpha[i]
    results = []
    for i, (image, plan) in enumerate(zip(images, infos, strict=True)):
        results.append(
            _finish(image, plan, outputs[i], alpha16[i] if alpha16 is not None else None, options)
        )
    return results


def _upscale_layers(
    upscaler: Upscaler, image: ImageFile, options: TextureOptions, info: MapInfo
) -> ImageFile:
    """A cube map (six faces in one batch, per cube) or an array (slice by slice), each layer
    with its own plan; the result has the same layers."""
    layers = [image.with_pixels(pixels) for pixels in image.layers]
    step = FACES if info.cube else 1
    out: list[ImageFile] = []
    for start in range(0, len(layers), step):
        part, plans = layers[start : start + step], list(info.layers[start : start + step])
        out += upscale_images(upscaler, part, options, infos=plans, cube=info.cube)
    return out[0].with_layers([o.pixels for o in out])


def _in_chunks(
    bands: Iterator[tuple[int, torch.Tensor]], most_bytes: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Row bands cut into chunks of at most ``most_bytes`` (at least one row each)."""
    for y, band in bands:
        row_bytes = band[:, :, :1].numel() * band.element_size()
        step = max(1, most_bytes // max(1, row_bytes))
        if step >= band.shape[2]:
            yield y, band
            continue
        for start in range(0, band.shape[2], step):  # contiguous: strided views run slow paths
            yield y + start, band[:, :, start : start + step].contiguous()


def _resample(
    bands: Iterator[tuple[int, torch.Tensor]],
    info: MapInfo,
    sizes: tuple[int, tuple[int, int]],
    kernel: str,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The model's output bands filtered to ``size`` in the map's filter space, as row chunks:
    each band across first (cheap, shrinks it), then down as the rows it needs arrive."""
    height, size = sizes
    space = maps.model_space(info)
    down = RowResampler(height, size[0], kernel, wrap=info.wrap[0])
    for y, band in bands:
        across = resize_axis(
            maps.to_filter_space(band, space), size[1], 3, kernel, wrap=info.wrap[1]
        )
        yield from down.push(y, across)
    yield from down.finish()


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``pixels``' memory (read only here; torch warns about read-only arrays)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(pixels)


def _finish(
    image: ImageFile,
    info: MapInfo,
    pixels: np.ndarray,
    alpha16: np.ndarray | None,
    options: TextureOptions,
) -> ImageFile:
    """``pixels``: the output with room for a constant alpha channel, filled in here."""
    if info.constant_alpha is not None:
        pixels[:, :, -1] = info.constant_alpha
    elif alpha16 is not None and info.coverage is not None:
        pixels[:, :, -1] = alpha_.keep_coverage(alpha16, info.coverage, image.bits, info.soft)
        if info.premultiplied:  # its colour was multiplied by the alpha the model made
            alpha_.follow_alpha(pixels, alpha16, image.bits, info.kind)
    if info.premultiplied:  # after the final alpha: no colour above it, none under alpha 0
        alpha_.clamp_premultiplied(pixels, image.bits, info.kind)
    palette, keep_palette = image.palette, False
    if options.palette == "keep" and palette is not None and palette.shape[1] == pixels.shape[2]:
        from upscaler.texture.palette import snap

        pixels, keep_palette = snap(pixels, palette), True
    dds_write = DdsWrite(
        options.dds_format, info.kind == "color", info.two_channel, quality=options.dds_quality
    )
    result = image.with_pixels(np.ascontiguousarray(pixels))
    return replace(
        result, write_palette=keep_palette, dds_write=dds_write, premultiplied=info.premultiplied
    )


def for_output(image: ImageFile, info: MapInfo, fmt: str) -> tuple[ImageFile, list[str]]:
    """``image`` ready for the encoder of ``fmt``, and notes on what that changed: a DDS that
    wants mips gets its chain here, filtered per map type (``texture.mips``); premultiplied
    alpha bound for a format that holds only straight alpha is divided out. The encoder only
    packs what it is given."""
    write = image.dds_write
    if fmt == "DDS":
        if not wants_mips(image.info.get("dds"), write.format):
            return image, []
        levels = len(chain_sizes(*image.size))
        chain = build_chain(
            image.pixels, image.bits, info.layers[0] if info.layers else info, levels
        )
        write = replace(write, mips=tuple(chain[1:]))
        if image.layers:  # each face or slice mipped by itself, by its own plan
            more = zip(image.layers[1:], info.layers[1:], strict=True)
            below = [tuple(build_chain(p, image.bits, i, levels)[1:]) for p, i in more]
            write = replace(write, layer_mips=tuple(below))
        return replace(image, dds_write=write), []
    if image.premultiplied:
        pixels = alpha_.unpremultiply(image.pixels, image.bits, info.kind)
        note = f"premultiplied alpha written as straight alpha ({fmt} has no other)"
        return replace(image, pixels=pixels, premultiplied=False), [note]
    return image, []
