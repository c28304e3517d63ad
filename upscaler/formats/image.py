"""Image files <-> pixel arrays. With ``dds`` and ``bcn``, which it calls for DDS files, the only
code that touches Pillow or image files.

Reading checks the file against an explicit list of formats (by extension *and* content, so TIFF or
EPS bytes named ``.png`` are refused) and an explicit pixel limit sized for textures, before any
pixel is decoded. Pixels come back as ``(H, W, C)`` uint8 or uint16 arrays with C = 1..4 (gray,
gray + alpha, RGB, RGBA); what is needed to write the file back the same way (format, bit depth,
ICC profile, TGA layout, JPEG sampling, palette, PNG colour key) travels in ``ImageFile``.

Only regular files are opened, and without blocking: a FIFO, socket or device named like an image
is refused before a byte is read (a FIFO would block the reader until some writer appears). EXIF
orientation (JPEG, PNG eXIf, WebP) is applied to the pixels and the tag is not written back, as
most tools do, so every viewer shows the output as the source looked. Writes are atomic.
"""

from __future__ import annotations

import io as _io
import logging
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL import ImageFile as PILImageFile

from upscaler import atomic
from upscaler.atomic import NotRegularFileError, atomic_write
from upscaler.formats import dds, tga
from upscaler.formats.bits import to_8bit
from upscaler.formats.containers import (
    apply_colour_key,
    bmp_with_alpha,
    exif_orientation,
    matching_icc,
    oriented,
    turns_sideways,
    unknown_critical_png_chunk,
    webp_lossless,
    with_png_chunks,
)

if TYPE_CHECKING:
    from upscaler.formats.dds import DdsInfo

MAX_PIXELS = 16384 * 16384
MAX_SIDE = 65536
from upscaler.options import FORMATS  # noqa: E402  (one table for every layer)

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# PNG writing without an explicit level (see ``_png``): zlib's Z_RLE strategy and the Paeth row
# filter for 8-bit images; 16-bit ones and paletted ones (Pillow) use zlib level 3.
RLE, PAETH = 3, 128
DEFAULT_PNG_LEVEL = PALETTE_PNG_LEVEL = 3
# Most pixels per side each output format can hold (DDS, PNG and BMP hold far more than we make).
SIDE_LIMITS = {"JPEG": 65_500, "TGA": 65_535, "WEBP": 16_383}
# imagecodecs reports libpng's warnings (damaged ancillary chunks) through logging; with no
# handler of its own, Python's last-resort handler would print them as stray lines on stderr.
logging.getLogger("imagecodecs").addHandler(logging.NullHandler())
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
    premultiplied: bool = False  # colour stored multiplied by alpha (DDS DX10 alpha mode 2)
    notes: tuple[str, ...] = ()  # what decoding changed (e.g. an EXIF orientation applied)
    # A DDS cube map's faces or array's slices (top levels, same shape and dtype as ``pixels``,
    # which is the first), in file order; empty for a 2D texture.
    layers: tuple[np.ndarray, ...] = ()

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
        """This file with other pixels (a 2D texture: the layers, if any, are not carried)."""
        bits = 16 if pixels.dtype == np.uint16 else 8
        return replace(self, pixels=pixels, bits=bits, layers=())

    def with_layers(self, layers: list[np.ndarray]) -> ImageFile:
        """This cube map or array with other layers (the first becomes ``pixels``)."""
        return replace(self.with_pixels(layers[0]), layers=tuple(layers))


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


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading if, and only if, it is a regular file; else ``ImageReadError``.

    The file is opened non-blocking and checked on the open descriptor (``atomic.open_regular``),
    so a FIFO (whose plain open blocks until a writer comes), a socket or a device is never read,
    not even when it replaces a regular file between a folder listing and this call.
    """
    try:
        return atomic.open_regular(path)
    except NotRegularFileError as exc:
        raise ImageReadError(path, f"is {exc.kind}, not an image file; not read") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None


def _check(path: Path, handle: BinaryIO) -> tuple[str, bytes]:
    """The format by extension, confirmed by content; the file's first bytes."""
    fmt = expected_format(path)
    if fmt is None:
        raise ImageReadError(path, f"unsupported file type {path.suffix!r}")
    try:
        head = handle.read(64)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise ImageReadError(path, "empty file (0 bytes)")
    actual = sniff(head)
    if actual is not None and actual != fmt:
        raise ImageReadError(path, f"content is {actual}, not {fmt} as the name says; not read")
    if fmt == "TGA":
        _check_tga_palette(path, head)
    if fmt == "PNG":
        chunk = unknown_critical_png_chunk(handle)
        if chunk is not None:
            reason = f"unknown critical PNG chunk {chunk!r} (the PNG spec says to refuse the file)"
            raise ImageReadError(path, f"{reason}; not read")
    return fmt, head


def _check_tga_palette(path: Path, head: bytes) -> None:
    """A colour-mapped TGA (image type 1 or 9) must carry its colour map: without one, every
    index would decode as black (Pillow makes up an empty palette)."""
    if len(head) < 18 or head[2] not in (1, 9):
        return
    has_map, (length,) = head[1] == 1, struct.unpack_from("<H", head, 5)
    if not has_map or length == 0:
        raise ImageReadError(
            path, f"a colour-mapped TGA (image type {head[2]}) without a colour map; not read"
        )


def _check_size(path: Path, width: int, height: int, layers: int = 1) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(path, f"{width}x{height}: an image needs at least 1 pixel each way")
    if width > MAX_SIDE or height > MAX_SIDE or width * height * layers > MAX_PIXELS:
        size = f"{width}x{height}" + (f" x {layers} layers" if layers > 1 else "")
        raise ImageReadError(path, f"{size} exceeds the {MAX_PIXELS:,}-pixel limit")


def _dds_info(path: Path, handle: BinaryIO) -> DdsInfo:
    try:
        handle.seek(0)
        info = dds.parse_header(handle.read(dds.HEADER_BYTES + dds.DX10_BYTES))
        _check_size(path, info.width, info.height, info.layers)
        dds.check_length(os.fstat(handle.fileno()).st_size, info)
    except dds.DdsError as exc:
        raise ImageReadError(path, exc.reason) from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    return info


def _open(path: Path, handle: BinaryIO, fmt: str) -> Image.Image:
    handle.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(handle, formats=[fmt])
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
    """(height, width) as ``read_image`` returns it, from the header, with all of its checks."""
    path = Path(path)
    with open_regular(path) as handle:
        fmt, _ = _check(path, handle)
        if fmt == "DDS":
            info = _dds_info(path, handle)
            return info.height, info.width
        try:
            im = _open(path, handle, fmt)
        except ImageReadError as refusal:
            im = _open(path, _tga_rewritten(path, handle, fmt, refusal), fmt)
        with im:
            w, h = im.size
            return (w, h) if turns_sideways(exif_orientation(im)) else (h, w)


def read_image(path: str | Path) -> ImageFile:
    """Decode ``path`` fully. Raises ``ImageReadError`` with a one-line reason for any bad file."""
    path = Path(path)
    with open_regular(path) as handle:
        fmt, head = _check(path, handle)
        if fmt == "DDS":
            return _read_dds(path, handle)
        try:
            return _read_pillow(path, handle, fmt, head)
        except ImageReadError as refusal:
            image = _read_pillow(path, _tga_rewritten(path, handle, fmt, refusal), fmt, head)
        if head[2] & tga.RLE:  # written back run-length encoded, as the source was
            image.save_options["compression"] = "tga_rle"
        return image


def _tga_rewritten(path: Path, handle: BinaryIO, fmt: str, refusal: ImageReadError) -> BinaryIO:
    """A valid TGA that Pillow refused (``refusal``), rewritten as one it reads (``tga``);
    ``refusal`` is raised when the file is not a TGA or the rewrite cannot help."""
    if fmt != "TGA":
        raise refusal
    handle.seek(0)
    head = handle.read(tga.HEADER.size)
    if len(head) == tga.HEADER.size:
        _check_size(path, *struct.unpack_from("<HH", head, 12))
    try:
        handle.seek(0)
        data = tga.rewritten(handle.read())
    except tga.TgaError as exc:
        raise ImageReadError(path, str(exc)) from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if data is None:
        raise refusal
    return _io.BytesIO(data)


def _read_pillow(path: Path, handle: BinaryIO, fmt: str, head: bytes) -> ImageFile:
    with _open(path, handle, fmt) as im:
        try:
            return _decode(path, handle, im, fmt, head)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError(path, "not enough memory to decode") from None
        except (
            OSError,
            ValueError,
            SyntaxError,
            NotImplementedError,
            EOFError,
            TypeError,
            struct.error,
            zlib.error,
        ) as exc:
            raise ImageReadError(path, _describe(exc, fmt)) from None
        except RuntimeError as exc:  # imagecodecs' PngError and kin, for damaged 16-bit PNGs
            raise ImageReadError(path, _describe(exc, fmt)) from None


def _read_dds(path: Path, handle: BinaryIO) -> ImageFile:
    info = _dds_info(path, handle)
    try:
        layers = dds.read_layers(handle, info)
    except dds.DdsError as exc:
        raise ImageReadError(path, exc.reason) from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode") from None
    except (OSError, ValueError, RuntimeError) as exc:  # imagecodecs raises its own errors
        raise ImageReadError(path, _describe(exc, "DDS")) from None
    pixels = layers[0]
    bits = 16 if pixels.dtype == np.uint16 else 8
    extra = {"dds": info, "pixel_format": dds.describe(info)}
    premultiplied = info.alpha_mode == dds.ALPHA_PREMULTIPLIED and pixels.shape[2] in (2, 4)
    return ImageFile(
        pixels,
        "DDS",
        bits,
        source_mode=info.format.name,
        info=extra,
        premultiplied=premultiplied,
        layers=tuple(layers) if len(layers) > 1 else (),
    )


def _decode(path: Path, handle: BinaryIO, im: Image.Image, fmt: str, head: bytes) -> ImageFile:
    icc = im.info.get("icc_profile")
    options: dict[str, Any] = {}
    orientation = exif_orientation(im)
    notes: tuple[str, ...] = (
        (f"EXIF orientation {orientation} applied to the pixels; the tag is not written",)
        if orientation != 1
        else ()
    )
    frames = getattr(im, "n_frames", 1)
    if frames > 1:  # APNG, animated WebP (and GIF-like multi-frame files)
        notes += (f"animated ({frames} frames): only the first frame was upscaled",)
    png = _png_header(head)
    if png is not None and png[0] == 16:
        # Pillow reduces 16-bit colour PNGs to 8 bits; imagecodecs keeps all 16 (and turns a
        # tRNS colour key into an alpha channel, put back as a key when the PNG is written).
        import imagecodecs

        handle.seek(0)
        pixels = imagecodecs.png_decode(handle.read())
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if "transparency" in im.info and pixels.shape[2] in (2, 4):
            options["colour_key"] = im.info["transparency"]
        pixels = oriented(pixels.astype(np.uint16, copy=False), orientation)
        return ImageFile(pixels, fmt, 16, icc, f"{png[1]}:16", save_options=options, notes=notes)
    source_mode = im.mode
    palette = None
    if fmt == "TGA":
        options["compression"] = im.info.get("compression")
        options["orientation"] = im.info.get("orientation", 1)
        options["right_to_left"] = bool(head[17] & 0x10) if len(head) > 17 else False
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        options["subsampling"] = JpegImagePlugin.get_sampling(im)
    if fmt == "WEBP":
        options["lossless"] = webp_lossless(handle)
        handle.seek(0)
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
        array = oriented(array.astype(np.uint16)[:, :, None], orientation)
        return ImageFile(array, fmt, 16, icc, source_mode, save_options=options, notes=notes)
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
    if im.mode in ("L", "RGB") and "transparency" in im.info:
        # A colour key (PNG tRNS): texels of that exact value are transparent. Carried as a
        # real alpha channel through the upscaling and written back as a key (``_encode``).
        options["colour_key"] = im.info["transparency"]
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    array = _to_array(im)  # a writable copy, owned by us
    array = oriented(np.ascontiguousarray(array), orientation)
    return ImageFile(array, fmt, 8, icc, source_mode, palette, options, notes=notes)


ARRAY_BAND_BYTES = 4 << 20  # Pillow pixels copied out at once (see ``_to_array``)


def _to_array(im: Image.Image) -> np.ndarray:
    """``(H, W, C)`` uint8 copy of an 8-bit L/LA/RGB/RGBA image, a band of rows at a time:
    ``np.array(im)`` goes through ``tobytes()``, a third full copy beside Pillow's and ours
    (3 GiB at the peak for a 16384 x 16384 RGBA texture instead of 2)."""
    w, h = im.size
    channels = len(im.getbands())
    array = np.empty((h, w, channels), np.uint8)
    rows = max(1, ARRAY_BAND_BYTES // max(1, w * channels))
    for top in range(0, h, rows):
        band = np.asarray(im.crop((0, top, w, min(h, top + rows))))
        array[top : top + rows] = band.reshape(-1, w, channels)
    return array


def encode_image(
    image: ImageFile, fmt: str | None = None, *, png_level: int | None = None
) -> bytes:
    """Encode to bytes in ``fmt`` (default: the image's own format)."""
    return _encode(image, fmt or image.format, png_level)[0]


def output_limit(fmt: str, size: tuple[int, int]) -> str | None:
    """Why an image of (height, width) ``size`` cannot be written as ``fmt``, or None: more
    pixels per side than the format holds, or more than the readers accept (``MAX_SIDE``,
    ``MAX_PIXELS``: this tool's, and Pillow's bomb limit), which no one could read back."""
    height, width = size
    if max(size) > MAX_SIDE or height * width > MAX_PIXELS:
        return (
            f"a {width}x{height} output would exceed what image readers accept (at most "
            f"{MAX_SIDE:,} px per side and {MAX_PIXELS:,} px in all); not upscaled"
        )
    limit = SIDE_LIMITS.get(fmt)
    if limit is None or max(size) <= limit:
        return None
    return (
        f"a {width}x{height} output is too big for {fmt} (at most {limit:,} px per side); "
        "choose another format, e.g. --format png"
    )


def _encode(image: ImageFile, fmt: str, png_level: int | None) -> tuple[bytes, list[str]]:
    """The encoded file and notes about anything not kept as it was."""
    if fmt == "DDS":
        source = image.info.get("dds")
        return dds.encode(image.pixels, image.bits, source, image.dds_write, image.layers)
    if image.layers:
        what = "cube map" if image.info["dds"].cube else "texture array"
        raise ValueError(f"a {what} ({len(image.layers)} layers) can only be written as DDS")
    notes: list[str] = []
    pixels = image.pixels
    if image.premultiplied:  # the texture stage converts before a format without it
        raise ValueError(f"premultiplied alpha cannot be written as {fmt}")
    key = image.save_options.get("colour_key")
    if key is not None and fmt == "PNG" and pixels.shape[2] in (2, 4):
        pixels = apply_colour_key(pixels, key, image.bits)
    else:
        key = None
    if fmt == "TGA" and image.save_options.get("right_to_left"):
        pixels = pixels[:, ::-1]  # stored right to left, as the source was
    icc = matching_icc(image.icc_profile, pixels.shape[2], notes)
    if image.bits == 16 and fmt != "PNG":  # only PNG keeps 16 bits; others get the nearest 8
        pixels = to_8bit(pixels)
    paletted = _paletted(image, pixels, fmt)
    if fmt == "PNG" and paletted is None:
        return _png(pixels, icc, key, png_level), notes
    if fmt == "BMP" and paletted is None and pixels.shape[2] in (2, 4):
        return bmp_with_alpha(pixels), notes
    mode = MODES[pixels.shape[2]]
    im = paletted or Image.fromarray(
        np.ascontiguousarray(pixels[:, :, 0] if mode == "L" else pixels), mode=mode
    )
    params: dict[str, Any] = {}
    if icc and fmt in ("PNG", "JPEG", "WEBP", "TGA"):
        params["icc_profile"] = icc
    if fmt == "PNG":
        params["compress_level"] = PALETTE_PNG_LEVEL if png_level is None else png_level
        if im.mode == "P" and "transparency" in im.info:
            params["transparency"] = im.info["transparency"]
        elif key is not None:
            params["transparency"] = key
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
    encoded = buffer.getvalue()
    if fmt == "TGA" and image.save_options.get("right_to_left"):
        encoded = encoded[:17] + bytes([encoded[17] | 0x10]) + encoded[18:]  # right-to-left
    return encoded, notes


def _png(pixels: np.ndarray, icc: bytes | None, key: Any, level: int | None) -> bytes:
    """Direct-colour PNG (gray, gray+alpha, RGB, RGBA; 8 or 16 bits) by libpng through
    imagecodecs, with the ICC profile and a colour key (tRNS) inserted as chunks.

    ``level`` None (the default) writes 8-bit images with the Paeth filter and run-length
    deflate: upscaled textures are smooth, so the filtered rows are mostly short runs. On 24
    upscaled validation textures (``benchmarks/png.py``) that takes 0.41x the time of zlib level
    3 with adaptive filters, for files 4% smaller; encoding runs beside inference on the same
    cores. A level 0-9 uses zlib's default strategy and adaptive filters at that level (9:
    smallest, slowest)."""
    import imagecodecs

    data = np.ascontiguousarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if level is None and data.dtype == np.uint8:
        png = imagecodecs.png_encode(data, level=1, strategy=RLE, filter=PAETH)
    else:
        png = imagecodecs.png_encode(data, level=DEFAULT_PNG_LEVEL if level is None else level)
    chunks = [b"iCCP" + b"ICC profile\0\0" + zlib.compress(icc)] if icc else []
    if key is not None:
        values = key if isinstance(key, tuple) else (key,)
        chunks.append(b"tRNS" + struct.pack(f">{len(values)}H", *values))
    return with_png_chunks(bytes(png), chunks)


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
    path: str | Path, image: ImageFile, fmt: str | None = None, *, png_level: int | None = None
) -> list[str]:
    """Encode and write atomically (temporary file beside ``path``, then rename). Returns notes
    about anything not kept as it was (e.g. a DDS format written as the closest one we can)."""
    path = Path(path)
    fmt = fmt or expected_format(path) or image.format
    too_big = output_limit(fmt, image.size)
    if too_big is not None:
        raise ImageWriteError(path, too_big)
    try:
        data, notes = _encode(image, fmt, png_level)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageWriteError(path, f"cannot encode as {fmt}: {exc}") from None
    with atomic_write(path) as handle:
        handle.write(data)
    return list(image.notes) + notes
