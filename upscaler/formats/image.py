"""Image files <-> pixel arrays. With ``dds`` and ``bcn``, which it calls for DDS files, the only
code that touches Pillow or image files.

Reading checks the file against an explicit list of formats (by extension *and* content, so TIFF or
EPS bytes named ``.png`` are refused) and an explicit pixel limit sized for textures, before any
pixel is decoded. Pixels come back as ``(H, W, C)`` uint8 or uint16 arrays with C = 1..4 (gray,
gray + alpha, RGB, RGBA); what is needed to write the file back the same way (format, bit depth,
ICC profile, TGA layout, JPEG sampling, palette) travels in ``ImageFile``. Writes are atomic.
"""

from __future__ import annotations

import io as _io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL import ImageFile as PILImageFile

from upscaler.atomic import atomic_write
from upscaler.formats import dds
from upscaler.formats.bits import to_8bit

if TYPE_CHECKING:
    from upscaler.formats.dds import DdsInfo

MAX_PIXELS = 16384 * 16384
MAX_SIDE = 65536
from upscaler.options import FORMATS  # noqa: E402  (one table for every layer)

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# Pillow refuses images above its bomb limit before we can apply ours; ours is the one that counts.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
PILImageFile.LOAD_TRUNCATED_IMAGES = False
_MAGIC = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"DDS ", "DDS"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"GIF8", "GIF"),
    (b"RIFF", "WEBP"),
    (b"8BPS", "PSD"),
    (b"SIMPLE", "FITS"),
    (b"PK", "ZIP"),
)


class ImageReadError(Exception):
    """The file is not an image we can read; ``reason`` is one line."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


class ImageWriteError(Exception):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass
class ImageFile:
    """Decoded pixels ``(H, W, C)`` uint8/uint16 and how the file stored them."""

    pixels: np.ndarray
    format: str
    bits: int = 8
    icc_profile: bytes | None = None
    source_mode: str = ""  # Pillow's mode before conversion ("P", "I;16", "1", ...)
    palette: np.ndarray | None = None  # (N, 3|4) uint8 for palette sources
    save_options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. "dds": DdsInfo, "pixel_format"
    # What the texture stage asks of the encoder (the encoder only packs): a palette image where
    # the format holds one (the pixels were snapped to ``palette``), and how to write a DDS.
    write_palette: bool = False
    dds_write: dds.DdsWrite = field(default_factory=dds.DdsWrite)

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def mode(self) -> str:
        return MODES[self.channels]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    def with_pixels(self, pixels: np.ndarray) -> ImageFile:
        bits = 16 if pixels.dtype == np.uint16 else 8
        return replace(self, pixels=pixels, bits=bits)


def sniff(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            if name == "WEBP" and head[8:12] != b"WEBP":
                return "RIFF"
            return name
    return None


def expected_format(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def _png_header(head: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None."""
    if len(head) >= 26 and head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return head[24], head[25]
    return None


def _check(path: Path) -> tuple[str, bytes]:
    """The format by extension, confirmed by content; the file's first bytes."""
    fmt = expected_format(path)
    if fmt is None:
        raise ImageReadError(path, f"unsupported file type {path.suffix!r}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise ImageReadError(path, "empty file (0 bytes)")
    actual = sniff(head)
    if actual is not None and actual != fmt:
        raise ImageReadError(path, f"content is {actual}, not {fmt} as the name says; not read")
    return fmt, head


def _check_size(path: Path, width: int, height: int) -> None:
    if (
        width < 1
        or height < 1
        or width > MAX_SIDE
        or height > MAX_SIDE
        or width * height > MAX_PIXELS
    ):
        raise ImageReadError(path, f"{width}x{height} exceeds the {MAX_PIXELS:,}-pixel limit")


def _dds_info(path: Path) -> DdsInfo:
    try:
        info = dds.read_info(path)
        _check_size(path, info.width, info.height)
        dds.check_length(path, info)
    except dds.DdsError as exc:
        raise ImageReadError(path, exc.reason) from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    return info


def _open(path: Path, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(path, f"declares more than {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, f"not a valid {fmt} file") from None
    except (OSError, ValueError, SyntaxError, NotImplementedError, EOFError) as exc:
        raise ImageReadError(path, _describe(exc, fmt)) from None
    try:
        _check_size(path, *im.size)
    except ImageReadError:
        im.close()
        raise
    return im


def _describe(exc: BaseException, fmt: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated {fmt} file ({text})"
    return f"corrupt {fmt} file ({text[:160]})"


def probe(path: Path) -> tuple[int, int]:
    """(height, width) from the header, with all the checks of ``read_image``."""
    path = Path(path)
    fmt, _ = _check(path)
    if fmt == "DDS":
        info = _dds_info(path)
        return info.height, info.width
    with _open(path, fmt) as im:
        return im.size[1], im.size[0]


def read_image(path: str | Path) -> ImageFile:
    """Decode ``path`` fully. Raises ``ImageReadError`` with a one-line reason for any bad file."""
    path = Path(path)
    fmt, head = _check(path)
    if fmt == "DDS":
        return _read_dds(path)
    with _open(path, fmt) as im:
        try:
            image = _decode(path, im, fmt, head)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError(path, "not enough memory to decode") from None
        except (OSError, ValueError, SyntaxError, NotImplementedError, EOFError, TypeError) as exc:
            raise ImageReadError(path, _describe(exc, fmt)) from None
        except RuntimeError as exc:  # imagecodecs' PngError and kin, for damaged 16-bit PNGs
            raise ImageReadError(path, _describe(exc, fmt)) from None
    return image


def _read_dds(path: Path) -> ImageFile:
    info = _dds_info(path)
    try:
        pixels = dds.read_pixels(path, info)
    except dds.DdsError as exc:
        raise ImageReadError(path, exc.reason) from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode") from None
    except (OSError, ValueError, RuntimeError) as exc:  # imagecodecs raises its own errors
        raise ImageReadError(path, _describe(exc, "DDS")) from None
    bits = 16 if pixels.dtype == np.uint16 else 8
    extra = {"dds": info, "pixel_format": dds.describe(info)}
    return ImageFile(pixels, "DDS", bits, source_mode=info.format.name, info=extra)


def _decode(path: Path, im: Image.Image, fmt: str, head: bytes) -> ImageFile:
    icc = im.info.get("icc_profile")
    options: dict[str, Any] = {}
    png = _png_header(head)
    if png is not None and png[0] == 16:
        # Pillow reduces 16-bit colour PNGs to 8 bits; imagecodecs keeps all 16.
        import imagecodecs

        pixels = imagecodecs.png_decode(path.read_bytes())
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        return ImageFile(pixels.astype(np.uint16, copy=False), fmt, 16, icc, f"{png[1]}:16")
    source_mode = im.mode
    palette = None
    if fmt == "TGA":
        options["compression"] = im.info.get("compression")
        options["orientation"] = im.info.get("orientation", 1)
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        options["subsampling"] = JpegImagePlugin.get_sampling(im)
    if fmt == "WEBP":
        options["lossless"] = b"VP8L" in head[12:16]
    im.load()
    if im.mode == "P" or im.mode == "PA":
        has_alpha = im.mode == "PA" or "transparency" in im.info
        raw = im.getpalette("RGBA" if has_alpha else "RGB") or []
        palette = np.asarray(raw, dtype=np.uint8).reshape(-1, 4 if has_alpha else 3)
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.array(im)
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise ImageReadError(path, f"{im.mode} pixels outside the 16-bit range")
        return ImageFile(
            array.astype(np.uint16)[:, :, None], fmt, 16, icc, source_mode, save_options=options
        )
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "RGBa":
        im = im.convert("RGBA")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(path, f"unsupported pixel mode {im.mode}")
    array = np.array(im)  # a writable copy, owned by us
    if array.ndim == 2:
        array = array[:, :, None]
    return ImageFile(np.ascontiguousarray(array), fmt, 8, icc, source_mode, palette, options)


def encode_image(image: ImageFile, fmt: str | None = None, *, png_level: int = 3) -> bytes:
    """Encode to bytes in ``fmt`` (default: the image's own format)."""
    return _encode(image, fmt or image.format, png_level)[0]


def _encode(image: ImageFile, fmt: str, png_level: int) -> tuple[bytes, list[str]]:
    """The encoded file and notes about anything not kept as it was."""
    if fmt == "DDS":
        return dds.encode(image.pixels, image.bits, image.info.get("dds"), image.dds_write)
    pixels = image.pixels
    if fmt == "PNG" and image.bits == 16:
        import imagecodecs

        data = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
        return bytes(imagecodecs.png_encode(np.ascontiguousarray(data), level=png_level)), []
    if image.bits == 16:  # only PNG keeps 16 bits; other formats get the nearest 8-bit value
        pixels = to_8bit(pixels)
    mode = MODES[pixels.shape[2]]
    im = _paletted(image, pixels, fmt) or Image.fromarray(
        np.ascontiguousarray(pixels[:, :, 0] if mode == "L" else pixels), mode=mode
    )
    params: dict[str, Any] = {}
    if image.icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TGA"):
        params["icc_profile"] = image.icc_profile
    if fmt == "PNG":
        params["compress_level"] = png_level
        if im.mode == "P" and "transparency" in im.info:
            params["transparency"] = im.info["transparency"]
    elif fmt == "JPEG":
        if im.mode in ("LA", "RGBA"):
            im = im.convert("L" if im.mode == "LA" else "RGB")
        params.update(quality=95, subsampling=image.save_options.get("subsampling", 0))
        if params["subsampling"] == -1:
            params["subsampling"] = 0
    elif fmt == "TGA":
        if image.save_options.get("compression"):
            params["compression"] = image.save_options["compression"]
        params["orientation"] = image.save_options.get("orientation", 1)
    elif fmt == "WEBP":
        params.update(lossless=bool(image.save_options.get("lossless")), quality=95)
    buffer = _io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue(), []


def _paletted(image: ImageFile, pixels: np.ndarray, fmt: str) -> Image.Image | None:
    """A palette ("P") image when the pixels were snapped to the source palette (``--palette
    keep``) and ``fmt`` can hold that palette; None otherwise."""
    palette = image.palette
    if not image.write_palette or palette is None or pixels.dtype != np.uint8:
        return None
    alpha = palette.shape[1] == 4
    if fmt not in ("PNG", "TGA", "BMP") or (alpha and fmt != "PNG"):
        return None
    if pixels.shape[2] != palette.shape[1]:
        return None
    keys = _colour_keys(palette)
    order = np.argsort(keys, kind="stable")
    wanted = _colour_keys(pixels.reshape(-1, pixels.shape[2]))
    slot = np.clip(np.searchsorted(keys[order], wanted), 0, len(keys) - 1)
    if not np.array_equal(keys[order][slot], wanted):
        return None  # not every colour is in the palette: keep the direct colours
    indices = order[slot].astype(np.uint8).reshape(pixels.shape[:2])
    im = Image.fromarray(indices, "P")
    im.putpalette(palette[:, :3].tobytes(), "RGB")
    if alpha:
        im.info["transparency"] = palette[:, 3].tobytes()
    return im


def _colour_keys(colours: np.ndarray) -> np.ndarray:
    keys = np.zeros(colours.shape[0], dtype=np.uint32)
    for channel in range(colours.shape[1]):
        keys |= colours[:, channel].astype(np.uint32) << (8 * channel)
    return keys


def write_image(
    path: str | Path, image: ImageFile, fmt: str | None = None, *, png_level: int = 3
) -> list[str]:
    """Encode and write atomically (temporary file beside ``path``, then rename). Returns notes
    about anything not kept as it was (e.g. a DDS format written as the closest one we can)."""
    path = Path(path)
    fmt = fmt or expected_format(path) or image.format
    try:
        data, notes = _encode(image, fmt, png_level)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageWriteError(path, f"cannot encode as {fmt}: {exc}") from None
    with atomic_write(path) as handle:
        handle.write(data)
    return notes


def verify_image(path: Path, size: tuple[int, int]) -> bool:
    """Whether ``path`` is a complete, decodable image of (height, width) ``size``."""
    try:
        image = read_image(path)
    except ImageReadError:
        return False
    return image.size == size
