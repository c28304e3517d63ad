"""The pictures of one texture on the review page: thumbnails, same-size views, a 100% crop of the
most detailed region, a 2x2 tiling, the shaded view of a normal map and the alpha channel.

Textures are read with the project's own reader (``read_image``: DDS, 16-bit and the rest); the
pictures are small browser images written with Pillow, not textures, so they do not go through the
texture writer. Memory: the decoded texture is the only full-size array; views are reduced from it
in bands of rows and crops are cut before any conversion, so a 16384 x 16384 output costs its
decoded size plus small bands. With a ``memory`` budget, a texture whose decoding alone would pass
it is listed as a problem instead of read.

Views are lossy JPEG (downscaled anyway); anything shown at 100% (crops, the tile
junction) and alpha masks are lossless PNG, so compression never invents or hides an artefact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from upscaler.formats.image import ImageReadError, probe, read_image

VIEW = 384  # longest side of the same-size views and the slider
THUMB = 96  # longest side of the list's thumbnails
CROP = 192  # side of the 100% crops
CHECKER = 8  # checkerboard cell (view pixels) behind transparent texels
LIGHT = np.array([-0.5, 0.5, 0.7071]) / np.linalg.norm([-0.5, 0.5, 0.7071])  # from the top left
SHOWN_ALPHA = ("cutout", "blended")  # alpha the game blends or tests: shown composited
BAND_BYTES = 8 << 20  # source bytes converted and reduced at once for the views
REDUCING_GAP = 3.0  # as Pillow's ``resize(reducing_gap=3.0)``: box-reduce first, then Lanczos
DECODE_BYTES_PER_TEXEL = 8  # what decoding costs per texel at most (RGBA; Pillow's copy and ours)


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
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _reduced(pixels: np.ndarray, size: tuple[int, int]) -> tuple[Image.Image, Image.Image | None]:
    """Colour (RGB) and alpha (L, or None) of ``(H, W, C)`` ``pixels`` at ``size`` (w, h), as
    ``_resize`` makes them, without a full-size copy: rows are box-reduced by Pillow's own
    reducing factor a band at a time (bands a multiple of the factor, so the boxes are the
    same), then the small result is Lanczos-resized over the exact box the reduction covers."""
    h, w, c = pixels.shape
    fx = int(w / size[0] / REDUCING_GAP) or 1
    fy = int(h / size[1] / REDUCING_GAP) or 1
    if fx == 1 and fy == 1:
        colour, alpha = _split(pixels)
        mask = _resize(Image.fromarray(alpha, "L"), size) if alpha is not None else None
        return _resize(Image.fromarray(colour, "RGB"), size), mask
    rows = max(fy, BAND_BYTES // max(1, w * c * pixels.itemsize) // fy * fy)
    colours, alphas = [], []
    for top in range(0, h, rows):
        colour, alpha = _split(pixels[top : top + rows])
        colours.append(np.asarray(Image.fromarray(colour, "RGB").reduce((fx, fy))))
        if alpha is not None:
            alphas.append(np.asarray(Image.fromarray(alpha, "L").reduce((fx, fy))))
    box = (0.0, 0.0, w / fx, h / fy)
    lanczos = Image.Resampling.LANCZOS
    rgb = Image.fromarray(np.concatenate(colours), "RGB").resize(size, lanczos, box=box)
    if not alphas:
        return rgb, None
    return rgb, Image.fromarray(np.concatenate(alphas), "L").resize(size, lanczos, box=box)


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


def _read(path: str, what: str, pictures: Pictures, memory: int | None) -> np.ndarray | None:
    if not path:
        return None
    try:
        if memory is not None:
            h, w = probe(Path(path))
            need = h * w * DECODE_BYTES_PER_TEXEL
            if need > memory:
                pictures.problems.append(
                    f"{what} not shown: decoding its {w}x{h} texels needs about "
                    f"{need / 2**20:,.1f} MiB, over the {memory / 2**20:,.1f} MiB memory budget"
                )
                return None
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
    memory: int | None = None,
) -> Pictures:
    """Write every picture of one texture into ``folder``. ``target`` is "" when there is no
    output (a failed file); a file that cannot be read is a problem listed, not an error.
    ``memory``: bytes this texture's pictures may use (None: no limit). The output's pictures
    are made and the output freed before the input is read, so the two never add up."""
    pictures = Pictures()
    out = _Writer(folder, prefix, pictures)
    composite = alpha_mode in SHOWN_ALPHA
    sides = _Sides(out, map_kind, alpha_mode, composite)
    after = _read(target, "output", pictures, memory)
    shape, region = None, None
    if after is not None:
        view = sides.show("out", after)
        region = _crop_out(out, after, view, composite)
        if any(wrap):
            _tiling(out, after, view, composite)
        shape = after.shape[:2]
        del after  # before the input is decoded
    before = _read(source, "input", pictures, memory)
    if before is not None:
        sides.show("in", before)
        if shape is not None and region is not None:
            _crop_in(out, before, shape, region, composite)
    pictures.problems.sort(key=lambda problem: not problem.startswith("input"))
    return pictures


@dataclass
class _Sides:
    """The pictures of one side (input or output) at the page's view and thumbnail sizes, which
    the first side shown (the output when there is one) sets."""

    out: _Writer
    map_kind: str
    alpha_mode: str
    composite: bool

    def show(self, side: str, pixels: np.ndarray) -> tuple[Image.Image, Image.Image | None]:
        pictures = self.out.pictures
        if not pictures.view:
            pictures.view = list(fit(pixels.shape[0], pixels.shape[1], VIEW))
            pictures.thumb = list(fit(pixels.shape[0], pixels.shape[1], THUMB))
        view = (pictures.view[0], pictures.view[1])
        thumb = (pictures.thumb[0], pictures.thumb[1])
        rgb, mask = _reduced(pixels, view)
        shown = _composite(rgb, mask) if self.composite and mask is not None else rgb
        self.out.save(f"view-{side}", shown)
        self.out.save(f"thumb-{side}", _resize(shown, thumb))
        if self.map_kind == "normal":
            self.out.save(f"shaded-{side}", Image.fromarray(shade(np.asarray(rgb)), "L"))
        if mask is not None and self.alpha_mode != "absent":
            self.out.save(f"alpha-{side}", mask, lossless=True)
        return rgb, mask


def _crop_out(
    out: _Writer,
    after: np.ndarray,
    view: tuple[Image.Image, Image.Image | None],
    composite: bool,
) -> list[int]:
    """The output's most detailed region at 100%; returns it as [x, y, w, h]."""
    x, y, w, h = detail_region(*view, after.shape[:2], (CROP, CROP))
    out.pictures.crop = [x, y, w, h]
    colour, alpha = _split(after[y : y + h, x : x + w])  # cut first: no full-size copy
    crop = Image.fromarray(colour, "RGB")
    if composite and alpha is not None:
        crop = _composite(crop, Image.fromarray(np.ascontiguousarray(alpha)))
    out.save("crop-out", crop, lossless=True)
    return [x, y, w, h]


def _crop_in(
    out: _Writer,
    before: np.ndarray,
    shape: tuple[int, int],
    region: list[int],
    composite: bool,
) -> None:
    """The input under the output's crop ``region`` (output pixels of an output of ``shape``),
    enlarged to it with nearest neighbours."""
    x, y, w, h = region
    sy, sx = before.shape[0] / shape[0], before.shape[1] / shape[1]
    x0, y0 = int(x * sx), int(y * sy)
    x1 = min(before.shape[1], max(x0 + 1, math.ceil((x + w) * sx)))
    y1 = min(before.shape[0], max(y0 + 1, math.ceil((y + h) * sy)))
    bc, ba = _split(before[y0:y1, x0:x1])
    box = (x * sx - x0, y * sy - y0, (x + w) * sx - x0, (y + h) * sy - y0)
    source = Image.fromarray(bc, "RGB").resize((w, h), Image.Resampling.NEAREST, box=box)
    if composite and ba is not None:
        mask = Image.fromarray(np.ascontiguousarray(ba), "L")
        source = _composite(source, mask.resize((w, h), Image.Resampling.NEAREST, box=box))
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
    h, w = after.shape[:2]
    ch, cw = min(CROP, h) // 2, min(CROP, w) // 2
    rows = np.r_[h - ch : h, 0:ch]
    cols = np.r_[w - cw : w, 0:cw]
    colour, alpha = _split(after[rows][:, cols])  # the corners only: no full-size copy
    image = Image.fromarray(colour, "RGB")
    if composite and alpha is not None:
        image = _composite(image, Image.fromarray(np.ascontiguousarray(alpha)))
    out.save("junction", image, lossless=True)
