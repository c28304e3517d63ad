"""Packed crops: training crops cut once from a folder of textures into one uint8 file.

Decoding a 512 px PNG costs milliseconds; slicing a memory-mapped array costs nothing, so loader
workers never hold the GPU up. The file is a plain safetensors file (readable by any safetensors
library) with tensors ``crops`` ``(N, S, S, 3)`` uint8 and ``kinds`` ``(N,)`` uint8 (index into
``training.maps.KINDS``), ``sources`` ``(N,)`` int32 (index into the metadata's source list), and
metadata ``packed.sources`` (JSON list of source paths) and ``packed.info``.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from upscaler.atomic import atomic_write
from upscaler.formats.image import ImageReadError
from upscaler.texture.seamless import detect_wrap
from upscaler.worklist import overwrites

from .degradations import wrap_crop
from .images import list_images, load_texture
from .maps import KINDS

MAX_HEADER = 64 << 20
# What to do about textures smaller than the crop (old games' are often 64-128 px).
SMALL_ADVICE = (
    "train on the folder instead, or pack with a smaller crop (--crop 64) and fit with the same "
    "data.crop_size (--set data.crop_size=64)"
)


class PackError(Exception):
    """A packed-crop file is missing, malformed or truncated; names the file."""


@dataclass(frozen=True)
class PackedCrops:
    """A memory-mapped pack. ``crops[i]`` is ``(S, S, 3)`` uint8, shared by forked workers."""

    path: Path
    crops: np.ndarray
    kinds: np.ndarray
    sources: np.ndarray
    source_paths: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.crops.shape[0])


def read_pack(path: str | Path) -> PackedCrops:
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > MAX_HEADER or 8 + header_len > size:
                raise PackError(f"{path}: not a packed-crop file (bad header)")
            header = json.loads(handle.read(header_len))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: cannot read packed crops ({exc})") from None
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + header_len
    arrays = {}
    for name, dtype in (("crops", np.uint8), ("kinds", np.uint8), ("sources", np.int32)):
        entry = header.get(name)
        if entry is None:
            raise PackError(f"{path}: not a packed-crop file (no {name!r} tensor)")
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if base + end > size or end - begin != math.prod(shape) * np.dtype(dtype).itemsize:
            raise PackError(f"{path}: truncated or corrupt ({name!r} runs past the end)")
        arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=base + begin, shape=shape)
    crops = arrays["crops"]
    if crops.ndim != 4 or crops.shape[3] != 3 or len(arrays["kinds"]) != len(crops):
        raise PackError(f"{path}: crops must be (N, S, S, 3) with one kind per crop")
    sources = tuple(json.loads(meta.get("packed.sources", "[]")))
    return PackedCrops(path, crops, arrays["kinds"], arrays["sources"], sources)


def _flat(crop: np.ndarray, min_std: float) -> bool:
    return min_std > 0 and float(crop.astype(np.float32).std()) / 255 < min_std


def crops_of(
    texture: np.ndarray, size: int, count: int, generator: torch.Generator, min_std: float
) -> list[np.ndarray]:
    """Up to ``count`` crops ``(size, size, 3)`` of one ``(H, W, 3)`` uint8 texture, taken
    across the wrap seam for tileable textures; flat crops are dropped."""
    h, w = texture.shape[:2]
    image = torch.from_numpy(texture).permute(2, 0, 1)
    wrap = detect_wrap(image)
    out = []
    for _ in range(count * 2):  # a few spare draws replace flat crops
        if len(out) == count:
            break
        top = int(torch.randint(0, h if wrap[0] else h - size + 1, (), generator=generator))
        left = int(torch.randint(0, w if wrap[1] else w - size + 1, (), generator=generator))
        crop = wrap_crop(image, top, left, size, size).permute(1, 2, 0).numpy()
        if not _flat(crop, min_std):
            out.append(np.ascontiguousarray(crop))
    return out


@dataclass(frozen=True)
class Packed:
    crops: int  # written to the pack
    textures: int  # images found under the folders
    too_small: int  # textures left out: their short side is under the crop size


def pack_folders(
    folders: Iterable[str | Path],
    out: str | Path,
    *,
    crop_size: int = 256,
    per_image: int = 8,
    seed: int = 0,
    min_std: float = 0.02,
    workers: int = 4,
    report: Callable[[str], None] = lambda _message: None,
) -> Packed:
    """Cut ``per_image`` crops from every texture under ``folders`` into the pack ``out``.

    Unreadable, too small and auxiliary images are reported and skipped; the file is written
    atomically.
    """
    out, folders = Path(out), [Path(f) for f in folders]
    sources: list[str] = []
    kinds: list[int] = []
    owners: list[int] = []

    def cut(job: tuple[int, Path]) -> tuple[str, list[np.ndarray], bool]:
        """The texture's kind and crops, or why it was skipped, no crops, and whether that
        was for being smaller than the crop."""
        index, path = job
        try:
            texture, kind = load_texture(path)
        except ImageReadError as exc:
            return f"skipped: {exc}", [], False
        if kind == "data":
            return f"{path}: skipped: a data map by its name (not trained on)", [], False
        if min(texture.shape[:2]) < crop_size:
            size = f"{texture.shape[1]}x{texture.shape[0]}"
            return f"{path}: skipped: {size} < {crop_size}", [], True
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        return kind, crops_of(texture, crop_size, per_image, generator, min_std), False

    paths = list_images(folders)
    clash = overwrites(out, (("one of the images it reads", p) for p in paths))
    if clash is not None:
        raise PackError(f"{out}: the pack would overwrite {clash[0]}, {clash[1]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    too_small = 0
    with tempfile.TemporaryFile(dir=out.parent) as raw, ThreadPoolExecutor(workers) as pool:
        # Decoding releases the GIL; results come back in order, so the pack is reproducible.
        for path, (kind, crops, small) in zip(paths, pool.map(cut, enumerate(paths)), strict=True):
            too_small += small
            if kind not in KINDS:
                report(kind)
                continue
            for crop in crops:
                raw.write(crop.tobytes())
            kinds += [KINDS.index(kind)] * len(crops)
            owners += [len(sources)] * len(crops)
            sources.append(str(path))
        if not kinds:
            why = (
                f"; {too_small} of {len(paths)} textures are smaller than the {crop_size} px "
                f"crop: {SMALL_ADVICE}"
            )
            raise PackError(
                f"{out}: no usable crops found in {', '.join(map(str, folders))}"
                f"{why if too_small else ''}"
            )
        raw.flush()
        raw.seek(0)
        _write(out, raw, len(kinds), crop_size, kinds, owners, sources)
    return Packed(len(kinds), len(paths), too_small)


def _write(out: Path, raw, n: int, size: int, kinds, owners, sources) -> None:  # noqa: ANN001
    crop_bytes = n * size * size * 3
    kinds_bytes = np.asarray(kinds, dtype=np.uint8).tobytes()
    owners_bytes = np.asarray(owners, dtype=np.int32).tobytes()
    offsets = [0, crop_bytes, crop_bytes + n, crop_bytes + n + 4 * n]
    header = {
        "crops": {"dtype": "U8", "shape": [n, size, size, 3], "data_offsets": offsets[0:2]},
        "kinds": {"dtype": "U8", "shape": [n], "data_offsets": offsets[1:3]},
        "sources": {"dtype": "I32", "shape": [n], "data_offsets": offsets[2:4]},
        "__metadata__": {
            "packed.sources": json.dumps(sources),
            "packed.info": json.dumps({"crop_size": size, "kinds": list(KINDS)}),
        },
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    with atomic_write(out) as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        while block := raw.read(1 << 24):
            handle.write(block)
        handle.write(kinds_bytes + owners_bytes)
