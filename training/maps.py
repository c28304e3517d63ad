"""What a training texture is: colour, normal, alpha-carrying colour, or a data map (skipped).

The map type is ``upscale``'s own (``upscaler.texture.maps``: the name says normal or data, and a
"normal" must hold unit vectors), so a file is trained as the kind it is upscaled as. Training adds
a prepared set's ``normal`` folder, and, for ``prepare`` sorting unpacked game data, a content test
that finds normal maps whose names say nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from upscaler.texture import normals
from upscaler.texture.maps import detect

KINDS = ("color", "normal", "alpha")
NORMAL_FOLDERS = ("normal", "normals")


def looks_like_normal_map(pixels: np.ndarray) -> bool:
    """Whether ``(H, W, C)`` 8/16-bit pixels hold tangent-space normals: unit vectors (the check
    ``upscale`` confirms named normal maps with), bluish, mean near (0.5, 0.5, 1)."""
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return False
    bits = 16 if pixels.dtype == np.uint16 else 8
    check = normals.check_pixels(pixels, bits)
    if not check.unit or check.two_channel:
        return False
    mean = pixels[::4, ::4, :3].reshape(-1, 3).mean(axis=0) / (65535.0 if bits == 16 else 255.0)
    return bool(abs(mean[0] - 0.5) < 0.12 and abs(mean[1] - 0.5) < 0.12 and mean[2] > 0.7)


def is_grayscale(pixels: np.ndarray, tolerance: float = 0.01) -> bool:
    """Channels (nearly) equal: a gray image stored as RGB. Faintly tinted colour maps (stone,
    metal) differ by more than ``tolerance`` on average and are colour."""
    if pixels.shape[2] < 3:
        return True
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0
    rgb = pixels[::2, ::2, :3].astype(np.float32) / top
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) < tolerance


def alpha_matters(pixels: np.ndarray) -> bool:
    """An alpha channel that is not just opaque everywhere."""
    if pixels.shape[2] not in (2, 4):
        return False
    top = 65535 if pixels.dtype == np.uint16 else 255
    return bool((pixels[:, :, -1] < top * 0.98).mean() > 0.01)


def classify(path: str | Path, pixels: np.ndarray) -> str:
    """``color``, ``normal``, ``alpha`` (colour whose alpha matters) or ``data`` (not trained on),
    from the name and the pixels ``(H, W, C)``, exactly as ``upscale`` decides the map type
    (``upscaler.texture.maps.detect``: a name says normal or data; a "normal" whose pixels are not
    unit vectors is colour). A prepared set's ``normal`` folder marks normal maps too."""
    bits = 16 if pixels.dtype == np.uint16 else 8
    kind, _, _ = detect(path, pixels, bits)
    in_normal_folder = any(p.lower() in NORMAL_FOLDERS for p in Path(path).parent.parts[-2:])
    if kind in ("normal", "data"):
        return kind
    if in_normal_folder and pixels.shape[2] >= 3:
        return "normal"
    return "alpha" if alpha_matters(pixels) else "color"
