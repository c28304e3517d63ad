"""A corpus of malformed image files, mixed with valid ones, built from real textures.

    python -m benchmarks.faults.corpus OUT [--count 1000] [--seed 0]

Every file is made from a crop of a real texture (``../shared/data/textures/val``, or the small
copies in ``tests/data/textures``), encoded in one of the formats modders meet, then damaged in one
of these ways: truncated at a random offset, bits flipped, named with the wrong extension, emptied,
replaced by a folder named ``x.png``, a header declaring 100k x 100k pixels, TIFF/EPS/GIF/PSD/FITS
bytes under an image name, or a DDS the tool cannot keep (BC6H HDR, also as a cube map or
array, a partial cube map, volume, unknown formats). ``corpus.json`` lists every entry with what
a correct run must do with it: ``done`` (valid), ``failed`` (with a reason matching ``reason``),
``either`` (damage that a decoder cannot always see, e.g. a flipped bit inside raw pixels) or
``folder`` (a folder named ``x.png`` is walked like any folder: no failure, and the image inside
it is done).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import dds_bytes

ROOT = Path(__file__).resolve().parents[2]
# UPSCALE_DRILL_TEXTURES points elsewhere (a missing folder: use only the bundled crops).
SHARED_VAL = Path(
    os.environ.get("UPSCALE_DRILL_TEXTURES", ROOT.parent / "shared" / "data" / "textures" / "val")
)
BUNDLED = ROOT / "tests" / "data" / "textures"
VALID_SHARE = 0.3


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the corpus root
    kind: str
    expect: str  # done | failed | either
    reason: str = ""  # regular expression the failure reason must match
    note: str = ""


def source_textures(limit: int = 24) -> list[Path]:
    """Real textures to cut from: the shared validation set when present, else bundled crops."""
    found = sorted(SHARED_VAL.glob("*/*.png")) if SHARED_VAL.is_dir() else []
    if not found:
        found = sorted(BUNDLED.glob("*.png"))
    if not found:
        raise FileNotFoundError(f"no textures in {SHARED_VAL} or {BUNDLED}")
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def load_patches(
    sources: list[Path], rng: np.random.Generator, count: int, sides: tuple[int, int] = (16, 73)
) -> list[np.ndarray]:
    """``count`` random crops (``sides`` px, odd sizes included) as RGB or RGBA uint8."""
    images = _decoded(tuple(sources))
    patches = []
    for _ in range(count):
        image = images[int(rng.integers(0, len(images)))]
        h = min(image.shape[0], int(rng.integers(*sides)))
        w = min(image.shape[1], int(rng.integers(*sides)))
        y = int(rng.integers(0, image.shape[0] - h + 1))
        x = int(rng.integers(0, image.shape[1] - w + 1))
        patches.append(np.ascontiguousarray(image[y : y + h, x : x + w]))
    return patches


@functools.cache
def _decoded(sources: tuple[Path, ...]) -> list[np.ndarray]:
    images = []
    for path in sources:
        with Image.open(path) as im:
            images.append(np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB")))
    return images


# -- valid encodings ------------------------------------------------------------------------------


def _pil(pixels: np.ndarray, mode: str) -> Image.Image:
    rgb = Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")
    return rgb.convert(mode) if rgb.mode != mode else rgb


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png16(pixels: np.ndarray, gray: bool) -> bytes:
    import imagecodecs

    wide = pixels[:, :, :3].astype(np.uint16) * 257
    data = wide.mean(axis=2).astype(np.uint16) if gray else wide
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(data)))


VALID: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "png-rgb": lambda p, r: _save(_pil(p, "RGB"), "PNG"),
    "png-rgba": lambda p, r: _save(_pil(p, "RGBA"), "PNG"),
    "png-gray": lambda p, r: _save(_pil(p, "L"), "PNG"),
    "png-gray-alpha": lambda p, r: _save(_pil(p, "LA"), "PNG"),
    "png-16-gray": lambda p, r: _png16(p, gray=True),
    "png-16-rgb": lambda p, r: _png16(p, gray=False),
    "png-palette": lambda p, r: _save(_pil(p, "RGB").quantize(colors=32), "PNG"),
    "tga-rle-bottom-left": lambda p, r: _save(
        _pil(p, "RGBA"), "TGA", compression="tga_rle", orientation=-1
    ),
    "tga-raw": lambda p, r: _save(_pil(p, "RGB"), "TGA", orientation=1),
    "tga-gray": lambda p, r: _save(_pil(p, "L"), "TGA"),
    "jpg": lambda p, r: _save(_pil(p, "RGB"), "JPEG", quality=90),
    "jpg-gray": lambda p, r: _save(_pil(p, "L"), "JPEG", quality=90),
    "bmp": lambda p, r: _save(_pil(p, "RGB"), "BMP"),
    "webp-lossless": lambda p, r: _save(_pil(p, "RGBA"), "WEBP", lossless=True),
    "dds-dxt1": lambda p, r: _save(_pil(p, "RGBA"), "DDS", pixel_format="DXT1"),
    "dds-dxt5": lambda p, r: _save(_pil(p, "RGBA"), "DDS", pixel_format="DXT5"),
    "dds-rgba": lambda p, r: _save(_pil(p, "RGBA"), "DDS"),
}
SUFFIX = {
    "png": ".png",
    "tga": ".tga",
    "jpg": ".jpg",
    "bmp": ".bmp",
    "webp": ".webp",
    "dds": ".dds",
}


def _suffix(kind: str) -> str:
    return SUFFIX[kind.split("-")[0]]


# -- damage ---------------------------------------------------------------------------------------


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    # Cut into the encoded pixels: a cut only in a trailer (PNG's IEND and checksums, TGA's
    # footer) loses nothing, so at least 32 bytes go.
    return data[: int(rng.integers(1, max(2, len(data) - 32)))]


def _flip_bits(data: bytes, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        at = int(rng.integers(min(16, len(raw) - 1), len(raw)))
        raw[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(raw)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A well-formed PNG of a few hundred bytes that declares ``width x height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 65536, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _bomb(fmt: str) -> bytes:
    if fmt == "png":
        return png_bomb()
    if fmt == "bmp":
        header = struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0, 0, 0, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54 + 1024, 0, 0, 54) + header + b"\0" * 1024
    if fmt == "tga":
        return (
            struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 65535, 65535, 24, 0) + b"\0" * 64
        )
    if fmt == "jpg":
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65500, 65500, 3) + b"\x01\x22\x00" * 3
        return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\1\1\0\0\1\0\1\0\0" + sof
    return dds_bytes.header(100_000, 100_000, fourcc=b"DXT1") + b"\0" * 4096


FOREIGN: dict[str, Callable[[np.ndarray], bytes]] = {
    "tiff": lambda p: _save(_pil(p, "RGB"), "TIFF"),
    "eps": lambda p: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n" * 8,
    "gif": lambda p: _save(_pil(p, "RGB"), "GIF"),
    "psd": lambda p: (
        b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 8, 8, 8, 3) + b"\0" * 64
    ),
    "fits": lambda p: b"SIMPLE  =                    T".ljust(2880, b" "),
    "zip": lambda p: b"PK\x03\x04" + b"\0" * 60,
}


def _wrong_extension(kind: str, data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """Valid bytes of one format under another format's extension."""
    own = _suffix(kind)
    others = [s for s in (".png", ".jpg", ".tga", ".dds", ".bmp", ".webp") if s != own]
    return others[int(rng.integers(0, len(others)))], data


# -- the corpus -----------------------------------------------------------------------------------


def _write(root: Path, entry: Entry, data: bytes) -> Entry:
    path = root / entry.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.kind == "directory":  # a folder that looks like an image, holding one
        path.mkdir()
        (path / "inside.txt").write_text("a folder, not an image\n")
        return _write(root, Entry(f"{entry.path}/inner.png", "valid", "done"), data)
    path.write_bytes(data)
    return entry


def _bad(
    index: int, kind: str, folder: str, patch: np.ndarray, rng: np.random.Generator
) -> tuple[Entry, bytes]:
    """(entry, bytes) for damage ``kind`` applied to an encoding of ``patch``."""
    valid_kind = list(VALID)[int(rng.integers(0, len(VALID)))]
    data = VALID[valid_kind](patch, rng)
    stem = f"{folder}/{index:05d}_{kind}"
    if kind == "truncated":
        e = Entry(
            f"{stem}_{valid_kind}{_suffix(valid_kind)}",
            kind,
            "failed",
            "truncated|corrupt|not a valid",
        )
        return e, _truncate(data, rng)
    if kind == "bitflip":
        return Entry(f"{stem}_{valid_kind}{_suffix(valid_kind)}", kind, "either"), _flip_bits(
            data, rng
        )
    if kind == "wrong-extension":
        suffix, payload = _wrong_extension(valid_kind, data, rng)
        return Entry(
            f"{stem}_{valid_kind}{suffix}",
            kind,
            "failed",
            "content is|not a valid|corrupt|truncated",
        ), payload
    if kind == "zero-bytes":
        return Entry(f"{stem}{_suffix(valid_kind)}", kind, "failed", "empty"), b""
    if kind == "directory":
        # A folder is walked, whatever its name: its images are done, it is no failure.
        png = VALID["png-rgb"](patch, rng)
        return Entry(f"{stem}{_suffix(valid_kind)}", kind, "folder"), png
    if kind == "bomb":
        fmt = ("png", "bmp", "tga", "jpg", "dds")[index % 5]
        return Entry(f"{stem}_{fmt}.{fmt}", kind, "failed", "pixel|limit"), _bomb(fmt)
    if kind == "foreign":
        name = list(FOREIGN)[index % len(FOREIGN)]
        suffix = (".png", ".tga", ".jpg", ".dds", ".bmp")[int(rng.integers(0, 5))]
        reason = "content is|not a valid|corrupt"
        return Entry(f"{stem}_{name}{suffix}", kind, "failed", reason, name), FOREIGN[name](patch)
    name, payload = dds_bytes.unsupported(index, data if valid_kind == "dds-dxt1" else None, patch)
    return (
        Entry(
            f"{stem}_{name}.dds", "dds-unsupported", "failed", "unsupported|Unimplemented|DDS", name
        ),
        payload,
    )


BAD_KINDS = (
    "truncated",
    "bitflip",
    "wrong-extension",
    "zero-bytes",
    "directory",
    "bomb",
    "foreign",
    "dds-unsupported",
)


def build_corpus(root: Path, count: int = 1000, seed: int = 0) -> list[Entry]:
    """Write ``count`` files (about 30 % valid) under ``root``; return their entries."""
    rng = np.random.default_rng(seed)
    patches = load_patches(source_textures(), rng, count)
    entries = []
    valid_kinds = list(VALID)
    for index, patch in enumerate(patches):
        folder = f"set{index % 8}/{'deep/' if index % 3 == 0 else ''}"
        folder = folder.rstrip("/")
        if rng.random() < VALID_SHARE:
            kind = valid_kinds[index % len(valid_kinds)]
            entry = Entry(f"{folder}/{index:05d}_valid_{kind}{_suffix(kind)}", "valid", "done")
            entries.append(_write(root, entry, VALID[kind](patch, rng)))
        else:
            kind = BAD_KINDS[int(rng.integers(0, len(BAD_KINDS)))]
            entry, data = _bad(index, kind, folder, patch, rng)
            inner = _write(root, entry, data)
            entries += [entry, inner] if inner is not entry else [entry]
    (root / "corpus.json").write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def read_corpus(root: Path) -> list[Entry]:
    return [Entry(**e) for e in json.loads((root / "corpus.json").read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    entries = build_corpus(args.out, args.count, args.seed)
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    print(f"{len(entries)} files in {args.out}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))


if __name__ == "__main__":
    main()
