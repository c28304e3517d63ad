"""Map types: which kind of data a texture holds, and how each kind is filtered and stored.

* **color** (albedo, diffuse, UI): sRGB-encoded; filtered in linear light.
* **normal**: encoded vectors; filtered as vectors, renormalised, re-encoded (best-fit codes);
  two-channel (RG/BC5) maps keep an empty blue channel, their Z rebuilt wherever it is needed.
* **data** (roughness, metalness, AO, height, masks, specular): linear numbers; filtered as they
  are, never colour-converted.

The kind comes from the file name's suffix, and a "normal" by name must also look like one
(texels that decode to unit vectors), or it is reported and treated as colour. Every resampling
of a texture (native mode, ``--output-scale``, DDS mip chains) goes through ``to_filter_space``
and ``quantize_filtered`` here: one implementation per kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import torch

from upscaler.options import MAP_CHOICES
from upscaler.texture import normals
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear
from upscaler.texture.levels import quantize

# The kind a file name's last word names (after a convention tag, a trailing "map" and digits).
NORMAL_SUFFIXES = frozenset(
    {
        *("n", "nm", "nrm", "nor", "norm", "norms", "normal", "normals", "normalmap"),
        "ddn",  # CryEngine / Crytek Sponza: "DDN" (DXT-compressed normal)
        "local",  # id Tech 4 (Doom 3, Quake 4): "_local" is the normal map
    }
)
DATA_SUFFIXES = frozenset(
    {
        *("r", "rough", "roughness", "m", "metal", "metallic", "metalness"),
        *("ao", "occlusion", "ambientocclusion", "cavity", "curvature", "thickness", "sss"),
        *("h", "height", "heightmap", "disp", "displacement", "bump", "bumpmap"),
        *("mask", "masks", "opacity", "s", "spec", "specular", "g", "gloss", "glossiness"),
        *("orm", "arm", "rma", "mra"),  # packed occlusion / roughness / metalness
    }
)
# A convention tag after the kind ("rock_nor_gl", "rock_normal_dx") names the same kind.
CONVENTION_TAGS = frozenset({"gl", "dx", "opengl", "directx", "ogl"})
KIND_WORDS = NORMAL_SUFFIXES | DATA_SUFFIXES


def name_tokens(name: str | PurePath) -> list[str]:
    """Lower-case words of a file name (extension dropped): split on punctuation, spaces and
    camelCase, trailing digits stripped ("norms1" -> "norms", "01" -> gone)."""
    stem = PurePath(name).name.split(".")[0]
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    tokens = [t.rstrip("0123456789") for t in re.split(r"[^A-Za-z0-9]+", words.lower())]
    return [t for t in tokens if t]


def kind_from_name(name: str | PurePath) -> str | None:
    """``normal`` or ``data`` from a file name's last word, else None (the name says nothing).

    The one classifier for inference and training: ``rock_n``, ``T_Rock_NRM``, ``bricksNormal``,
    ``brick_normals``, ``rock_ddn``, ``rock_normal_dx``, ``wall_local`` are normal maps;
    ``rock_rough``, ``rock_ORM``, ``crate_mask2`` data. A single word ("n.png") is a name, not a
    suffix; "map" after a kind word ("rock_normal_map") belongs to it.
    """
    tokens = name_tokens(name)
    if tokens[-2:] in (["open", "gl"], ["direct", "x"]):  # "OpenGL" split as camelCase
        tokens = [*tokens[:-2], "opengl"]
    if len(tokens) >= 3 and tokens[-1] in CONVENTION_TAGS:
        tokens = tokens[:-1]
    if len(tokens) >= 3 and tokens[-1] == "map" and tokens[-2] in KIND_WORDS:
        tokens = tokens[:-1]
    if len(tokens) < 2:
        return None
    if tokens[-1] in NORMAL_SUFFIXES:
        return "normal"
    if tokens[-1] in DATA_SUFFIXES:
        return "data"
    return None


@dataclass(frozen=True)
class MapInfo:
    """How one texture is treated. ``coverage``: the input's alpha-test coverage (cutouts);
    ``constant_alpha``: the one value of an alpha channel that holds nothing else. A two-channel
    normal map keeps blue at 0 (Z implicit)."""

    kind: str = "color"
    alpha: str = "absent"  # cutout | blended | data | absent (see ``alpha``)
    two_channel: bool = False
    coverage: float | None = None
    soft: float | None = None  # cutouts: the input's share of soft-edge texels (kept at most)
    constant_alpha: int | None = None
    wrap: tuple[bool, bool] = (False, False)
    notes: tuple[str, ...] = ()
    premultiplied: bool = False  # colour stored multiplied by alpha: kept so, never bled
    gray_rgb: bool = False  # gray stored as RGB(A): one channel through the model, copied back
    # A DDS cube map or array: one plan per face or slice (file order), which is how each is
    # upscaled and mipped; ``cube``: faces are padded with their neighbours' edges.
    layers: tuple[MapInfo, ...] = ()
    cube: bool = False
    # Decoded from BC1-BC3 blocks (``upscaler.texture.blocks``): upscaled with the model's
    # weights for block-compressed textures when it has them (``Upscaler.for_blocks``).
    block_compressed: bool = False


def detect(
    name: str | PurePath, pixels: np.ndarray, bits: int, requested: str = "auto"
) -> tuple[str, bool, list[str]]:
    """(kind, two_channel, notes) for ``(H, W, C)`` integer pixels named ``name``."""
    if requested not in MAP_CHOICES:
        raise ValueError(f"map must be one of {MAP_CHOICES}, got {requested!r}")
    forced = requested != "auto"
    kind = requested if forced else kind_from_name(name) or "color"
    if kind != "normal":
        return kind, False, []
    how = "set as" if forced else "named as"
    if pixels.shape[2] < 3:
        return "color", False, [f"{how} a normal map, but has no RGB channels: treated as colour"]
    check = normals.check_pixels(pixels[:, :, :3], bits)
    if check.unit:
        return "normal", check.two_channel, []
    detail = f"pixels are not unit vectors ({check.describe()})"
    if forced:
        return "normal", False, [f"set as a normal map, but {detail}; renormalised anyway"]
    return "color", False, [f"named as a normal map, but {detail}: treated as colour"]


def is_gray_rgb(pixels: np.ndarray, bits: int) -> bool:
    """Whether ``(H, W, C)`` RGB(A) pixels hold gray: the three colour channels within one 8-bit
    level of each other everywhere (exact gray, or gray that went through a codec). A strided
    sample is looked at first, so a colour texture costs next to nothing."""
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return False
    tolerance = 1 if bits == 8 else 257

    def spread(rgb: np.ndarray) -> int:
        rgb = rgb.astype(np.int32)
        return int(
            max(np.abs(rgb[..., 0] - rgb[..., 1]).max(), np.abs(rgb[..., 1] - rgb[..., 2]).max())
        )

    if spread(pixels[::7, ::7, :3]) > tolerance:
        return False
    return all(spread(pixels[y : y + 256, :, :3]) <= tolerance for y in range(0, len(pixels), 256))


def gray_of(pixels: np.ndarray) -> np.ndarray:
    """Gray-as-RGB(A) ``(H, W, 3|4)`` to ``(H, W, 1|2)``: the mean of the colour channels (the
    channel itself for exact gray), alpha kept."""
    rgb = pixels[:, :, :3].astype(np.uint32)
    gray = ((rgb.sum(axis=2) + 1) // 3).astype(pixels.dtype)[:, :, None]
    return np.concatenate([gray, pixels[:, :, 3:]], axis=2) if pixels.shape[2] > 3 else gray


def colour_channels(kind: str, channels: int) -> list[int]:
    """The channels that carry the map's kind (the rest is alpha)."""
    if kind == "normal":
        return [0, 1, 2]
    return [0, 1, 2] if channels >= 3 else [0]


def to_filter_space(x: torch.Tensor, info: MapInfo) -> torch.Tensor:
    """Encoded ``(B, C, H, W)`` in ``[0, 1]`` to the space it is filtered in (a new tensor):
    linear light (colour), vectors (normals, Z rebuilt for two-channel maps), as-is (data)."""
    x = x.float().clone()
    idx = colour_channels(info.kind, x.shape[1])
    if info.kind == "color":
        x[:, idx] = srgb_to_linear(x[:, idx])
    elif info.kind == "normal":
        v = normals.decode(x[:, idx])
        x[:, idx] = normals.rebuild_z(v) if info.two_channel else v
    return x


def from_filter_space(x: torch.Tensor, info: MapInfo) -> torch.Tensor:
    """Back to encoded floats in ``[0, 1]`` (normals renormalised); alpha untouched."""
    x = x.clone()
    idx = colour_channels(info.kind, x.shape[1])
    if info.kind == "color":
        x[:, idx] = linear_to_srgb(x[:, idx])
    elif info.kind == "normal":
        v = _unit(x[:, idx], info)
        x[:, idx] = normals.encode(v)
        if info.two_channel:
            x[:, 2] = 0
    return x.clamp_(0, 1)


def quantize_filtered(x: torch.Tensor, info: MapInfo, bits: int) -> torch.Tensor:
    """Filter-space ``(B, C, H, W)`` to integers: colour to sRGB, normals renormalised and
    stored with best-fit codes, data as is. All channels, alpha quantised plainly."""
    if info.kind != "normal":
        return quantize(from_filter_space(x, info), bits)
    out = quantize(x, bits)
    codes = normals.quantize(_unit(x[:, :3], info), bits)
    out[:, :3] = codes.to(out.dtype)
    if info.two_channel:
        out[:, 2] = 0
    return out


def quantize_encoded(x: torch.Tensor, info: MapInfo, bits: int) -> torch.Tensor:
    """Encoded floats ``(B, C, H, W)`` (a model's output) to integers for the kind."""
    if info.kind != "normal":
        return quantize(x, bits)
    return quantize_filtered(to_filter_space(x, model_space(info)), info, bits)


def model_space(info: MapInfo) -> MapInfo:
    """How the model's input and output hold the map: a two-channel normal map goes through the
    model with Z rebuilt in blue, and the Z the model predicts is kept (then renormalised)."""
    if not info.two_channel:
        return info
    return MapInfo(kind=info.kind, two_channel=False)


def _unit(v: torch.Tensor, info: MapInfo) -> torch.Tensor:
    if info.two_channel:  # Z of an RG map is implicitly on the positive side
        v = torch.cat((v[:, :2], v[:, 2:3].clamp(min=0)), dim=1)
    return normals.normalize(v)
