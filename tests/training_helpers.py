"""Shared pieces of the training tests: small real texture folders and tiny-run overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import make_pixels
from PIL import Image

RECIPES = (
    "compact-x4-psnr",
    "compact-x4-gan",
    "compact-x2-psnr",
    "compact-x2-gan",
    "rrdb-x4-psnr",
    "rrdb-x4-gan",
)


def height_field(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth periodic height field in ``[0, 1]`` (sum of a few random waves)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((h, w))
    for _ in range(4):
        fy, fx = rng.integers(1, 4, size=2)
        phase = rng.random() * 2 * np.pi
        field += np.sin(2 * np.pi * (fy * y / h + fx * x / w) + phase)
    return (field - field.min()) / (field.max() - field.min())


def normals_from_height(
    height: np.ndarray, strength: float = 4.0, y_down: bool = False
) -> np.ndarray:
    """OpenGL (Y up) or DirectX (``y_down``) tangent-space normals ``(H, W, 3)`` in ``[0, 1]``."""
    dx = (np.roll(height, -1, axis=1) - np.roll(height, 1, axis=1)) / 2
    d_row = (np.roll(height, -1, axis=0) - np.roll(height, 1, axis=0)) / 2
    d_up = -d_row  # rows grow downwards
    v = np.stack([-strength * dx, -strength * d_up, np.ones_like(height)], axis=-1)
    if y_down:
        v[..., 1] *= -1
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return (v + 1) / 2


def tileable_pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 texture that wraps seamlessly (periodic waves per channel)."""
    channels = [height_field(h, w, seed + c) for c in range(3)]
    return (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)


def write_texture_tree(root: Path, size: int = 40, count: int = 5) -> Path:
    """A folder of real PNG/JPEG/TGA files: colour maps, a tileable one and a normal map."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = make_pixels(size + 3 * i, size + 1, 3, seed=i)
        Image.fromarray(pixels, "RGB").save(root / f"colour_{i}.png")
    Image.fromarray(tileable_pixels(size, size + 8, seed=7), "RGB").save(root / "tiles.tga")
    normal = (normals_from_height(height_field(size, size, 3)) * 255).round().astype(np.uint8)
    Image.fromarray(normal, "RGB").save(root / "wall_n.png")
    return root


def tiny_overrides(recipe: str, tmp_path: Path, train: Path, val: Path | None = None) -> list[str]:
    """``--set`` values that shrink a recipe to seconds on CPU without changing what it does."""
    rrdb = recipe.startswith("rrdb")
    values = [
        f"run.out_dir={str(tmp_path / 'runs')!r}",
        "run.max_steps=2",
        "run.log_every=1",
        "run.val_every=2",
        "run.save_every=2",
        "run.progress=false",
        "run.threads=1",
        f"data.train=[{str(train)!r}]",
        "data.crop_size=16",
        "data.batch_size=2",
        "data.num_workers=0",
        "model.num_features=8",
        "model.num_blocks=1",
        "discriminator.num_features=8",
        "model.init_from=''",
        f"val.folder={str(val)!r}" if val else "val.folder=''",
        "val.crop_size=16",
        "val.max_images=2",
        "val.seam_images=1",
    ]
    if rrdb:
        values.append("model.growth_channels=4")
    return values
