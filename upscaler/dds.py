"""DirectDraw Surface (DDS) specifics: which block format to write back."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .io import ImageFile

# Source pixel format (as Pillow names it on read) -> what Pillow can encode.
WRITABLE = {
    "DXT1": "DXT1",
    "BC1": "DXT1",
    "DXT3": "DXT3",
    "BC2": "DXT3",
    "DXT5": "DXT5",
    "BC3": "DXT5",
    "BC5": "BC5",
    "BC5S": "BC5",
}


def dds_save_options(image: ImageFile, im: Image.Image) -> dict[str, Any]:
    """Pillow save options that keep the source's block format where Pillow can write it."""
    source = image.info.get("pixel_format")
    target = WRITABLE.get(source or "")
    if target is None or (target == "BC5" and im.mode != "RGB"):
        return {}  # uncompressed
    return {"pixel_format": target}


_CAPS2_CUBEMAP, _CAPS2_VOLUME = 0x200, 0x200000
_DX10_MISC_TEXTURECUBE, _DX10_DIMENSION_3D = 0x4, 4
_DXGI_HDR = {94: "BC6H", 95: "BC6H", 96: "BC6H (signed)"}
HEADER_BYTES = 148  # magic, header and DX10 extension


def unsupported_layout(head: bytes) -> str | None:
    """Why a DDS would lose data here (Pillow decodes only the first 2D surface, in 8 bits).

    ``head``: the file's first ``HEADER_BYTES``. None when the file is a plain 2D texture, or too
    short to tell (the decoder then reports it).
    """
    if len(head) < 128 or not head.startswith(b"DDS "):
        return None
    (caps2,) = struct.unpack_from("<I", head, 112)
    cube, volume, layers, dxgi = bool(caps2 & _CAPS2_CUBEMAP), bool(caps2 & _CAPS2_VOLUME), 1, 0
    if head[84:88] == b"DX10" and len(head) >= HEADER_BYTES:
        dxgi, dimension, misc, layers = struct.unpack_from("<4I", head, 128)
        cube = cube or bool(misc & _DX10_MISC_TEXTURECUBE)
        volume = volume or dimension == _DX10_DIMENSION_3D
    if cube:
        return "cube map (only the first face would be kept)"
    if volume:
        return "volume texture (only the first slice would be kept)"
    if layers > 1:
        return f"texture array of {layers} (only the first would be kept)"
    if dxgi in _DXGI_HDR:
        return f"{_DXGI_HDR[dxgi]} HDR format (would be clipped to 8 bits)"
    return None
