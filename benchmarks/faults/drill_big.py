"""Drill 4: a very large valid texture is processed, tiled, within bounded memory; and 16-bit,
alpha, palette and bottom-left TGA files keep what they are through the real command.

The big texture is built from a real one (tiled up to ``side`` px, RGBA with real alpha) and run
through ``upscale`` as a subprocess, whose own peak RSS is measured. Memory above the same command
on a 64 px texture (interpreter, torch, model) is reported against the size of the decoded input
(``side**2 * 4`` bytes).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from upscaler.engine.load import load_model
from upscaler.formats.image import ImageFile, read_image
from upscaler.process import TextureOptions, upscale_images

from .corpus import VALID, load_patches, source_textures
from .procs import run_upscale

GIB = 1 << 30


def make_big(path: Path, side: int, seed: int = 0, mode: str = "RGBA") -> None:
    """A ``side`` x ``side`` PNG tiled from a real texture crop (RGBA: with real alpha)."""
    rng = np.random.default_rng(seed)
    rgba = [
        p for p in load_patches(source_textures(), rng, 16, sides=(200, 257)) if p.shape[2] == 4
    ]
    tile = (
        rgba[0]
        if rgba
        else np.dstack(
            [load_patches(source_textures(), rng, 1)[0][..., :3]] + [np.full((1, 1), 255, np.uint8)]
        )
    )
    reps = (-(-side // tile.shape[0]), -(-side // tile.shape[1]), 1)
    pixels = np.tile(tile, reps)[:side, :side, : len(mode)]
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(path, compress_level=1)


def big_texture(
    work: Path, model: Path, side: int, flags: tuple[str, ...] = (), limit_gib: float = 0
) -> dict[str, Any]:
    """Run the command on one ``side``-px RGBA texture; ``limit_gib`` caps its address space."""
    source = work / f"big{side}.png"
    if not source.is_file():
        make_big(source, side)
    out = work / f"out{side}{''.join(flags).replace('-', '_')}"
    # A cap on the address space, so a runaway allocation fails here instead of starving a
    # shared machine (skipped where util-linux's prlimit is missing).
    capped = limit_gib and shutil.which("prlimit")
    prefix = ("prlimit", f"--as={int(limit_gib * GIB)}", "--") if capped else ()
    cli = run_upscale(source, "-o", out, "--model", model, "-q", *flags, prefix=prefix)
    small = work / "baseline" / "small.png"
    if not small.is_file():
        small.parent.mkdir(parents=True, exist_ok=True)
        make_big(small, 64)
    baseline = run_upscale(small, "-o", work / "baseline-out", "--model", model, "-q", *flags)
    done = out / source.name
    size = None
    if cli.returncode == 0 and done.is_file():
        with Image.open(done) as im:
            size, mode = im.size, im.mode
    input_mb = side * side * 4 / (1 << 20)
    return {
        "side": side,
        "flags": " ".join(flags),
        "exit_code": cli.returncode,
        "output_size": list(size) if size else None,
        "output_mode": mode if size else None,
        "seconds": round(cli.seconds, 1),
        "peak_rss_mb": round(cli.peak_rss_mb),
        "baseline_rss_mb": round(baseline.peak_rss_mb),  # the same command on a 64 px texture
        "input_mb": round(input_mb),
        "rss_above_baseline_per_input_byte": round(
            (cli.peak_rss_mb - baseline.peak_rss_mb) / input_mb, 2
        ),
        "error": (cli.stderr.strip().splitlines() or [f"exit {cli.returncode}"])[-1][:300]
        if cli.returncode
        else "",
    }


def _expected(model: Path, image: ImageFile) -> np.ndarray:
    upscaler = load_model(model)
    options = TextureOptions(seamless="off")
    return upscale_images(upscaler, [image], options, (False, False))[0].pixels


def fidelity(work: Path, model: Path) -> dict[str, Any]:
    """16-bit, alpha, palette and TGA orientation through the real command (``--seamless off``)."""
    rng = np.random.default_rng(3)
    patch = load_patches(source_textures(), rng, 1, sides=(47, 62))[0]
    rgba = np.dstack([patch[..., :3], np.where(patch[..., 1] > 100, 255, 0).astype(np.uint8)])
    tree = work / "fidelity"
    tree.mkdir(parents=True, exist_ok=True)
    dark = (patch[..., 0].astype(np.uint16) * 3)[..., None]  # a dark 16-bit height map (<766)
    import imagecodecs

    (tree / "height16.png").write_bytes(imagecodecs.png_encode(dark[..., 0]))
    Image.fromarray(rgba, "RGBA").save(tree / "cutout.png")
    Image.fromarray(rgba, "RGBA").save(
        tree / "cutout_bl.tga", compression="tga_rle", orientation=-1
    )
    (tree / "palette.png").write_bytes(VALID["png-palette"](patch, rng))
    out = work / "fidelity-out"
    cli = run_upscale(
        tree, "-o", out, "--model", model, "-q", "--seamless", "off", "--precision", "fp32"
    )
    h16 = read_image(out / "height16.png")
    cut, tga = read_image(out / "cutout.png"), read_image(out / "cutout_bl.tga")
    with Image.open(out / "cutout_bl.tga") as im:
        tga_info = (im.info.get("orientation"), im.info.get("compression"))
    with Image.open(tree / "palette.png") as im:
        palette_rgb = np.asarray(im.convert("RGB"))
    palette_expected = _expected(model, ImageFile(np.ascontiguousarray(palette_rgb), "PNG"))
    pal = read_image(out / "palette.png")
    h16_expected = _expected(model, read_image(tree / "height16.png"))
    return {
        "exit_code": cli.returncode,
        "16bit_kept": h16.bits == 16 and h16.pixels.dtype == np.uint16,
        "16bit_max_diff": int(np.abs(h16.pixels.astype(int) - h16_expected.astype(int)).max()),
        "16bit_input_exact": bool(np.array_equal(read_image(tree / "height16.png").pixels, dark)),
        "alpha_kept": cut.channels == 4,
        "alpha_cutout_coverage_in_out": [
            round(float((rgba[..., 3] > 127).mean()), 3),
            round(float((cut.pixels[..., 3] > 127).mean()), 3),
        ],
        "tga_bottom_left_same_pixels_as_png": bool(np.array_equal(tga.pixels, cut.pixels)),
        "tga_orientation_and_rle_kept": tga_info == (-1, "tga_rle"),
        "palette_max_diff_vs_rgb": int(
            np.abs(pal.pixels.astype(int) - palette_expected.astype(int)).max()
        ),
    }
