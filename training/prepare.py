"""``upscale-train prepare SRC OUT``: a training set from unpacked game data.

Three passes, so memory stays flat for tens of thousands of files: (1) judge every image (size,
kind, flatness, an average hash) without keeping pixels; (2) drop near-duplicates by hash, keeping
the largest copy; (3) decode the survivors again, shrink them (JPEG sources are halved to wash out
their 8x8 blocks; everything is capped at ``max_size``) and write them as PNG into
``OUT/{color,normal,alpha}/`` with ``manifest.jsonl`` (kept files and their sources) and
``dropped.jsonl`` (every dropped file and why). Each kept file's licence is recorded beside its
source, from the Debian copyright files under the source folder (``training.licences``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from upscaler.atomic import write_bytes_atomic
from upscaler.formats.bits import to_8bit
from upscaler.formats.image import ImageFile, ImageReadError, read_image, write_image
from upscaler.texture.colour import linear_to_srgb, srgb_to_linear
from upscaler.texture.maps import kind_from_name
from upscaler.texture.resample import resize

from .degradations import renormalise_normals
from .images import list_images
from .licences import find_copyrights, licences
from .maps import classify, is_grayscale, looks_like_normal_map

HASH_SIDE = 16  # 16x16 average hash: 256 bits, as the shared data set was deduplicated
DETAIL_SIDE = 32
# A hash match is confirmed only when the detail agrees too: two textures that merely share a
# light-to-dark gradient have equal average hashes, but their normalised 32x32 luma thumbnails
# do not correlate. Tint variants of one texture (same detail, other colour) do, and go.
MIN_DETAIL_CORRELATION = 0.9


@dataclass(frozen=True)
class PrepareOptions:
    min_size: int = 64  # short side, after any halving: old games' 64-128 px textures stay
    max_size: int = 1024  # long side cap
    halve_jpeg: bool = True
    min_spread: float = 0.03  # luminance standard deviation, 0..1
    min_gradient: float = 0.004  # mean absolute neighbour difference, 0..1
    min_colours: int = 48  # distinct colours in a 64x64 thumbnail
    max_transparent: float = 0.75  # share of (nearly) transparent texels in alpha maps
    duplicate_bits: int = 12  # hash distance (of 256 bits) at or below which images are copies
    keep_grayscale: bool = False
    workers: int = 4


@dataclass(frozen=True)
class Verdict:
    path: Path
    kind: str = ""
    reason: str = ""  # empty: kept
    area: int = 0
    digest: np.ndarray | None = None
    detail: np.ndarray | None = None


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255


def average_hash(rgb: np.ndarray) -> np.ndarray:
    """256 bools: which cells of a 16x16 box-averaged luma thumbnail are above its mean."""
    y = torch.from_numpy(_luma(rgb))[None, None]
    thumb = resize(y, (HASH_SIDE, HASH_SIDE), "box")[0, 0].numpy()
    return (thumb > thumb.mean()).reshape(-1)


def detail_signature(rgb: np.ndarray) -> np.ndarray:
    """A 32x32 luma thumbnail scaled to zero mean and unit norm (its dot product with another
    is their correlation)."""
    y = torch.from_numpy(_luma(rgb))[None, None]
    thumb = resize(y, (DETAIL_SIDE, DETAIL_SIDE), "box").reshape(-1).double().numpy()
    thumb -= thumb.mean()
    return (thumb / max(float(np.linalg.norm(thumb)), 1e-9)).astype(np.float32)


def _flatness(rgb: np.ndarray, options: PrepareOptions) -> str:
    y = _luma(rgb)
    if float(y.std()) < options.min_spread:
        return f"flat (luminance spread {y.std():.3f} < {options.min_spread})"
    gradient = float(np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean()) / 2
    if gradient < options.min_gradient:
        return f"a smooth gradient (mean step {gradient:.4f} < {options.min_gradient})"
    step = max(1, min(rgb.shape[:2]) // 64)
    colours = len(np.unique(rgb[::step, ::step, :3].reshape(-1, 3), axis=0))
    if colours < options.min_colours:
        return f"flat-colour art ({colours} colours < {options.min_colours})"
    return ""


def _target_size(h: int, w: int, is_jpeg: bool, options: PrepareOptions) -> tuple[int, int]:
    factor = 0.5 if is_jpeg and options.halve_jpeg else 1.0
    factor = min(factor, options.max_size / max(h, w))
    return max(1, round(h * factor)), max(1, round(w * factor))


# Folders of a Debian package that hold the desktop's images, never the game's: its menu icon
# (usr/share/icons, usr/share/pixmaps) and the software centre's screenshots and documents.
DESKTOP_FOLDERS = ("icons", "pixmaps", "metainfo", "appdata", "applications", "doc")


def not_a_texture(path: Path) -> str:
    """Why ``path`` is no game texture by where it lies or what it is called; empty if it may
    be one. Screenshots are rendered frames: their detail is the renderer's, not an artist's."""
    parts = [p.lower() for p in path.parts]
    for i in range(len(parts) - 3):
        if parts[i : i + 2] == ["usr", "share"] and parts[i + 2] in DESKTOP_FOLDERS:
            return f"a desktop file (under usr/share/{parts[i + 2]}/), not a game texture"
    if "screenshot" in path.stem.lower():
        return "a screenshot by its name, not a texture"
    return ""


def judge(path: Path, options: PrepareOptions) -> Verdict:
    """Keep or drop one file, and why; never raises for a bad image."""
    outside = not_a_texture(path)
    if outside:
        return Verdict(path, reason=outside)
    try:
        image = read_image(path)
    except ImageReadError as exc:
        return Verdict(path, reason=f"unreadable: {exc.reason}")
    pixels = image.pixels
    if pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
    h, w = pixels.shape[:2]
    th, tw = _target_size(h, w, image.format == "JPEG", options)
    if min(th, tw) < options.min_size:
        return Verdict(path, reason=f"too small ({tw}x{th} after resizing < {options.min_size})")
    kind = classify(path, pixels)
    if kind == "data":
        return Verdict(path, kind, "a data map by its name (not trained on)")
    if kind != "normal" and kind_from_name(path) is None and looks_like_normal_map(pixels):
        kind = "normal"  # a normal map with a vague name: sorted into normal/ by its pixels
    gray = pixels.shape[2] < 3 or (kind != "normal" and is_grayscale(pixels))
    if gray and not options.keep_grayscale:
        return Verdict(path, kind, "grayscale")
    rgb = np.repeat(pixels[:, :, :1], 3, axis=2) if pixels.shape[2] < 3 else pixels[:, :, :3]
    if kind == "alpha":
        transparent = float((pixels[:, :, -1] < 26).mean())
        if transparent > options.max_transparent:
            return Verdict(path, kind, f"mostly transparent ({100 * transparent:.0f}%)")
    flat = _flatness(rgb, options) if kind != "normal" else ""
    if flat:
        return Verdict(path, kind, flat)
    return Verdict(path, kind, "", th * tw, average_hash(rgb), detail_signature(rgb))


def drop_duplicates(verdicts: list[Verdict], max_bits: int) -> list[Verdict]:
    """Mark near-duplicates, keeping the largest of each group: average hashes within
    ``max_bits`` and detail thumbnails that correlate (``MIN_DETAIL_CORRELATION``)."""
    hashes: list[np.ndarray] = []
    details: list[np.ndarray] = []
    paths: list[Path] = []
    out = {}
    order = sorted((v for v in verdicts if not v.reason), key=lambda v: (-v.area, str(v.path)))
    for verdict in order:
        assert verdict.digest is not None and verdict.detail is not None
        if hashes:
            close = np.flatnonzero((np.stack(hashes) != verdict.digest).sum(axis=1) <= max_bits)
            if len(close):
                correlation = np.stack([details[i] for i in close]) @ verdict.detail
                best = int(correlation.argmax())
                if correlation[best] >= MIN_DETAIL_CORRELATION:
                    reason = f"near-duplicate of {paths[close[best]]}"
                    out[verdict.path] = Verdict(verdict.path, verdict.kind, reason)
                    continue
        hashes.append(verdict.digest)
        details.append(verdict.detail)
        paths.append(verdict.path)
        out[verdict.path] = verdict
    return [out.get(v.path, v) for v in verdicts]


def shrink(pixels: np.ndarray, size: tuple[int, int], kind: str) -> np.ndarray:
    """Resize ``(H, W, C)`` uint8 with Lanczos: colour in linear light, normals as vectors."""
    if pixels.shape[:2] == size:
        return pixels
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    if kind == "normal":
        y = renormalise_normals(resize(x, size, "lanczos3").clamp(0, 1))
    else:
        x[:, :3] = srgb_to_linear(x[:, :3])
        y = resize(x, size, "lanczos3")
        y[:, :3] = linear_to_srgb(y[:, :3])
    return (y[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _output_name(path: Path, src: Path, taken: set[str]) -> str:
    """The file's path under ``src`` flattened into one name, read as the file's own name is: a
    name of one word ("S3.png", "n.png") says nothing, but after its folders its word would read
    as a suffix ("vario_S3": specular, so a data map; "tiles_n": normal), and a neutral last word
    keeps it saying nothing."""
    stem = "_".join(path.relative_to(src).with_suffix("").parts)
    if kind_from_name(path.name) is None and kind_from_name(f"{stem}.png") is not None:
        stem += "_texture"
    name, n = f"{stem}.png", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}_{n}.png"
    taken.add(name.lower())
    return name


def _write(verdict: Verdict, target: Path, options: PrepareOptions) -> tuple[int, int, str]:
    image = read_image(verdict.path)
    pixels = image.pixels
    if pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
    if pixels.shape[2] < 3:
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    pixels = pixels[:, :, :4] if verdict.kind == "alpha" else pixels[:, :, :3]
    h, w = pixels.shape[:2]
    pixels = shrink(pixels, _target_size(h, w, image.format == "JPEG", options), verdict.kind)
    write_image(target, ImageFile(np.ascontiguousarray(pixels), "PNG"))
    return pixels.shape[1], pixels.shape[0], "RGBA" if pixels.shape[2] == 4 else "RGB"


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` did: ``counts`` per kind, of held-out and of dropped files; ``licences``:
    how many kept (and held-out) files each licence covers; ``has_copyright``: whether the source
    folder holds any ``usr/share/doc/*/copyright``."""

    counts: dict[str, int]
    licences: dict[str, int]
    has_copyright: bool


def held_out(count: int, available: int) -> list[int]:
    """Which of ``available`` colour textures to hold out for validation: ``count`` of them,
    at most a quarter (at least one of two or more), spread evenly over the sorted set."""
    n = min(count, max(1, available // 4)) if available >= 2 else 0
    return [int((i + 0.5) * available / n) for i in range(n)]


def prepare(
    src: str | Path,
    out: str | Path,
    options: PrepareOptions,
    report: Callable[[str], None] = lambda _m: None,
    *,
    val: str | Path | None = None,
    val_count: int = 8,
) -> Prepared:
    """Build the training set; returns what it kept, held out and dropped, and the licences.

    With ``val``, ``val_count`` of the colour textures (see ``held_out``) go into that folder
    instead of ``out/color``: images for ``val.folder`` that training never sees."""
    src, out = Path(src), Path(out)
    paths = list_images([src], report)
    report(f"judging {len(paths)} images under {src}")
    with ThreadPoolExecutor(options.workers) as pool:
        verdicts = list(pool.map(lambda p: judge(p, options), paths))
    verdicts = drop_duplicates(verdicts, options.duplicate_bits)
    taken: set[str] = set()
    jobs = []
    for verdict in verdicts:
        if not verdict.reason:
            name = _output_name(verdict.path, src, taken)
            jobs.append((verdict, out / verdict.kind / name))
    held: set[int] = set()
    if val is not None:
        colour = [i for i, (v, _) in enumerate(jobs) if v.kind == "color"]
        held = {colour[pick] for pick in held_out(val_count, len(colour))}
        jobs = [(v, Path(val) / t.name if i in held else t) for i, (v, t) in enumerate(jobs)]
    for folder in {out} | {t.parent for _, t in jobs}:  # out too: it lists what was dropped
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(options.workers) as pool:
        written = list(pool.map(lambda job: _write(job[0], job[1], options), jobs))
    copyrights = find_copyrights(src)  # one walk of the dump for both uses
    licence_of = licences(src, paths, copyrights)  # all the images: patterns fit the package
    manifest = [
        {
            "file": os.path.relpath(t, out),  # ../val/... for a held-out texture
            "kind": v.kind,
            "source": str(v.path.relative_to(src)),
            "size": [w, h],
            "mode": mode,
            "ahash": np.packbits(v.digest).tobytes().hex(),
            "licence": licence_of[v.path].name,
            "licence_from": licence_of[v.path].origin,
        }
        for (v, t), (w, h, mode) in zip(jobs, written, strict=True)
    ]
    dropped = [
        {"source": str(v.path.relative_to(src)), "reason": v.reason} for v in verdicts if v.reason
    ]
    lines = "".join(json.dumps(m) + "\n" for m in manifest)
    write_bytes_atomic(out / "manifest.jsonl", lines.encode())
    write_bytes_atomic(
        out / "dropped.jsonl", "".join(json.dumps(d) + "\n" for d in dropped).encode()
    )
    kept = [m for i, m in enumerate(manifest) if i not in held]
    counts = {
        kind: sum(1 for m in kept if m["kind"] == kind) for kind in ("color", "normal", "alpha")
    }
    if val is not None:
        counts["held out for validation"] = len(held)
    counts["dropped"] = len(dropped)
    by_licence = Counter(str(m["licence"]) for m in manifest)
    return Prepared(counts, dict(by_licence.most_common()), bool(copyrights))
