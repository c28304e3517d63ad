"""The pictures of one texture on the review page: thumbnails, same-size views, a 100% crop of the
most detailed region, a 2x2 tiling, the shaded view of a normal map and the alpha channel.

Textures are read with the project's own reader (``read_image``: DDS, 16-bit and the rest); the
pictures are small browser images written with Pillow, not textures, so they do not go through the
texture writer. Views are lossy JPEG (downscaled anyway); anything shown at 100% (crops, the tile
junction) and alpha masks are lossless PNG, so compression never invents or hides an artefact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from upscaler.formats.image import ImageReadError, read_image

VIEW = 384  # longest side of the same-size views and the slider
THUMB = 96  # longest side of the list's thumbnails
CROP = 192  # side of the 100% crops
CHECKER = 8  # checkerboard cell (view pixels) behind transparent texels
LIGHT = np.array([-0.5, 0.5, 0.7071]) / np.linalg.norm([-0.5, 0.5, 0.7071])  # from the top left
SHOWN_ALPHA = ("cutout", "blended")  # alpha the game blends or tests: shown composited


@dataclass
class Pictures:
    """What was made for one texture: picture kind -> file name, and what could not be shown."""

    files: dict[str, str] = field(default_factory=dict)
    crop: list[int] = field(default_factory=list)  # [x, y, width, height] in output pixels
    view: list[int] = field(default_factory=list)  # [width, height] of the views
    thumb: list[int] = field(default_factory=list)  # [width, height] of the thumbnails
    problems: list[str] = field(default_factory=list)


def _to8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return pixels.astype(np.uint8, copy=False)


def _split(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) colour and (H, W) alpha or None, 8-bit."""
    p = _to8(pixels)
    c = p.shape[2]
    colour = np.repeat(p[:, :, :1], 3, axis=2) if c < 3 else p[:, :, :3]
    alpha = p[:, :, c - 1] if c in (2, 4) else None
    return np.ascontiguousarray(colour), alpha


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """To ``size`` (width, height): nearest when enlarging (texels stay visible as blocks),
    Lanczos when reducing."""
    if image.size == size:
        return image
    if size[0] >= image.size[0] and size[1] >= image.size[1]:
        return image.resize(size, Image.Resampling.NEAREST)
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def fit(height: int, width: int, box: int) -> tuple[int, int]:
    """(width, height) of an image of ``height`` x ``width`` reduced to fit ``box``, never
    enlarged."""
    f = min(1.0, box / max(height, width, 1))
    return max(1, round(width * f)), max(1, round(height * f))


def _checker(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    yy, xx = np.indices((h, w))
    cells = ((yy // CHECKER + xx // CHECKER) % 2).astype(np.float32)
    return (100 + 55 * cells)[:, :, None]


def _composite(colour: Image.Image, alpha: Image.Image) -> Image.Image:
    """Colour over a checkerboard through alpha: what the game shows, fringes included."""
    a = np.asarray(alpha, dtype=np.float32)[:, :, None] / 255
    rgb = np.asarray(colour, dtype=np.float32)
    out = rgb * a + _checker(colour.size) * (1 - a)
    return Image.fromarray(out.round().astype(np.uint8), "RGB")


def shade(colour: np.ndarray) -> np.ndarray:
    """A normal map's encoded RGB ``(H, W, 3)`` uint8 lit from the top left, as gray uint8.

    Vectors are decoded as ``2c - 1``; maps with an empty blue channel (two-channel RG/BC5) get
    Z rebuilt. Green is used as stored, so DirectX and OpenGL maps are lit from opposite sides
    vertically: compare input with output, not with other maps.
    """
    v = colour.astype(np.float32) / 127.5 - 1
    if colour[:, :, 2].max(initial=0) <= 1:
        v[:, :, 2] = np.sqrt(np.clip(1 - v[:, :, 0] ** 2 - v[:, :, 1] ** 2, 0, None))
    v /= np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-6)
    lit = 0.12 + 0.88 * np.clip(v @ LIGHT.astype(np.float32), 0, 1)
    return (lit * 255).round().astype(np.uint8)


def detail_region(
    colour: Image.Image, alpha: Image.Image | None, full: tuple[int, int], size: tuple[int, int]
) -> list[int]:
    """[x, y, w, h] in an image of ``full`` (height, width): the ``size`` (w, h) window with the
    most gradient energy, searched on ``colour`` (a reduced copy, RGB; with ``alpha`` its
    transparent texels count as black)."""
    h, w = full
    cw, ch = min(size[0], w), min(size[1], h)
    r = colour.size[0] / w
    y = np.asarray(colour.convert("L"), dtype=np.float32)
    if alpha is not None:
        y *= np.asarray(alpha, np.float32) / 255
    energy = np.zeros_like(y)
    energy[:, 1:] += np.abs(np.diff(y, axis=1))
    energy[1:, :] += np.abs(np.diff(y, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ww = min(max(1, round(cw * r)), y.shape[1])
    wh = min(max(1, round(ch * r)), y.shape[0])
    sums = integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]
    sy, sx = np.unravel_index(int(np.argmax(sums)), sums.shape)
    x0 = min(max(0, round(sx / r)), w - cw)
    y0 = min(max(0, round(sy / r)), h - ch)
    return [int(x0), int(y0), int(cw), int(ch)]


class _Writer:
    """Saves pictures as ``<prefix>-<kind>.<ext>`` in ``folder`` and records them."""

    def __init__(self, folder: Path, prefix: str, pictures: Pictures) -> None:
        self.folder, self.prefix, self.pictures = folder, prefix, pictures

    def save(self, kind: str, image: Image.Image, lossless: bool = False) -> None:
        name = f"{self.prefix}-{kind}.{'png' if lossless else 'jpg'}"
        if lossless:
            image.save(self.folder / name, "PNG", compress_level=6)
        else:
            image.save(self.folder / name, "JPEG", quality=90, subsampling=0)
        self.pictures.files[kind] = name


def _read(path: str, what: str, pictures: Pictures) -> np.ndarray | None:
    if not path:
        return None
    try:
        return read_image(path).pixels
    except ImageReadError as exc:
        pictures.problems.append(f"{what} cannot be shown: {exc.reason}")
    except FileNotFoundError:
        pictures.problems.append(f"{what} not found: {path}")
    except (OSError, MemoryError, ValueError) as exc:
        pictures.problems.append(f"{what} cannot be shown: {type(exc).__name__}: {exc}"[:300])
    return None


def make_pictures(
    source: str,
    target: str,
    folder: Path,
    prefix: str,
    *,
    map_kind: str = "",
    alpha_mode: str = "",
    wrap: tuple[bool, bool] = (False, False),
) -> Pictures:
    """Write every picture of one texture into ``folder``. ``target`` is "" when there is no
    output (a failed file); a file that cannot be read is a problem listed, not an error."""
    pictures = Pictures()
    out = _Writer(folder, prefix, pictures)
    before = _read(source, "input", pictures)
    after = _read(target, "output", pictures)
    if before is None and after is None:
        return pictures
    ref = after if after is not None else before
    assert ref is not None
    view = fit(ref.shape[0], ref.shape[1], VIEW)
    thumb = fit(ref.shape[0], ref.shape[1], THUMB)
    pictures.view, pictures.thumb = list(view), list(thumb)
    composite = alpha_mode in SHOWN_ALPHA
    views: dict[str, tuple[Image.Image, Image.Image | None]] = {}
    for side, pixels in (("in", before), ("out", after)):
        if pixels is None:
            continue
        colour, alpha = _split(pixels)
        rgb = _resize(Image.fromarray(colour, "RGB"), view)
        mask = _resize(Image.fromarray(alpha, "L"), view) if alpha is not None else None
        views[side] = rgb, mask
        shown = _composite(rgb, mask) if composite and mask is not None else rgb
        out.save(f"view-{side}", shown)
        out.save(f"thumb-{side}", _resize(shown, thumb))
        if map_kind == "normal":
            out.save(f"shaded-{side}", Image.fromarray(shade(np.asarray(rgb)), "L"))
        if mask is not None and alpha_mode != "absent":
            out.save(f"alpha-{side}", mask, lossless=True)
    if after is not None:
        _crops(out, before, after, views["out"], composite)
        if any(wrap):
            _tiling(out, after, views["out"], composite)
    return pictures


def _crops(
    out: _Writer,
    before: np.ndarray | None,
    after: np.ndarray,
    view: tuple[Image.Image, Image.Image | None],
    composite: bool,
) -> None:
    colour, alpha = _split(after)
    x, y, w, h = detail_region(*view, colour.shape[:2], (CROP, CROP))
    out.pictures.crop = [x, y, w, h]
    crop = Image.fromarray(np.ascontiguousarray(colour[y : y + h, x : x + w]), "RGB")
    if composite and alpha is not None:
        crop = _composite(crop, Image.fromarray(np.ascontiguousarray(alpha[y : y + h, x : x + w])))
    out.save("crop-out", crop, lossless=True)
    if before is None:
        return
    bc, ba = _split(before)
    sy, sx = before.shape[0] / after.shape[0], before.shape[1] / after.shape[1]
    box = (x * sx, y * sy, (x + w) * sx, (y + h) * sy)
    source = Image.fromarray(bc, "RGB").resize((w, h), Image.Resampling.NEAREST, box=box)
    if composite and ba is not None:
        mask = Image.fromarray(ba, "L").resize((w, h), Image.Resampling.NEAREST, box=box)
        source = _composite(source, mask)
    out.save("crop-in", source, lossless=True)


def _tiling(
    out: _Writer,
    after: np.ndarray,
    view: tuple[Image.Image, Image.Image | None],
    composite: bool,
) -> None:
    """The output 2x2 at view size (from its view), and where four copies meet at 100%."""
    rgb, mask = view
    half = (max(1, rgb.size[0] // 2), max(1, rgb.size[1] // 2))
    tile = rgb.resize(half, Image.Resampling.BOX)
    if composite and mask is not None:
        tile = _composite(tile, mask.resize(half, Image.Resampling.BOX))
    tiled = Image.new("RGB", (half[0] * 2, half[1] * 2))
    for dx in (0, half[0]):
        for dy in (0, half[1]):
            tiled.paste(tile, (dx, dy))
    out.save("tiled", tiled)
    colour, alpha = _split(after)
    h, w = colour.shape[:2]
    ch, cw = min(CROP, h) // 2, min(CROP, w) // 2
    rows = np.r_[h - ch : h, 0:ch]
    cols = np.r_[w - cw : w, 0:cw]
    image = Image.fromarray(np.ascontiguousarray(colour[rows][:, cols]), "RGB")
    if composite and alpha is not None:
        image = _composite(image, Image.fromarray(np.ascontiguousarray(alpha[rows][:, cols])))
    out.save("junction", image, lossless=True)
