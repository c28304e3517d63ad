"""Details of image files that this project handles itself, beside Pillow: EXIF orientation,
the WebP container's chunks, PNG colour keys and the chunks added to a PNG, ICC profiles kept
only on pixels they describe, and BMP with an alpha channel that readers see."""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image

# EXIF orientation -> (transpose the axes first, then flip rows, flip columns): the pixels as
# a viewer shows them. 2: mirrored; 3: upside down; 6: stored rotated 90° anticlockwise...
_ORIENTATIONS = {
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1-8) of an opened image, 1 when absent or unreadable. Read from
    the header alone (JPEG APP1, PNG eXIf before the pixels, WebP EXIF), never the pixels."""
    data = im.info.get("exif")
    if not data:
        return 1
    try:
        exif = Image.Exif()
        exif.load(data)
        value = int(exif.get(0x0112, 1))
    except Exception:  # a damaged EXIF block only loses the tag
        return 1
    return value if value in _ORIENTATIONS else 1


def turns_sideways(orientation: int) -> bool:
    """Whether applying ``orientation`` swaps width and height (a quarter turn)."""
    return _ORIENTATIONS.get(orientation, (False,))[0]


def oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, C)`` pixels as a viewer shows them under the EXIF ``orientation``."""
    if orientation not in _ORIENTATIONS:
        return pixels
    swap, rows, cols = _ORIENTATIONS[orientation]
    if swap:
        pixels = pixels.transpose(1, 0, 2)
    return np.ascontiguousarray(pixels[:: -1 if rows else 1, :: -1 if cols else 1])


def webp_lossless(handle: BinaryIO) -> bool:
    """Whether a WebP holds a lossless (VP8L) bitstream, in the simple container or the
    extended one (VP8X, where ICC, EXIF or alpha chunks come first)."""
    handle.seek(12)
    for _ in range(64):  # a WebP has a handful of chunks before its bitstream
        header = handle.read(8)
        if len(header) < 8:
            return False
        name, size = header[:4], struct.unpack("<I", header[4:])[0]
        if name in (b"VP8L", b"VP8 "):
            return name == b"VP8L"
        handle.seek(size + (size & 1), os.SEEK_CUR)
    return False


def with_png_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """``png`` with ``chunks`` (type + data each) inserted right after IHDR."""
    if not chunks:
        return png
    packed = b"".join(
        struct.pack(">I", len(c) - 4) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
        for c in chunks
    )
    end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4  # signature, IHDR
    return png[:end] + packed + png[end:]


PNG_CRITICAL = frozenset((b"IHDR", b"PLTE", b"IDAT", b"IEND"))


def unknown_critical_png_chunk(handle: BinaryIO) -> str | None:
    """The type of the first critical chunk (upper-case first letter) a PNG decoder does not
    know, which the PNG spec says it must refuse the file for; None when there is none. Reads
    only the chunk headers (Pillow skips unknown chunks silently, critical ones included)."""
    handle.seek(8)
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return None  # a truncated file: the decoder reports it
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return None
        if 65 <= kind[0] <= 90 and kind not in PNG_CRITICAL:
            return kind.decode("latin-1")
        handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


def bmp_with_alpha(pixels: np.ndarray) -> bytes:
    """A 32-bit BMP whose alpha readers see: BITMAPV4HEADER with BI_BITFIELDS masks for B, G, R
    and A (a plain 32-bit BI_RGB file is read as RGB by most readers, Pillow included)."""
    h, w, c = pixels.shape
    colour = np.repeat(pixels[:, :, :1], 3, axis=2) if c == 2 else pixels[:, :, :3]
    bgra = np.concatenate([colour[:, :, ::-1], pixels[:, :, -1:]], axis=2)[::-1]  # bottom-up
    body = np.ascontiguousarray(bgra).tobytes()
    offset = 14 + 108
    header = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 108, w, h, 1, 32, 3, len(body), 2835, 2835, 0, 0)
    info += struct.pack("<4I", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)
    info += struct.pack("<I", 0x73524742) + bytes(36 + 12)  # LCS_sRGB; no endpoints or gamma
    return header + info + body


def apply_colour_key(pixels: np.ndarray, key: object, bits: int) -> np.ndarray:
    """Gray/colour + alpha to gray/colour with a PNG colour key: texels below half alpha take
    the key; visible texels that the model happened to give the key's value move by one level,
    so they do not turn transparent."""
    top = 65535 if bits == 16 else 255
    values = np.asarray(key if isinstance(key, tuple) else (key,), dtype=np.int64)
    colour = pixels[:, :, :-1].copy()
    if values.shape[0] != colour.shape[2] or values.min() < 0 or values.max() > top:
        return colour  # a key that does not fit these pixels: the texels stay as they are
    clear = pixels[:, :, -1] < (top + 1) // 2
    hit = np.all(colour == values.astype(colour.dtype), axis=2) & ~clear
    colour[hit, 0] = values[0] + 1 if values[0] < top else values[0] - 1
    colour[clear] = values.astype(colour.dtype)
    return colour


_ICC_SPACES = {1: b"GRAY", 2: b"GRAY", 3: b"RGB ", 4: b"RGB "}


def matching_icc(profile: bytes | None, channels: int, notes: list[str]) -> bytes | None:
    """``profile`` if it describes pixels of this many channels (gray or RGB), else None with a
    note: a CMYK profile on RGB pixels would make every viewer show wrong colours."""
    if not profile:
        return None
    space = profile[16:20] if len(profile) >= 128 else b""
    if space == _ICC_SPACES[channels]:
        return profile
    name = space.decode("ascii", "replace").strip() or "unreadable"
    what = "gray" if channels <= 2 else "RGB"
    notes.append(f"ICC profile ({name}) not kept: it does not describe the {what} output")
    return None
