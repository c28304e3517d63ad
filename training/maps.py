"""What kind of map a texture is: colour, normal, alpha-carrying colour, or an auxiliary data map.

Judged from the file name (the suffix conventions of game asset pipelines) and, where pixels are
given, from their content. Used by ``prepare`` (to sort and filter unpacked game data), by ``pack``
and by the datasets (to treat normal maps as vectors).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

KINDS = ("color", "normal", "alpha")

# Whole-token matches, after stripping trailing digits ("norms1" -> "norms", "mask2" -> "mask").
NORMAL_TOKENS = frozenset({"nrm", "norm", "norms", "normal", "normals", "normalmap", "ddn"})
AUX_TOKENS = frozenset(
    {
        "spec",
        "specular",
        "gloss",
        "glossiness",
        "rough",
        "roughness",
        "metallic",
        "metalness",
        "height",
        "heightmap",
        "disp",
        "displacement",
        "ao",
        "occlusion",
        "ambientocclusion",
        "mask",
        "masks",
        "glow",
        "emissive",
        "emission",
        "illum",
        "selfillum",
        "bump",
        "bumpmap",
        "opacity",
        "orm",
        "rma",
        "cavity",
        "curvature",
        "thickness",
        "sss",
        "lightmap",
    }
)
# Single letters mean a map type only as the last token ("rock_s.png" is specular).
AUX_SUFFIXES = frozenset({"s", "h", "g", "e", "r", "m"})
NORMAL_SUFFIXES = frozenset({"n", "nm", "nor", "local"})  # "local": id Tech 4's normal maps


def name_tokens(path: str | Path) -> list[str]:
    """Lower-case words of a file name: split on punctuation and camelCase, digits stripped."""
    stem = Path(path).stem
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    tokens = [t.rstrip("0123456789") for t in re.split(r"[^A-Za-z0-9]+", words.lower())]
    return [t for t in tokens if t]


def kind_from_name(path: str | Path) -> str | None:
    """``"normal"``, ``"aux"`` (specular, height, masks, ...), or None when the name says nothing.

    A folder named ``normal`` (as in our prepared sets) marks normal maps too.
    """
    tokens = name_tokens(path)
    if any(t in NORMAL_TOKENS for t in tokens) or (tokens and tokens[-1] in NORMAL_SUFFIXES):
        return "normal"
    if any(t in AUX_TOKENS for t in tokens) or (tokens and tokens[-1] in AUX_SUFFIXES):
        return "aux"
    if any(part.lower() in ("normal", "normals") for part in Path(path).parent.parts[-2:]):
        return "normal"
    return None


def looks_like_normal_map(pixels: np.ndarray) -> bool:
    """Whether ``(H, W, C)`` 8/16-bit pixels hold tangent-space normals: bluish, mean near
    (0.5, 0.5, 1), and decoded vectors of about unit length."""
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return False
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0
    rgb = pixels[::4, ::4, :3].reshape(-1, 3).astype(np.float32) / top
    v = rgb * 2 - 1
    length = np.linalg.norm(v, axis=1)
    used = length > 0.3  # unused (black) regions of an atlas say nothing
    if used.mean() < 0.5:
        return False
    rgb, v, length = rgb[used], v[used], length[used]
    mean = rgb.mean(axis=0)
    unit = float(np.mean(np.abs(length - 1) < 0.2))
    centred = abs(mean[0] - 0.5) < 0.12 and abs(mean[1] - 0.5) < 0.12 and mean[2] > 0.7
    return bool(centred and unit > 0.85 and float(np.mean(v[:, 2] > 0)) > 0.97)


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
    """``color``, ``normal``, ``alpha`` (colour whose alpha matters) or ``aux``, from the name and
    the pixels ``(H, W, C)``. The name wins; content catches normal maps with vague names."""
    by_name = kind_from_name(path)
    if by_name is not None:
        return by_name
    if looks_like_normal_map(pixels):
        return "normal"
    return "alpha" if alpha_matters(pixels) else "color"
