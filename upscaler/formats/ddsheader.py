"""DDS headers: the surface formats we know, parsing (legacy and DX10), and packing.

Parsing is ours, not Pillow's, so the exact source format, its sRGB flag, alpha mode and mip count
are known. Cube maps (six faces, legacy caps or DX10) and DX10 texture arrays are read as layers;
volumes, partial cube maps and formats without a decoder (BC6H, float) are refused with the
format's name before a pixel is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from upscaler.formats import bcn

MAGIC = b"DDS "
HEADER_BYTES = 128
DX10_BYTES = 20

_CAPS, _HEIGHT, _WIDTH, _PITCH = 0x1, 0x2, 0x4, 0x8
_PIXELFORMAT, _MIPMAPCOUNT, _LINEARSIZE, _DEPTH = 0x1000, 0x20000, 0x80000, 0x800000
_ALPHAPIXELS, _ALPHA, _PF_FOURCC, _PAL8, _RGB = 0x1, 0x2, 0x4, 0x20, 0x40
_YUV, _LUMINANCE, _BUMPDUDV = 0x200, 0x20000, 0x80000
_CAPS_COMPLEX, _CAPS_TEXTURE, _CAPS_MIPMAP = 0x8, 0x1000, 0x400000
_CAPS2_CUBEMAP, _CAPS2_VOLUME = 0x200, 0x200000
_CAPS2_ALL_FACES = 0xFC00  # +X, -X, +Y, -Y, +Z, -Z
CUBE_FACES = 6
_DX10_TEXTURE2D, _DX10_CUBE = 3, 0x4


class DdsError(Exception):
    """The DDS file cannot be read; ``reason`` is one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DdsFormat:
    """A surface format: a block format (``block`` 1-7) or an uncompressed layout (bit count and
    R, G, B, A masks). ``dxgi`` is the DX10 header's format number, 0 for a legacy header."""

    name: str
    block: int = 0
    signed: bool = False
    srgb: bool = False
    bitcount: int = 0
    masks: tuple[int, int, int, int] = (0, 0, 0, 0)
    luminance: bool = False
    fourcc: bytes = b""
    dxgi: int = 0


ALPHA_PREMULTIPLIED = 2  # DX10 header's alpha mode: colour stored multiplied by alpha


@dataclass(frozen=True)
class DdsInfo:
    width: int
    height: int
    mip_count: int
    format: DdsFormat
    data_offset: int
    alpha_mode: int = 0  # DX10 header: 0 unknown, 1 straight, 2 premultiplied, 3 opaque, 4 custom
    pitch: int = 0  # bytes from one row of the top level to the next when rows are padded
    layers: int = 1  # surfaces in the file: 6 per cube map (faces in DDS order), or array slices
    cube: bool = False  # the layers are cube faces, in groups of 6 (DX10 allows arrays of cubes)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of the top level as stored (its padding included)."""
        return self.pitch or self.width * self.format.bitcount // 8


M8 = (0xFF, 0, 0, 0)
RGBA8 = (0xFF, 0xFF00, 0xFF0000, 0xFF000000)
_BGRA8 = (0xFF0000, 0xFF00, 0xFF, 0xFF000000)
_BGRX8 = (0xFF0000, 0xFF00, 0xFF, 0)
# DXGI formats we read and write: number -> (name, block, srgb, signed, bitcount, masks).
_DXGI: dict[int, tuple[str, int, bool, bool, int, tuple[int, int, int, int]]] = {
    70: ("BC1_TYPELESS", 1, False, False, 0, (0, 0, 0, 0)),
    71: ("BC1_UNORM", 1, False, False, 0, (0, 0, 0, 0)),
    72: ("BC1_UNORM_SRGB", 1, True, False, 0, (0, 0, 0, 0)),
    73: ("BC2_TYPELESS", 2, False, False, 0, (0, 0, 0, 0)),
    74: ("BC2_UNORM", 2, False, False, 0, (0, 0, 0, 0)),
    75: ("BC2_UNORM_SRGB", 2, True, False, 0, (0, 0, 0, 0)),
    76: ("BC3_TYPELESS", 3, False, False, 0, (0, 0, 0, 0)),
    77: ("BC3_UNORM", 3, False, False, 0, (0, 0, 0, 0)),
    78: ("BC3_UNORM_SRGB", 3, True, False, 0, (0, 0, 0, 0)),
    79: ("BC4_TYPELESS", 4, False, False, 0, (0, 0, 0, 0)),
    80: ("BC4_UNORM", 4, False, False, 0, (0, 0, 0, 0)),
    81: ("BC4_SNORM", 4, False, True, 0, (0, 0, 0, 0)),
    82: ("BC5_TYPELESS", 5, False, False, 0, (0, 0, 0, 0)),
    83: ("BC5_UNORM", 5, False, False, 0, (0, 0, 0, 0)),
    84: ("BC5_SNORM", 5, False, True, 0, (0, 0, 0, 0)),
    97: ("BC7_TYPELESS", 7, False, False, 0, (0, 0, 0, 0)),
    98: ("BC7_UNORM", 7, False, False, 0, (0, 0, 0, 0)),
    99: ("BC7_UNORM_SRGB", 7, True, False, 0, (0, 0, 0, 0)),
    27: ("R8G8B8A8_TYPELESS", 0, False, False, 32, RGBA8),
    28: ("R8G8B8A8_UNORM", 0, False, False, 32, RGBA8),
    29: ("R8G8B8A8_UNORM_SRGB", 0, True, False, 32, RGBA8),
    87: ("B8G8R8A8_UNORM", 0, False, False, 32, _BGRA8),
    90: ("B8G8R8A8_TYPELESS", 0, False, False, 32, _BGRA8),
    91: ("B8G8R8A8_UNORM_SRGB", 0, True, False, 32, _BGRA8),
    88: ("B8G8R8X8_UNORM", 0, False, False, 32, _BGRX8),
    92: ("B8G8R8X8_TYPELESS", 0, False, False, 32, _BGRX8),
    93: ("B8G8R8X8_UNORM_SRGB", 0, True, False, 32, _BGRX8),
    60: ("R8_TYPELESS", 0, False, False, 8, M8),
    61: ("R8_UNORM", 0, False, False, 8, M8),
    48: ("R8G8_TYPELESS", 0, False, False, 16, (0xFF, 0xFF00, 0, 0)),
    49: ("R8G8_UNORM", 0, False, False, 16, (0xFF, 0xFF00, 0, 0)),
    53: ("R16_TYPELESS", 0, False, False, 16, (0xFFFF, 0, 0, 0)),
    56: ("R16_UNORM", 0, False, False, 16, (0xFFFF, 0, 0, 0)),
    65: ("A8_UNORM", 0, False, False, 8, (0, 0, 0, 0xFF)),
    85: ("B5G6R5_UNORM", 0, False, False, 16, (0xF800, 0x7E0, 0x1F, 0)),
    86: ("B5G5R5A1_UNORM", 0, False, False, 16, (0x7C00, 0x3E0, 0x1F, 0x8000)),
    115: ("B4G4R4A4_UNORM", 0, False, False, 16, (0xF00, 0xF0, 0xF, 0xF000)),
}
# Formats we can name but not read (HDR, float, wide or signed uncompressed).
_DXGI_NAMES = {
    2: "R32G32B32A32_FLOAT",
    6: "R32G32B32_FLOAT",
    10: "R16G16B16A16_FLOAT",
    11: "R16G16B16A16_UNORM",
    13: "R16G16B16A16_SNORM",
    16: "R32G32_FLOAT",
    24: "R10G10B10A2_UNORM",
    26: "R11G11B10_FLOAT",
    31: "R8G8B8A8_SNORM",
    34: "R16G16_FLOAT",
    35: "R16G16_UNORM",
    41: "R32_FLOAT",
    51: "R8G8_SNORM",
    54: "R16_FLOAT",
    63: "R8_SNORM",
    67: "R9G9B9E5_SHAREDEXP",
    89: "R10G10B10_XR_BIAS_A2_UNORM",
    94: "BC6H_TYPELESS (HDR)",
    95: "BC6H_UF16 (HDR)",
    96: "BC6H_SF16 (HDR)",
}
# Legacy FourCC block formats: fourcc -> (block, signed).
_FOURCC = {
    b"DXT1": (1, False),
    b"DXT3": (2, False),
    b"DXT5": (3, False),
    b"ATI1": (4, False),
    b"BC4U": (4, False),
    b"BC4S": (4, True),
    b"ATI2": (5, False),
    b"BC5U": (5, False),
    b"BC5S": (5, True),
}
_FOURCC_NAMES = {
    b"DXT2": "DXT2 (premultiplied alpha)",
    b"DXT4": "DXT4 (premultiplied alpha)",
    b"RXGB": "RXGB (DOOM 3 swizzled normal map)",
    b"UYVY": "UYVY (YUV)",
    b"YUY2": "YUY2 (YUV)",
    b"BC6H": "BC6H (HDR)",
    b"BC7L": "BC7 with a legacy header",
}
_D3DFMT_NAMES = {
    36: "A16B16G16R16",
    110: "Q16W16V16U16",
    111: "R16F",
    112: "G16R16F",
    113: "A16B16G16R16F",
    114: "R32F",
    115: "G32R32F",
    116: "A32B32G32R32F",
    117: "CxV8U8",
}


def read_info(path: Path) -> DdsInfo:
    """Parse ``path``'s header. Raises ``DdsError`` for anything we cannot read."""
    with open(path, "rb") as handle:
        return parse_header(handle.read(HEADER_BYTES + DX10_BYTES))


def top_level_bytes(info: DdsInfo) -> int:
    """Bytes the top level takes in the file (the last row needs no padding after it)."""
    if info.format.block or not info.pitch:
        return surface_bytes(info.format, info.height, info.width)
    return (info.height - 1) * info.pitch + info.width * info.format.bitcount // 8


def layer_bytes(info: DdsInfo) -> int:
    """Bytes from one layer (cube face, array slice) to the next: its whole mip chain, each level
    with its rows padded as the top level's are."""
    total, h, w = 0, info.height, info.width
    for _ in range(info.mip_count):
        if info.format.block or not info.pitch:
            total += surface_bytes(info.format, h, w)
        else:
            row = w * info.format.bitcount // 8
            total += h * (row + (-row % 4))
        h, w = max(1, h // 2), max(1, w // 2)
    return total


def layer_offset(info: DdsInfo, layer: int) -> int:
    """Where ``layer``'s top level starts in the file."""
    return info.data_offset + layer * layer_bytes(info) if layer else info.data_offset


def check_length(size: int, info: DdsInfo) -> None:
    """Raise ``DdsError`` if a file of ``size`` bytes is too short to hold the top level of every
    layer (after the size check, so an absurd header fails as too big, not as truncated)."""
    need = layer_offset(info, info.layers - 1) + top_level_bytes(info)
    if size < need:
        what = "the top level" if info.layers == 1 else f"the top levels of {info.layers} layers"
        raise DdsError(f"truncated DDS file ({size:,} bytes, {what} needs {need:,})")


def parse_header(head: bytes) -> DdsInfo:
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        raise DdsError("not a valid DDS file (header missing or cut short)")
    size, flags, height, width, _pitch, depth, mips = struct.unpack_from("<7I", head, 4)
    if size != 124:
        raise DdsError(f"not a valid DDS file (header size {size}, expected 124)")
    pf_flags, fourcc, bitcount = struct.unpack_from("<I4sI", head, 80)
    masks = struct.unpack_from("<4I", head, 92)
    caps2 = struct.unpack_from("<I", head, 112)[0]
    cube = bool(caps2 & _CAPS2_CUBEMAP)
    layers = CUBE_FACES if cube else 1
    if cube and caps2 & _CAPS2_ALL_FACES != _CAPS2_ALL_FACES:
        faces = (caps2 & _CAPS2_ALL_FACES).bit_count()
        raise DdsError(f"unsupported DDS: cube map with {faces} of its 6 faces")
    if caps2 & _CAPS2_VOLUME or (flags & _DEPTH and depth > 1):
        raise DdsError(f"unsupported DDS: volume texture ({depth} slices)")
    offset, alpha_mode = HEADER_BYTES, 0
    if pf_flags & _PF_FOURCC and fourcc == b"DX10":
        if len(head) < HEADER_BYTES + DX10_BYTES:
            raise DdsError("not a valid DDS file (DX10 header cut short)")
        dxgi, dimension, misc, array, misc2 = struct.unpack_from("<5I", head, HEADER_BYTES)
        offset += DX10_BYTES
        alpha_mode = misc2 & 0x7
        fmt = dx10_format(dxgi)
        if dimension != _DX10_TEXTURE2D:
            kind = {2: "1D texture", 4: "volume texture"}.get(dimension, f"dimension {dimension}")
            raise DdsError(f"unsupported DDS: {kind} ({fmt.name})")
        if array < 1:
            raise DdsError(f"not a valid DDS file (array size {array})")
        cube = bool(misc & _DX10_CUBE)
        layers = array * (CUBE_FACES if cube else 1)
    elif pf_flags & _PF_FOURCC:
        fmt = _legacy_block_format(fourcc)
    else:
        fmt = legacy_uncompressed_format(pf_flags, bitcount, masks)
    if cube and width != height:
        raise DdsError(f"not a valid DDS file (cube map of {width}x{height} faces, not square)")
    mip_count = max(1, mips) if flags & _MIPMAPCOUNT else 1
    pitch = _padded_pitch(flags, _pitch, fmt, width)
    return DdsInfo(width, height, mip_count, fmt, offset, alpha_mode, pitch, layers, cube)


def _padded_pitch(flags: int, pitch: int, fmt: DdsFormat, width: int) -> int:
    """The header's row pitch when it pads uncompressed rows to whole 32-bit words, as Direct3D 9
    laid out 24-bit (and odd-width 8/16-bit) surfaces; 0 when rows are packed. Any other pitch
    is ignored: many writers leave garbage there."""
    row = width * fmt.bitcount // 8
    if fmt.block or not flags & _PITCH or row % 4 == 0:
        return 0
    return pitch if pitch == row + (-row % 4) else 0


def dx10_format(dxgi: int) -> DdsFormat:
    if dxgi not in _DXGI:
        name = _DXGI_NAMES.get(dxgi, f"DXGI format {dxgi}")
        raise DdsError(f"unsupported DDS pixel format {name}")
    name, block, srgb, signed, bitcount, masks = _DXGI[dxgi]
    return DdsFormat(name, block, signed, srgb, bitcount, masks, dxgi=dxgi)


def _legacy_block_format(fourcc: bytes) -> DdsFormat:
    if fourcc in _FOURCC:
        block, signed = _FOURCC[fourcc]
        return DdsFormat(fourcc.decode(), block, signed, fourcc=fourcc)
    number = int.from_bytes(fourcc, "little")
    name = _FOURCC_NAMES.get(fourcc) or _D3DFMT_NAMES.get(number)
    if name is None:
        text = fourcc.decode("ascii", "replace")
        name = f"FourCC {text!r}" if text.isprintable() else f"D3DFMT {number}"
    raise DdsError(f"unsupported DDS pixel format {name}")


def legacy_uncompressed_format(
    flags: int, bitcount: int, masks: tuple[int, int, int, int]
) -> DdsFormat:
    if flags & (_PAL8 | _YUV | _BUMPDUDV):
        what = "palette (P8)" if flags & _PAL8 else "YUV" if flags & _YUV else "bump (DuDv)"
        raise DdsError(f"unsupported DDS pixel format {what}")
    if not flags & (_RGB | _LUMINANCE | _ALPHA) or bitcount not in (8, 16, 24, 32):
        raise DdsError(f"unsupported DDS pixel format (flags 0x{flags:x}, {bitcount} bits)")
    r, g, b, a = masks
    if not flags & _ALPHAPIXELS and not flags & _ALPHA:
        a = 0
    if flags & _ALPHA and not flags & (_RGB | _LUMINANCE):
        r = g = b = 0
    used = [m for m in (r, g, b, a) if m]
    if not used or any(m >> bitcount for m in used) or _overlap(used):
        raise DdsError(f"DDS channel masks {[hex(m) for m in masks]} are not valid")
    luminance = bool(flags & _LUMINANCE)
    name = _mask_name(r, g, b, a, luminance)
    unused = bitcount - sum(m.bit_count() for m in used)
    if unused > 0 and not luminance:
        name = f"X{unused}{name}"  # padding bits, as in X8R8G8B8
    return DdsFormat(name, bitcount=bitcount, masks=(r, g, b, a), luminance=luminance)


def _overlap(masks: list[int]) -> bool:
    seen = 0
    for m in masks:
        if seen & m:
            return True
        seen |= m
    return False


def _mask_name(r: int, g: int, b: int, a: int, luminance: bool) -> str:
    if luminance:
        return f"L{r.bit_count()}" + (f"A{a.bit_count()}" if a else "")
    parts = sorted(
        ((m, letter) for m, letter in ((r, "R"), (g, "G"), (b, "B"), (a, "A")) if m), reverse=True
    )
    return "".join(f"{letter}{m.bit_count()}" for m, letter in parts)


def surface_bytes(fmt: DdsFormat, height: int, width: int) -> int:
    if fmt.block:
        return bcn.surface_bytes(fmt.block, height, width)
    return height * width * (fmt.bitcount // 8)


def pack_header(
    fmt: DdsFormat, h: int, w: int, mips: int, alpha_mode: int, layers: int = 1, cube: bool = False
) -> bytes:
    """A header for ``layers`` surfaces (cube faces in groups of 6 with ``cube``; array slices
    need a DX10 ``fmt``) of ``mips`` levels each."""
    if layers > 1 and not cube and not fmt.dxgi:
        raise ValueError("a texture array needs a DX10 header")
    if cube and (layers % CUBE_FACES or (layers > CUBE_FACES and not fmt.dxgi)):
        raise ValueError(f"{layers} layers are not whole cube maps for this header")
    flags = _CAPS | _HEIGHT | _WIDTH | _PIXELFORMAT
    caps = _CAPS_TEXTURE | (_CAPS_COMPLEX if layers > 1 else 0)
    caps2 = _CAPS2_CUBEMAP | _CAPS2_ALL_FACES if cube else 0
    if mips > 1:
        flags |= _MIPMAPCOUNT
        caps |= _CAPS_COMPLEX | _CAPS_MIPMAP
    if fmt.block:
        flags |= _LINEARSIZE
        pitch = surface_bytes(fmt, h, w)
    else:
        flags |= _PITCH
        pitch = w * fmt.bitcount // 8
    masks = (0, 0, 0, 0)
    bitcount = 0
    if fmt.dxgi:
        pf_flags, fourcc = _PF_FOURCC, b"DX10"
    elif fmt.block:
        pf_flags, fourcc = _PF_FOURCC, fmt.fourcc
    else:
        r, g, b, a = masks = fmt.masks
        bitcount, fourcc = fmt.bitcount, b"\0\0\0\0"
        pf_flags = _LUMINANCE if fmt.luminance else _RGB if (r or g or b) else _ALPHA
        if a and pf_flags != _ALPHA:
            pf_flags |= _ALPHAPIXELS
    header = MAGIC + struct.pack("<7I", 124, flags, h, w, pitch, 0, mips) + bytes(44)
    header += struct.pack("<2I4sI4I", 32, pf_flags, fourcc, bitcount, *masks)
    header += struct.pack("<5I", caps, caps2, 0, 0, 0)
    if fmt.dxgi:
        misc, array = (_DX10_CUBE, layers // CUBE_FACES) if cube else (0, layers)
        header += struct.pack("<5I", fmt.dxgi, _DX10_TEXTURE2D, misc, array, alpha_mode)
    return header


def describe(info: DdsInfo) -> str:
    """E.g. ``BC7_UNORM_SRGB, 10 mips`` or ``BC1_UNORM, cube map, 6 mips``: for reports."""
    mips = f"{info.mip_count} mip{'s' if info.mip_count > 1 else ''}"
    if info.cube:
        cubes = info.layers // CUBE_FACES
        return f"{info.format.name}, {'cube map' if cubes == 1 else f'{cubes} cube maps'}, {mips}"
    if info.layers > 1:
        return f"{info.format.name}, array of {info.layers}, {mips}"
    return f"{info.format.name}, {mips}"
