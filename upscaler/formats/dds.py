"""DirectDraw Surface (DDS) files: the top level's pixels, and writing back with mips.

The top mip is decoded: block formats through ``bcn``, uncompressed layouts from their channel
masks (``ddsheader`` parses and refuses); a cube map or texture array has one top level per
layer (face or slice). Writing keeps the source's format, header style (legacy FourCC or DX10),
sRGB flag, alpha mode and layers; a source with mips gets a full chain generated per map type
(``mips``), per layer. What cannot be written in the source's format falls back to the closest
format that can, with a note naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from upscaler.formats import bcn
from upscaler.formats.bits import full_scale, to_8bit
from upscaler.formats.ddsheader import (
    ALPHA_PREMULTIPLIED,
    DX10_BYTES,
    HEADER_BYTES,
    M8,
    RGBA8,
    DdsError,
    DdsFormat,
    DdsInfo,
    check_length,
    describe,
    dx10_format,
    layer_offset,
    pack_header,
    parse_header,
    read_info,
    top_level_bytes,
)
from upscaler.options import DDS_FORMATS

__all__ = [
    "ALPHA_PREMULTIPLIED",
    "DX10_BYTES",
    "HEADER_BYTES",
    "DdsError",
    "DdsFormat",
    "DdsInfo",
    "check_length",
    "describe",
    "encode",
    "parse_header",
    "read_info",
    "read_layers",
    "read_pixels",
]


def planes(fmt: DdsFormat) -> tuple[list[tuple[int, int]], int]:
    """Which mask fills which pixel channel, and how many channels the pixels have.

    R only (or luminance) is gray; R and G alone are an RG map, read as RGB with blue 0 (like a
    BC5 normal map); alpha alone is read as a gray channel.
    """
    r, g, b, a = fmt.masks
    if fmt.luminance or (r and not g and not b):
        return [(r, 0)] + ([(a, 1)] if a else []), 2 if a else 1
    if not (r or g or b):
        return [(a, 0)], 1
    if r and g and not b:
        return [(r, 0), (g, 1)], 3
    return [(r, 0), (g, 1), (b, 2)] + ([(a, 3)] if a else []), 4 if a else 3


def pixel_bits(fmt: DdsFormat) -> int:
    """16 for single-channel 16-bit layouts (L16, R16: height maps stay 16-bit), else 8."""
    found, _ = planes(fmt)
    return 16 if len(found) == 1 and found[0][0].bit_count() > 8 else 8


def read_layers(handle: BinaryIO, info: DdsInfo) -> list[np.ndarray]:
    """The top level of every layer (the one of a 2D texture; a cube map's faces in DDS order
    +X, -X, +Y, -Y, +Z, -Z; array slices), each as ``read_pixels`` returns it. BC1 layers are
    all RGB or all RGBA: one with transparent texels makes every layer RGBA."""
    layers = [read_pixels(handle, info, i) for i in range(info.layers)]
    if len({layer.shape for layer in layers}) > 1:  # BC1 without alpha in some layers only
        layers = [_with_alpha(layer) for layer in layers]
    return layers


def _with_alpha(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[2] == 4:
        return pixels
    return np.concatenate([pixels, np.full_like(pixels[:, :, :1], 255)], axis=2)


def read_pixels(handle: BinaryIO, info: DdsInfo, layer: int = 0) -> np.ndarray:
    """The top level of ``layer`` of the open DDS file as ``(H, W, C)`` uint8 (uint16 for 16-bit
    gray)."""
    fmt, h, w = info.format, info.height, info.width
    handle.seek(layer_offset(info, layer))
    need = top_level_bytes(info)
    data = handle.read(need)
    if len(data) < need:
        raise DdsError("truncated DDS file")
    if fmt.block:
        return _decode_blocks(data, fmt, h, w)
    if info.pitch:  # rows padded to whole words: drop the padding
        row = w * fmt.bitcount // 8
        padded = np.frombuffer(data + bytes(info.pitch - row), np.uint8).reshape(h, info.pitch)
        data = np.ascontiguousarray(padded[:, :row]).tobytes()
    return _decode_masks(data, fmt, h, w)


def _decode_blocks(data: bytes, fmt: DdsFormat, h: int, w: int) -> np.ndarray:
    pixels = bcn.decode(data, fmt.block, h, w, signed=fmt.signed)
    if fmt.signed:
        pixels = _from_signed(pixels)
    if fmt.block == 5:  # RG: blue is empty, as in a two-channel normal map
        pixels = np.concatenate([pixels, np.zeros_like(pixels[:, :, :1])], axis=2)
    if fmt.block == 1 and int(pixels[:, :, 3].min()) == 255:
        pixels = pixels[:, :, :3]  # BC1 without transparent texels: plain RGB
    return np.ascontiguousarray(pixels)


def _from_signed(offset_binary: np.ndarray) -> np.ndarray:
    """Offset-binary signed values (s + 128) to the unsigned encoding of s / 127."""
    s = np.maximum(offset_binary.astype(np.int32) - 128, -127)
    return np.floor((s / 127 + 1) * 127.5 + 0.5).astype(np.uint8)


def _to_signed(encoded: np.ndarray) -> np.ndarray:
    s = np.floor((encoded.astype(np.float64) / 255 * 2 - 1) * 127 + 0.5)
    return (s + 128).astype(np.uint8)


def _decode_masks(data: bytes, fmt: DdsFormat, h: int, w: int) -> np.ndarray:
    step = fmt.bitcount // 8
    raw = np.frombuffer(data, dtype=np.uint8, count=h * w * step).reshape(h, w, step)
    value = np.zeros((h, w), dtype=np.uint32)
    for i in range(step):
        value |= raw[:, :, i].astype(np.uint32) << (8 * i)
    found, channels = planes(fmt)
    bits = pixel_bits(fmt)
    top = full_scale(bits)
    out = np.zeros((h, w, channels), dtype=np.uint16 if bits == 16 else np.uint8)
    for mask, channel in found:
        if not mask:  # a layout without this channel (e.g. blue alone in an RGB file): 0
            continue
        shift = (mask & -mask).bit_length() - 1
        most = mask >> shift
        v = ((value & mask) >> shift).astype(np.uint64)
        out[:, :, channel] = (v * top + most // 2) // most
    return out


# -- writing --------------------------------------------------------------------------------------


def wants_mips(source: DdsInfo | None, requested: str) -> bool:
    """Whether a DDS output gets a full mip chain: a source that had mips, a file converted to
    DDS, or a format asked for (a game-ready texture); a single-level DDS stays single."""
    return source is None or source.mip_count > 1 or requested != "auto"


@dataclass(frozen=True)
class DdsWrite:
    """How the texture stage wants a DDS written; the encoder only packs. ``format``: a family
    (``options.DDS_FORMATS``), or auto: the source's, or one picked for the content; ``colour``:
    sRGB data (for a format picked here); ``two_channel``: an RG normal map; ``mips``: the
    finished levels below the top, made by the texture stage (none: the top level only), one
    tuple per layer after the first in ``layer_mips`` for a cube map or array."""

    format: str = "auto"
    colour: bool = True
    two_channel: bool = False
    mips: tuple[np.ndarray, ...] = ()
    layer_mips: tuple[tuple[np.ndarray, ...], ...] = ()
    quality: str = bcn.DEFAULT_QUALITY  # the encoders' speed/quality point (options.DDS_QUALITIES)


def encode(
    pixels: np.ndarray,
    bits: int,
    source: DdsInfo | None,
    write: DdsWrite,
    layers: tuple[np.ndarray, ...] = (),
) -> tuple[bytes, list[str]]:
    """The DDS file for ``(H, W, C)`` ``pixels`` and ``write.mips`` (read from ``source`` when
    it was a DDS), and notes about anything not kept as it was. ``layers``: a cube map's or an
    array's top levels, ``pixels`` first, in the source's layout (with ``write.layer_mips``)."""
    fmt, notes = _writable(_choose(source, pixels, bits, write))
    h, w = pixels.shape[:2]
    chains = [[pixels, *write.mips]]
    if layers:
        below = write.layer_mips or ((),) * (len(layers) - 1)
        if source is None or len(layers) != source.layers or len(below) != len(layers) - 1:
            raise ValueError("the layers do not match the source's cube map or array")
        chains += [[top, *mips] for top, mips in zip(layers[1:], below, strict=True)]
        if any(len(chain) != len(chains[0]) for chain in chains):
            raise ValueError("every layer needs the same number of mips")
    encoder = None
    if fmt.block:
        encoder, more = bcn.choose(fmt.block, write.quality, colour=write.colour, label=fmt.name)
        notes += more
    alpha_mode = source.alpha_mode if source is not None else 0
    premultiplied = alpha_mode == ALPHA_PREMULTIPLIED
    surfaces = [
        _encode_surface(_fit(level, bits, fmt), fmt, encoder, premultiplied)
        for chain in chains
        for level in chain
    ]
    cube = source is not None and source.cube and bool(layers)
    header = pack_header(fmt, h, w, len(chains[0]), alpha_mode, len(chains), cube)
    return header + b"".join(surfaces), notes


def _choose(source: DdsInfo | None, pixels: np.ndarray, bits: int, write: DdsWrite) -> DdsFormat:
    """The format asked for: the source's, a named family, or one picked for the content."""
    requested = write.format
    if requested not in DDS_FORMATS:
        raise ValueError(f"DDS format must be one of {DDS_FORMATS}, got {requested!r}")
    if requested == "auto" and source is not None:
        return source.format
    srgb = source.format.srgb if source is not None else write.colour
    dx10 = source is None or source.format.dxgi != 0 or (source.layers > 1 and not source.cube)
    if requested == "auto":
        if pixels.shape[2] == 1:
            requested = "rgba" if bits == 16 else "bc4"
        elif write.two_channel:
            requested = "bc5"
        else:
            requested = "bc7"
    if requested == "rgba":
        if pixels.shape[2] == 1 and bits == 16:
            return dx10_format(56)
        if dx10:
            return dx10_format(29 if srgb else 28)
        return DdsFormat("A8B8G8R8", bitcount=32, masks=RGBA8)
    block = int(requested[2])
    return _block_format(block, srgb and block in (1, 2, 3, 7), dx10 or block == 7)


def _block_format(block: int, srgb: bool, dx10: bool) -> DdsFormat:
    if dx10:
        number = {1: 71, 2: 74, 3: 77, 4: 80, 5: 83, 7: 98}[block] + (1 if srgb else 0)
        return dx10_format(number)
    fourcc = {1: b"DXT1", 2: b"DXT3", 3: b"DXT5", 4: b"ATI1", 5: b"ATI2"}[block]
    return DdsFormat(fourcc.decode(), block, fourcc=fourcc)


def _writable(fmt: DdsFormat) -> tuple[DdsFormat, list[str]]:
    """``fmt`` if we can encode it, else the closest format we can, with a note naming both."""
    if not fmt.block or bcn.can_encode(fmt.block):
        return fmt, []
    if fmt.block == 7:
        closest = _block_format(3, fmt.srgb, True)
    elif fmt.block == 4:
        l8 = DdsFormat("L8", bitcount=8, masks=M8, luminance=True)
        closest = dx10_format(61) if fmt.dxgi else l8
    else:
        closest = _block_format(3, fmt.srgb, fmt.dxgi != 0)
    why = "no encoder for it is installed (pip install etcpak)"
    return closest, [f"{fmt.name} cannot be written: {why}; written as {closest.name}"]


def _fit(pixels: np.ndarray, bits: int, fmt: DdsFormat) -> np.ndarray:
    """Pixels in the channel layout and depth ``fmt`` stores."""
    if bits == 16 and pixel_bits(fmt) == 8:
        pixels = to_8bit(pixels)
    c = pixels.shape[2]
    if fmt.block == 4:
        return pixels[:, :, :1]
    if fmt.block == 5:
        rg = pixels[:, :, :2] if c >= 3 else np.repeat(pixels[:, :, :1], 2, axis=2)
        return rg
    if fmt.block == 1 and c in (2, 4):  # 1-bit alpha: transparent below half, as alpha tests
        pixels = pixels.copy()
        pixels[:, :, -1] = np.where(pixels[:, :, -1] >= 128, 255, 0)
    return pixels


def _encode_surface(
    pixels: np.ndarray, fmt: DdsFormat, encoder: bcn.Encoder | None, premultiplied: bool = False
) -> bytes:
    if fmt.block:
        if fmt.signed:
            pixels = _to_signed(pixels)
        elif premultiplied:  # compression must not lift colour above alpha
            return bcn.encode_premultiplied(pixels, fmt.block, encoder=encoder)
        return bcn.encode(pixels, fmt.block, signed=fmt.signed, encoder=encoder)
    return _encode_masks(pixels, fmt)


def _encode_masks(pixels: np.ndarray, fmt: DdsFormat) -> bytes:
    h, w, c = pixels.shape
    found, channels = planes(fmt)
    if c != channels:
        pixels = _match_channels(pixels, channels)
    top = full_scale(16 if pixels.dtype == np.uint16 else 8)
    value = np.zeros((h, w), dtype=np.uint64)
    for mask, channel in found:
        if not mask:
            continue
        shift = (mask & -mask).bit_length() - 1
        most = mask >> shift
        v = (pixels[:, :, channel].astype(np.uint64) * most + top // 2) // top
        value |= v << np.uint64(shift)
    step = fmt.bitcount // 8
    out = np.empty((h, w, step), dtype=np.uint8)
    for i in range(step):
        out[:, :, i] = (value >> np.uint64(8 * i)) & np.uint64(0xFF)
    return out.tobytes()


def _match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Gray <-> colour and alpha added or dropped, for a layout with another channel count."""
    c = pixels.shape[2]
    gray, alpha = c in (1, 2), c in (2, 4)
    colour = pixels[:, :, :1] if gray else pixels[:, :, :3]
    if channels in (1, 2):
        colour = colour if gray else colour.mean(axis=2, keepdims=True).round().astype(colour.dtype)
    else:
        colour = np.repeat(colour, 3, axis=2) if gray else colour
    if channels in (2, 4):
        top = full_scale(16 if pixels.dtype == np.uint16 else 8)
        a = pixels[:, :, -1:] if alpha else np.full_like(colour[:, :, :1], top)
        return np.concatenate([colour, a], axis=2)
    return np.ascontiguousarray(colour)
