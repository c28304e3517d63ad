"""Texture files for training: find them, decode them (``upscaler.formats``), make them RGB."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from upscaler.atomic import is_temp_file
from upscaler.formats.bits import to_8bit
from upscaler.formats.image import FORMATS, ImageReadError, read_image
from upscaler.texture.alpha import bleed
from upscaler.worklist import inside, real_path

from .maps import classify


def list_images(
    folders: Iterable[str | Path], report: Callable[[str], None] = lambda _m: None
) -> list[Path]:
    """Image files under ``folders`` (recursive, sorted; hidden and temporary files left out).

    A file that resolves outside its folder (a symlink out of a game dump) is left out and
    ``report``-ed: the training set holds only what the folder holds."""
    found: list[Path] = []
    for folder in map(Path, folders):
        if folder.is_file():
            found.append(folder)
            continue
        if not folder.is_dir():
            raise ImageReadError(folder, "no such folder")
        root = real_path(folder)
        for path in sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in FORMATS
            and p.is_file()
            and not p.name.startswith(".")
            and not is_temp_file(p)
        ):
            if inside(real_path(path), root):
                found.append(path)
            else:
                report(f"{path}: skipped: a link to {real_path(path)}, outside {folder}")
    return found


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` uint8/uint16 with C = 1..4 -> ``(H, W, 3)`` uint8 (alpha dropped).

    Colour under fully transparent texels is first filled from the visible ones, as the upscaler
    does before inference, so training sees what the model will be given.
    """
    if pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
    if pixels.shape[2] in (2, 4):
        colour = torch.from_numpy(np.ascontiguousarray(pixels[:, :, :-1])).permute(2, 0, 1)[None]
        alpha = torch.from_numpy(np.ascontiguousarray(pixels[:, :, -1:])).permute(2, 0, 1)[None]
        filled = bleed(colour.float() / 255, alpha.float() / 255)
        pixels = (filled[0].permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def load_texture(path: str | Path) -> tuple[np.ndarray, str]:
    """Decode ``path`` to ``(H, W, 3)`` uint8 and its kind (``training.maps.classify``).

    Raises ``ImageReadError`` (one line naming the file) for anything unreadable.
    """
    image = read_image(path)
    return to_rgb8(image.pixels), classify(path, image.pixels)
