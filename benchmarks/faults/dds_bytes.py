"""Hand-built DDS files: headers Pillow would not write (HDR, partial cube maps, volumes)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

# Header flags: CAPS | HEIGHT | WIDTH | PIXELFORMAT | LINEARSIZE; DEPTH for volumes.
_FLAGS = 0x1 | 0x2 | 0x4 | 0x1000 | 0x80000
_DEPTH_FLAG = 0x800000
_FOURCC = 0x4
_CAPS_TEXTURE, _CAPS_COMPLEX = 0x1000, 0x8
CUBEMAP_ALL_FACES = 0x200 | 0xFC00
CUBEMAP_TWO_FACES = 0x200 | 0x0C00  # -X and +Y only: a partial cube map
VOLUME = 0x200000
DXGI_BC1, DXGI_BC6H_UF16, DXGI_BC6H_SF16, DXGI_R16G16B16A16_FLOAT = 71, 95, 96, 10


def header(
    width: int,
    height: int,
    *,
    fourcc: bytes = b"DXT1",
    caps2: int = 0,
    depth: int = 0,
    dx10: tuple[int, int, int, int] | None = None,
) -> bytes:
    """``DDS `` magic, the 124-byte header and, when ``dx10`` = (dxgi format, dimension, misc flag,
    array size) is given, the 20-byte DX10 header."""
    flags = _FLAGS | (_DEPTH_FLAG if depth else 0)
    caps = _CAPS_TEXTURE | (_CAPS_COMPLEX if caps2 else 0)
    pixel_format = struct.pack("<II4sIIIII", 32, _FOURCC, fourcc, 0, 0, 0, 0, 0)
    body = struct.pack("<7I", flags, height, width, 0, depth, 1, 0) + b"\0" * 40
    out = b"DDS " + struct.pack("<I", 124) + body + pixel_format
    out += struct.pack("<5I", caps, caps2, 0, 0, 0)
    if dx10 is not None:
        out += struct.pack("<5I", *dx10, 0)
    return out


def _dxt1_blocks(patch: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if patch.shape[2] == 4 else "RGB"
    Image.fromarray(patch, mode).convert("RGBA").save(buffer, format="DDS", pixel_format="DXT1")
    return buffer.getvalue()[128:]


VARIANTS = (
    "bc6h",
    "bc6h-signed",
    "cubemap-partial",
    "cubemap-bc6h",
    "volume",
    "array-bc6h",
    "float16",
    "unknown-fourcc",
)


def unsupported(index: int, dxt1: bytes | None, patch: np.ndarray) -> tuple[str, bytes]:
    """(variant name, file bytes) of a DDS this tool must refuse rather than silently lose data."""
    h, w = patch.shape[:2]
    blocks = dxt1[128:] if dxt1 is not None else _dxt1_blocks(patch)
    name = VARIANTS[index % len(VARIANTS)]
    block_count = ((w + 3) // 4) * ((h + 3) // 4)
    rng = np.random.default_rng(index)
    if name in ("bc6h", "bc6h-signed"):
        fmt = DXGI_BC6H_UF16 if name == "bc6h" else DXGI_BC6H_SF16
        data = rng.integers(0, 256, block_count * 16, dtype=np.uint8).tobytes()
        return name, header(w, h, fourcc=b"DX10", dx10=(fmt, 3, 0, 1)) + data
    if name == "cubemap-partial":
        return name, header(w, h, caps2=CUBEMAP_TWO_FACES) + blocks * 2
    if name in ("cubemap-bc6h", "array-bc6h"):  # an HDR sky box; HDR slices
        misc, count = (0x4, 1) if name == "cubemap-bc6h" else (0, 3)
        data = rng.integers(0, 256, block_count * 16 * 6, dtype=np.uint8).tobytes()
        return name, header(w, h, fourcc=b"DX10", dx10=(DXGI_BC6H_UF16, 3, misc, count)) + data
    if name == "volume":
        return name, header(w, h, caps2=VOLUME, depth=4) + blocks * 4
    if name == "float16":
        data = np.zeros(h * w * 4, dtype=np.float16).tobytes()
        return name, header(w, h, fourcc=b"DX10", dx10=(DXGI_R16G16B16A16_FLOAT, 3, 0, 1)) + data
    return name, header(w, h, fourcc=b"ATC ") + blocks


# Pixel-format flags of a legacy header, and the header's PITCH flag.
PF_ALPHAPIXELS, PF_ALPHA, PF_FOURCC, PF_RGB, PF_LUMINANCE = 0x1, 0x2, 0x4, 0x40, 0x20000
DDSD_PITCH, DDSD_MIPMAPCOUNT = 0x8, 0x20000


def legacy_header(
    width: int,
    height: int,
    *,
    pf_flags: int = PF_RGB,
    fourcc: bytes = b"\0\0\0\0",
    bitcount: int = 0,
    masks: tuple[int, int, int, int] = (0, 0, 0, 0),
    pitch: int = 0,
    mips: int = 0,
    extra_flags: int = 0,
) -> bytes:
    """The 128-byte legacy header (magic included) of any layout, as other tools write them:
    uncompressed (flags, bit count, masks; ``pitch`` with the PITCH flag) or FourCC."""
    flags = 0x1 | 0x2 | 0x4 | 0x1000 | extra_flags
    flags |= DDSD_PITCH if pitch else 0
    flags |= DDSD_MIPMAPCOUNT if mips else 0
    body = struct.pack("<7I", flags, height, width, pitch, 0, mips, 0) + b"\0" * 40
    pixel_format = struct.pack("<II4sI4I", 32, pf_flags, fourcc, bitcount, *masks)
    return (
        b"DDS "
        + struct.pack("<I", 124)
        + body
        + pixel_format
        + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    )


def dx10_header(width: int, height: int, dxgi: int, *, alpha_mode: int = 0, mips: int = 0) -> bytes:
    """A DX10 file's 148 header bytes: the legacy header with FourCC ``DX10``, then the DX10
    header (2D texture, one slice, ``alpha_mode`` in its misc flags 2)."""
    legacy = legacy_header(width, height, pf_flags=PF_FOURCC, fourcc=b"DX10", mips=mips)
    return legacy + struct.pack("<5I", dxgi, 3, 0, 1, alpha_mode)
