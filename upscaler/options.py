"""Every choice the library and the ``upscale`` command share, defined once.

No torch and no Pillow here: the command line builds ``--help`` from these, and the library's
option classes check against the same tuples.
"""

from __future__ import annotations

# File formats: the extension an output gets, and every extension read (``.jpeg`` reads as JPEG).
FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tga": "TGA",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".dds": "DDS",
}
EXTENSIONS: dict[str, str] = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "TGA": ".tga",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "DDS": ".dds",
}
OUTPUT_FORMATS = ("png", "tga", "jpg", "bmp", "webp", "dds")  # --format

MAP_KINDS = ("color", "normal", "data")
MAP_CHOICES = ("auto", *MAP_KINDS)
ALPHA_MODES = ("cutout", "blended", "data", "absent")
ALPHA_CHOICES = ("auto", "cutout", "blended", "data")
SEAMLESS_MODES = ("auto", "on", "off", "x", "y")  # x: left/right edges meet; y: top/bottom
PALETTE_MODES = ("rgb", "keep")
DDS_FORMATS = ("auto", "bc1", "bc2", "bc3", "bc4", "bc5", "bc7", "rgba")
DDS_QUALITIES = ("fast", "balanced", "best")  # block encoders' speed/quality point (formats.bcn)
FILTER_KERNELS = ("lanczos3", "bicubic", "catmull-rom", "bilinear", "box")  # texture.resample
RESAMPLE_KERNELS = (*FILTER_KERNELS, "nearest")  # --native / --output-scale filters
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
