"""DirectDraw Surface (DDS) specifics: which block format to write back."""

from __future__ import annotations

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
