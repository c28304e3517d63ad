"""Valid TGA files that Pillow refuses, rewritten as the same picture in a TGA it reads.

Pillow decodes TGA well but refuses two valid layouts: run-length packets that run on from one
row into the next (the TGA 2.0 spec forbids them only for version 2 files; GIMP and ImageMagick
read them, and older tools write them) and 15-bit colour (a 15-bit colour map, or 15-bit
texels). Rather than a second decoder with its own idea of orientation, alpha and palettes, the
file is rewritten in memory: the run-length data expanded (by Pillow's own decoder, run over the
whole image as one long row so that no packet can cross a row), 15-bit colour widened to 24 bits,
and the extension area Pillow consults for alpha carried over; Pillow then reads the result.
Used only when Pillow refuses the original.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

HEADER = struct.Struct("<BBBHHBHHHHBB")
FOOTER = b"TRUEVISION-XFILE.\x00"
EXTENSION_BYTES = 495  # TGA 2.0 extension area
RLE = 8
# Bytes per texel -> (Pillow mode, raw mode) that copies the stored bytes unchanged.
_AS_STORED = {1: ("L", "L"), 2: ("LA", "LA"), 3: ("RGB", "RGB"), 4: ("RGBA", "RGBA")}


class TgaError(Exception):
    """The file is not a TGA we can rewrite; the message is one line."""


def rewritten(data: bytes) -> bytes | None:
    """``data`` (a whole TGA file) as a TGA Pillow reads: run-length data expanded and 15-bit
    colour widened to 24 bits. None when it has neither (then the rewrite cannot help)."""
    if len(data) < HEADER.size:
        raise TgaError("truncated TGA file (header cut short)")
    fields = list(HEADER.unpack_from(data))
    id_len, map_type, kind, _first, length, map_bits, _x, _y, width, height, depth, desc = fields
    map_bytes = length * ((map_bits + 7) // 8) if map_type == 1 else 0
    start = HEADER.size + id_len
    table = data[start : start + map_bytes]
    if len(table) < map_bytes:
        raise TgaError("truncated TGA file (colour map cut short)")
    texel_bytes = (depth + 7) // 8
    if texel_bytes not in _AS_STORED:
        raise TgaError(f"unsupported TGA pixel depth {depth}")
    body = data[start + map_bytes :]
    count = width * height
    wide_map = map_type == 1 and map_bits == 15
    wide_texels = kind & 7 == 2 and depth == 15
    if not (kind & RLE or wide_map or wide_texels):
        return None
    if kind & RLE:
        texels = _expand_runs(body, count, texel_bytes)
        kind &= ~RLE
    else:
        texels = body[: count * texel_bytes]
        if len(texels) < count * texel_bytes:
            raise TgaError("truncated TGA file (pixel data cut short)")
    if wide_map:
        table, map_bits = _bgr24(table), 24
    if wide_texels:  # 5-5-5 with no alpha bit: 24-bit BGR, alpha bits cleared
        texels, depth, desc = _bgr24(texels), 24, desc & 0xF0
    fields[2], fields[5], fields[10], fields[11] = kind, map_bits, depth, desc
    head = HEADER.pack(*fields) + data[HEADER.size : start] + table
    return head + texels + _extension(data, len(head) + len(texels))


def _expand_runs(body: bytes, count: int, texel_bytes: int) -> bytes:
    """``count`` texels of run-length data as stored bytes, packets free to cross rows."""
    mode, raw = _AS_STORED[texel_bytes]
    try:
        im = Image.frombytes(mode, (count, 1), body, "tga_rle", raw, 1, 8 * texel_bytes)
    except ValueError as exc:  # "not enough image data", "cannot decode image data"
        raise TgaError(f"corrupt TGA run-length data ({exc})") from None
    return im.tobytes()


def _bgr24(data: bytes) -> bytes:
    """Little-endian 16-bit x-5-5-5 entries to 8-bit BGR triples, widened by Pillow's own
    unpacker so that they match what it makes of a 16-bit colour map."""
    count = len(data) // 2
    if count == 0:
        return b""
    rgb = Image.frombytes("RGB", (count, 1), data, "raw", "BGR;15")
    return np.asarray(rgb)[0, :, ::-1].tobytes()


def _extension(data: bytes, at: int) -> bytes:
    """The original's extension area (Pillow reads its alpha attribute) and a footer pointing to
    it at offset ``at`` of the rewritten file; empty when the original has none."""
    if len(data) < 26 or not data.endswith(FOOTER):
        return b""
    (offset,) = struct.unpack_from("<I", data, len(data) - 26)
    area = data[offset : offset + EXTENSION_BYTES] if offset else b""
    if len(area) < EXTENSION_BYTES:
        return b""
    return area + struct.pack("<II", at, 0) + FOOTER
