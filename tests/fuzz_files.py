"""Hypothesis strategies for the fuzz harness: valid files of every layout our own decoders read
(DDS headers and blocks, TGA, palette images, PNG/WebP/JPEG details we interpret: colour keys,
EXIF orientation, ICC, the WebP container), then mutated (header fields set to edge values, bits
flipped, cut short, garbage appended); and odd file names and trees.

Every drawn file is a ``Drawn``: its name, its bytes, and the (height, width) a reader must find
when the file was left intact (``None`` once mutated: then only "decodes consistently or fails
cleanly" can be asked of it); for layouts simple enough to decode by hand here (uncompressed DDS
with byte-wide masks, TGA, palette images) also the pixels it must find, as an oracle.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from benchmarks.faults import dds_bytes, tga_bytes


@dataclass(frozen=True, eq=False)
class Drawn:
    name: str  # file name, extension included
    data: bytes
    size: tuple[int, int] | None  # (height, width) when intact; None when mutated
    pixels: np.ndarray | None = None  # (H, W, C) a reader must return, when known and intact


EDGE_U32 = (0, 1, 2, 3, 4, 7, 8, 15, 16, 24, 32, 255, 256, 4096, 16384, 65535, 65536, 0x7FFFFFFF)
EDGE_U32 += (0x80000000, 0xFFFFFFFF)
sides = st.integers(1, 40)
seeds = st.integers(0, 2**32 - 1)


def _pixels(seed: int, h: int, w: int, c: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8)


# -- mutations ---------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, data: bytes, fields: tuple[tuple[int, int], ...] = ()) -> bytes:
    """``data`` with 0-4 edits: a header field (offset, byte width) set to an edge value, a bit
    flipped, a cut, appended garbage."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(
            st.sampled_from(
                ("field", "flip", "cut", "append") if fields else ("flip", "cut", "append")
            )
        )
        if kind == "field":
            offset, width = draw(st.sampled_from(fields))
            if offset + width > len(out):
                continue
            top = (1 << (8 * width)) - 1
            value = draw(st.sampled_from([v & top for v in EDGE_U32]) | st.integers(0, top))
            out[offset : offset + width] = value.to_bytes(width, "little")
        elif kind == "flip" and out:
            at = draw(st.integers(0, len(out) - 1))
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut" and out:
            del out[draw(st.integers(0, len(out) - 1)) :]
        elif kind == "append":
            out += bytes(draw(st.lists(st.integers(0, 255), max_size=64)))
    return bytes(out)


def _finish(
    draw: st.DrawFn,
    name: str,
    data: bytes,
    size: tuple[int, int],
    fields: tuple[tuple[int, int], ...],
    pixels: np.ndarray | None = None,
) -> Drawn:
    changed = draw(mutated(data, fields))
    if changed != data:
        return Drawn(name, changed, None)
    return Drawn(name, data, size, pixels)


# -- DDS ---------------------------------------------------------------------------------------

RGB, ALPHA, LUM = dds_bytes.PF_RGB, dds_bytes.PF_ALPHAPIXELS, dds_bytes.PF_LUMINANCE
# name: (pixel-format flags, bit count, masks, the texel byte each decoded channel is, -1: zero;
# None where the value is not one byte, e.g. 5-6-5, or 16-bit gray)
_LEGACY: dict[str, tuple[int, int, tuple[int, int, int, int], tuple[int, ...] | None]] = {
    "rgb24": (RGB, 24, (0xFF0000, 0xFF00, 0xFF, 0), (2, 1, 0)),
    "bgra32": (RGB | ALPHA, 32, (0xFF0000, 0xFF00, 0xFF, 0xFF000000), (2, 1, 0, 3)),
    "abgr32": (RGB | ALPHA, 32, (0xFF, 0xFF00, 0xFF0000, 0xFF000000), (0, 1, 2, 3)),
    "xrgb32": (RGB, 32, (0xFF0000, 0xFF00, 0xFF, 0), (2, 1, 0)),
    "l8": (LUM, 8, (0xFF, 0, 0, 0), (0,)),
    "l16": (LUM, 16, (0xFFFF, 0, 0, 0), None),
    "a8l8": (LUM | ALPHA, 16, (0xFF, 0, 0, 0xFF00), (0, 1)),
    "a8": (dds_bytes.PF_ALPHA, 8, (0, 0, 0, 0xFF), (0,)),
    "r5g6b5": (RGB, 16, (0xF800, 0x7E0, 0x1F, 0), None),
    "a1r5g5b5": (RGB | ALPHA, 16, (0x7C00, 0x3E0, 0x1F, 0x8000), None),
    "a4r4g4b4": (RGB | ALPHA, 16, (0xF00, 0xF0, 0xF, 0xF000), None),
    "rg8": (RGB, 16, (0xFF, 0xFF00, 0, 0), (0, 1, -1)),
    "blue8": (RGB, 8, (0, 0, 0xFF, 0), (-1, -1, 0)),  # one channel of an RGB layout
    "green-alpha16": (RGB | ALPHA, 16, (0, 0xFF, 0, 0xFF00), (-1, 0, -1, 1)),
}


def _by_bytes(texels: np.ndarray, channels: tuple[int, ...]) -> np.ndarray:
    """``(H, W, bytes)`` texels to the decoded ``(H, W, C)``: each channel one of the bytes."""
    zero = np.zeros(texels.shape[:2], np.uint8)
    return np.stack([texels[:, :, b] if b >= 0 else zero for b in channels], axis=2)


_FOURCC = {b"DXT1": 8, b"DXT3": 16, b"DXT5": 16, b"ATI1": 8, b"ATI2": 16, b"BC4S": 8, b"BC5S": 16}
_DXGI = {  # number: bytes per texel, or per 4x4 block (negative)
    28: 4,
    29: 4,
    87: 4,
    88: 4,
    61: 1,
    49: 2,
    56: 2,
    65: 1,
    85: 2,
    86: 2,
    115: 2,
    71: -8,
    72: -8,
    74: -16,
    77: -16,
    80: -8,
    81: -8,
    83: -16,
    84: -16,
    98: -16,
    99: -16,
    95: -16,
    10: 8,
    2: 16,
    999: 4,
}
_DDS_FIELDS = tuple((o, 4) for o in (8, 12, 16, 20, 24, 28, 80, 84, 88, 92, 96, 100, 104, 108, 112))
_DX10_FIELDS = _DDS_FIELDS + tuple((o, 4) for o in (128, 132, 136, 140, 144))


@st.composite
def dds_files(draw: st.DrawFn) -> Drawn:
    h, w, seed = draw(sides), draw(sides), draw(seeds)
    rng = np.random.default_rng(seed)
    layout = draw(st.sampled_from(("legacy", "fourcc", "dx10")))
    mips = draw(st.sampled_from((0, 1, 3)))
    levels = max(1, mips)
    blocks = -(-h // 4) * -(-w // 4)
    expected = None
    if layout == "legacy":
        flags, bits, masks, channels = _LEGACY[draw(st.sampled_from(sorted(_LEGACY)))]
        step = bits // 8
        row = w * step
        pad = draw(st.booleans()) and row % 4 != 0  # Direct3D 9 rows padded to whole words
        pitch = row + (-row % 4) if pad else row
        header = dds_bytes.legacy_header(
            w, h, pf_flags=flags, bitcount=bits, masks=masks, pitch=pitch if pad else 0, mips=mips
        )
        texels = rng.integers(0, 256, (h, w, step), dtype=np.uint8)
        rows = np.zeros((h, pitch), np.uint8) + 0xA5  # padding bytes a shifted read would show
        rows[:, :row] = texels.reshape(h, row)
        mip_bytes = row * h * (levels - 1) + 64
        body = rows.tobytes() + rng.integers(0, 256, mip_bytes, np.uint8).tobytes()
        expected = _by_bytes(texels, channels) if channels is not None else None
        fields = _DDS_FIELDS
    elif layout == "fourcc":
        fourcc = draw(st.sampled_from(sorted(_FOURCC)))
        header = dds_bytes.legacy_header(
            w, h, pf_flags=dds_bytes.PF_FOURCC, fourcc=fourcc, mips=mips
        )
        size = blocks * _FOURCC[fourcc] * levels + 32
        body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        fields = _DDS_FIELDS
    else:
        dxgi = draw(st.sampled_from(sorted(_DXGI)))
        header = dds_bytes.dx10_header(w, h, dxgi, alpha_mode=draw(st.integers(0, 4)), mips=mips)
        unit = _DXGI[dxgi]
        size = blocks * -unit if unit < 0 else h * w * unit
        body = rng.integers(0, 256, size * levels + 32, dtype=np.uint8).tobytes()
        fields = _DX10_FIELDS
    return _finish(draw, "t.dds", header + body, (h, w), fields, expected)


# -- TGA ---------------------------------------------------------------------------------------

_TGA_FIELDS = (
    (0, 1),
    (1, 1),
    (2, 1),
    (3, 2),
    (5, 2),
    (7, 1),
    (8, 2),
    (10, 2),
    (12, 2),
    (14, 2),
    (16, 1),
    (17, 1),
)


@st.composite
def tga_files(draw: st.DrawFn) -> Drawn:
    h, w, seed = draw(sides), draw(sides), draw(seeds)
    kind = draw(st.sampled_from(("gray", "rgb", "rgba", "mapped")))
    origin = draw(
        st.sampled_from((0, tga_bytes.TOP, tga_bytes.RIGHT, tga_bytes.TOP | tga_bytes.RIGHT))
    )
    rle = draw(st.booleans())
    id_field = bytes(draw(st.lists(st.integers(0, 255), max_size=8)))
    if kind == "mapped":
        n = draw(st.integers(1, 256))
        palette = _pixels(seed, n, 1, 3)[:, 0]
        indices = np.random.default_rng(seed).integers(0, n, (h, w, 1), dtype=np.uint8)
        data = tga_bytes.tga(indices, origin=origin, rle=rle, id_field=id_field, palette=palette)
        expected = palette[indices[:, :, 0]]
    else:
        c = {"gray": 1, "rgb": 3, "rgba": 4}[kind]
        expected = _pixels(seed, h, w, c)
        data = tga_bytes.tga(expected, origin=origin, rle=rle, id_field=id_field)
    return _finish(draw, "t.tga", data, (h, w), _TGA_FIELDS, expected)


# -- palette images and the PNG / WebP / JPEG details we interpret ------------------------------


def _png_chunk(name: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))


def _with_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    return png[:33] + b"".join(chunks) + png[33:]


@st.composite
def palette_files(draw: st.DrawFn) -> Drawn:
    h, w, seed = draw(sides), draw(sides), draw(seeds)
    n = draw(st.integers(1, 256))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, (h, w), dtype=np.uint8)
    colours = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette(colours.tobytes())
    fmt = draw(st.sampled_from(("PNG", "BMP", "TGA")))
    buffer = io.BytesIO()
    params: dict[str, object] = {}
    expected = colours[indices]
    if fmt == "PNG":
        if draw(st.booleans()):
            alphas = rng.integers(0, 256, draw(st.integers(1, n)), dtype=np.uint8)
            params["transparency"] = alphas.tobytes()
            table = np.concatenate([alphas, np.full(256 - len(alphas), 255, np.uint8)])
            expected = np.concatenate([expected, table[indices][:, :, None]], axis=2)
        if n <= 16 and draw(st.booleans()):
            params["bits"] = 4 if n > 4 else 2 if n > 2 else 1
    im.save(buffer, format=fmt, **params)
    data = buffer.getvalue()
    name = f"p.{fmt.lower()}"
    if fmt == "PNG" and draw(st.booleans()):  # damaged PLTE/tRNS, valid CRCs: past Pillow's
        body = bytes(draw(st.lists(st.integers(0, 255), max_size=20)))
        chunk = _png_chunk(draw(st.sampled_from((b"tRNS", b"PLTE", b"sPLT"))), body)
        return Drawn(name, _with_chunks(data, [chunk]), None)
    fields = ((0, 1), (2, 1), (5, 2), (7, 1), (16, 1), (17, 1)) if fmt == "TGA" else ()
    return _finish(draw, name, data, (h, w), fields, expected)


@st.composite
def detail_files(draw: st.DrawFn) -> Drawn:
    """PNG colour keys, 16 bits, EXIF orientation (any value), ICC blobs; WebP in the extended
    container; JPEG with EXIF."""
    h, w, seed = draw(sides), draw(sides), draw(seeds)
    fmt = draw(st.sampled_from(("PNG", "PNG16", "WEBP", "JPEG")))
    orientation = draw(st.sampled_from((None, 1, 3, 6, 8, 0, 9, 65535)))
    exif = None
    if orientation is not None:
        tags = Image.Exif()
        tags[0x0112] = orientation
        exif = tags.tobytes()
    icc = draw(
        st.sampled_from(
            (None, b"", b"junk", bytes(128) + b"\0\0\0\0", bytes(16) + b"CMYK" + bytes(108))
        )
    )
    c = draw(st.sampled_from((1, 3, 4)))
    pixels = _pixels(seed, h, w, c)
    if fmt == "PNG16":
        import imagecodecs

        data = bytes(
            imagecodecs.png_encode(
                (pixels.astype(np.uint16) * 257)[:, :, 0]
                if c == 1
                else pixels.astype(np.uint16) * 257
            )
        )
        chunks = []
        if c in (1, 3) and draw(st.booleans()):
            chunks.append(
                _png_chunk(
                    b"tRNS", struct.pack(f">{c}H", *(int(v) * 257 for v in pixels[0, 0, :c]))
                )
            )
        if exif:
            chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif") else exif))
        if icc is not None:
            chunks.append(_png_chunk(b"iCCP", b"p\0\0" + zlib.compress(icc)))
        data = _with_chunks(data, chunks)
        name = "d.png"
    else:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
        im = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, mode)
        params: dict[str, object] = {}
        if exif:
            params["exif"] = exif
        if icc:
            params["icc_profile"] = icc
        if fmt == "PNG" and c in (1, 3) and draw(st.booleans()):
            params["transparency"] = (
                int(pixels[0, 0, 0]) if c == 1 else tuple(int(v) for v in pixels[0, 0])
            )
        if fmt == "WEBP":
            params["lossless"] = draw(st.booleans())
            if c == 1:
                im = im.convert("RGB")
        if fmt == "JPEG" and c == 4:
            im = im.convert("RGB")
        buffer = io.BytesIO()
        im.save(buffer, format=fmt, **params)
        data = buffer.getvalue()
        name = {"PNG": "d.png", "WEBP": "d.webp", "JPEG": "d.jpg"}[fmt]
    turned = orientation in (5, 6, 7, 8)
    fields = ((4, 4), (12, 4), (16, 4), (20, 4), (24, 4)) if fmt == "WEBP" else ()
    return _finish(draw, name, data, (w, h) if turned else (h, w), fields)


any_file = st.one_of(dds_files(), tga_files(), palette_files(), detail_files())


# -- names and trees ---------------------------------------------------------------------------

_ODD = [
    "\n",
    "\r",
    "\t",
    "\x1b",
    " ",
    "-",
    ".",
    "*",
    "?",
    "[",
    "]",
    "\\",
    "'",
    '"',
    "é",
    "Ω",
    "\u202e",
    "\u2028",
    "Ä",
    "ß",
    "İ",
    "%",
    "$",
]
_CHARS = st.characters(codec="utf-8", exclude_characters="/\x00") | st.sampled_from(_ODD)


@st.composite
def file_names(draw: st.DrawFn, extension: str) -> str:
    """An odd stem (controls, separators, bidi overrides, case-folding letters, undecodable bytes,
    up to NAME_MAX bytes) with ``extension`` in any case."""
    ext = "".join(ch.upper() if draw(st.booleans()) else ch for ch in extension)
    style = draw(st.sampled_from(("text", "long", "bytes")))
    if style == "bytes":
        stem = os.fsdecode(bytes(draw(st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=12))))
    else:
        stem = draw(st.text(_CHARS, min_size=1, max_size=24))
        if style == "long":
            stem = (stem * 255)[:255]
    room = 255 - len(os.fsencode(ext))
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    if stem in ("", ".", ".."):
        stem = "x"
    return stem + ext


folder_names = st.text(_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
