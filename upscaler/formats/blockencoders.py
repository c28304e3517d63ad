"""The block encoders we can call, each at the settings we use: one small adapter per package.

Every adapter takes ``(H, W, 4)`` uint8 RGBA with H and W multiples of 4 (``bcn`` pads) and
returns the blocks of one format, row by row. Which one writes which format, at which
``--dds-quality``, is ``bcn.CHOICES``; ``benchmarks/bcn.py`` measures them all.

Packages: Pillow and etcpak are dependencies; quicktex (rgbcx's BC1/BC3 search, BC4/BC5) and
ispc-texcomp (Intel's ISPC texture compressor) come with the ``dds`` extra. Notes on each:

* BC1: only Pillow writes 1-bit alpha (3-colour blocks with a transparent index); the others
  encode colour only, so ``bcn`` takes Pillow's blocks wherever a block has a transparent texel.
* BC3's colour half is a 4-colour BC1 block, as BC2's is: BC2 is built from BC3's colour blocks.
* BC4/BC5: ISPC reads one or two bytes per texel, not RGBA.
* BC7: etcpak's encoder (bc7enc) weighs error in YCbCr with ``perceptual`` (colour maps) or
  evenly in RGBA (normals, data); ISPC's weighs RGB(A) evenly and has separate profiles for
  surfaces with alpha.
"""

from __future__ import annotations

import functools
import importlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

Blocks = Callable[[np.ndarray], bytes]


@dataclass(frozen=True)
class Encoder:
    """One encoder at one setting, for one block format."""

    name: str  # what notes and the benchmark call it, e.g. "quicktex level 8"
    package: str  # what pip installs
    module: str  # what Python imports (the availability check)
    block: int
    run: Blocks


@functools.cache
def installed(module: str) -> bool:
    """Whether ``module`` imports here (a broken binary counts as missing)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# -- Pillow --------------------------------------------------------------------------------------


def _pillow(pixel_format: str, mode: str = "RGBA") -> Blocks:
    def run(rgba: np.ndarray) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        image = Image.fromarray(np.ascontiguousarray(rgba[:, :, : len(mode)]), mode)
        image.save(buffer, format="DDS", pixel_format=pixel_format)
        data = buffer.getvalue()
        return data[148 if data[84:88] == b"DX10" else 128 :]

    return run


# -- etcpak --------------------------------------------------------------------------------------


def _etcpak(block: int) -> Blocks:
    def run(rgba: np.ndarray) -> bytes:
        import etcpak

        h, w = rgba.shape[:2]
        return bytes(getattr(etcpak, f"compress_bc{block}")(rgba.tobytes(), w, h))

    return run


# bc7enc's perceptual weights are Y, Cb, Cr, A = 128, 64, 16, 32; alpha is raised to luma's:
# at 32 a cutout's alpha came back up to 160 levels off (three x4 outputs with alpha, 16
# partitions: alpha 40.6 -> 42.3 dB, alpha-test flips 0.36 -> 0.32%, kept texels' luma 46.1 ->
# 45.4 dB).
PERCEPTUAL_WEIGHTS = [128, 64, 16, 128]


def _etcpak_bc7(perceptual: bool, partitions: int, uber: int) -> Blocks:
    """bc7enc through etcpak: ``partitions`` (0-64) mode 1 partitions tried, ``uber`` (0-4)
    extra endpoint search."""

    def run(rgba: np.ndarray) -> bytes:
        import etcpak

        params = etcpak.BC7CompressBlockParams()
        if perceptual:
            params.init_perceptual_weights()
            params.m_weights = PERCEPTUAL_WEIGHTS
        else:
            params.init_linear_weights()
        params.m_max_partitions = partitions
        params.m_uber_level = uber
        h, w = rgba.shape[:2]
        return bytes(etcpak.compress_bc7(rgba.tobytes(), w, h, params))

    return run


# -- quicktex ------------------------------------------------------------------------------------


def _quicktex(block: int, level: int = 0) -> Blocks:
    """rgbcx's BC1 search at ``level`` (0-18; BC3 is that plus BC4 alpha), or BC4/BC5."""

    def run(rgba: np.ndarray) -> bytes:
        import quicktex

        h, w = rgba.shape[:2]
        texture = quicktex.RawTexture.frombytes(rgba.tobytes(), w, h)
        return bytes(_quicktex_encoder(block, level).encode(texture).tobytes())

    return run


_LOCAL = threading.local()


def _quicktex_encoder(block: int, level: int) -> Any:
    """quicktex's encoder objects, kept per thread: building one takes ~13 ms (its tables), as
    long as encoding a 256 x 256 level, and a mip chain asks for one per level."""
    cache: dict[tuple[int, int], Any] = _LOCAL.__dict__.setdefault("quicktex", {})
    if (block, level) not in cache:
        if block == 1:
            from quicktex.s3tc.bc1 import BC1Encoder

            encoder = BC1Encoder(level, BC1Encoder.ColorMode.ThreeColor)
        elif block == 3:
            from quicktex.s3tc.bc3 import BC3Encoder

            encoder = BC3Encoder(level)
        elif block == 4:
            from quicktex.s3tc.bc4 import BC4Encoder

            encoder = BC4Encoder(0)
        else:
            from quicktex.s3tc.bc5 import BC5Encoder

            encoder = BC5Encoder(0, 1)
        cache[(block, level)] = encoder
    return cache[(block, level)]


# -- ISPC ----------------------------------------------------------------------------------------


def _ispc(block: int, profile: str = "") -> Blocks:
    def run(rgba: np.ndarray) -> bytes:
        import ispc_texcomp as ispc

        h, w = rgba.shape[:2]
        channels = {4: 1, 5: 2}.get(block, 4)
        data = np.ascontiguousarray(rgba[:, :, :channels]).tobytes()
        surface = ispc.RGBASurface(data, w, h, w * channels)
        if block == 7:
            name = profile if int(rgba[:, :, 3].min()) == 255 else f"alpha_{profile}"
            settings = cast(Any, ispc.BC7EncSettings).from_profile(name)  # a profile name
            return bytes(ispc.compress_blocks_bc7(surface, settings))
        data = bytes(getattr(ispc, f"compress_blocks_bc{block}")(surface))
        return data[: h * w // 2] if block == 1 else data  # its BC1 buffer is twice too long

    return run


def _all() -> list[Encoder]:
    # (package, module) of each
    pil, etc, qt, isp = ("Pillow", "PIL"), ("etcpak",) * 2, ("quicktex",) * 2, ISPC_PACKAGE
    found = [
        Encoder("Pillow", *pil, 1, _pillow("DXT1")),
        Encoder("Pillow", *pil, 3, _pillow("DXT5")),
        Encoder("Pillow", *pil, 5, _pillow("BC5", "RGB")),
        Encoder("etcpak", *etc, 1, _etcpak(1)),
        Encoder("etcpak", *etc, 3, _etcpak(3)),
        Encoder("etcpak", *etc, 4, _etcpak(4)),
        Encoder("etcpak", *etc, 5, _etcpak(5)),
        Encoder("quicktex", *qt, 4, _quicktex(4)),
        Encoder("quicktex", *qt, 5, _quicktex(5)),
    ]
    for block in (1, 3, 4, 5):
        found.append(Encoder("ISPC", *isp, block, _ispc(block)))
    for level in QUICKTEX_LEVELS:
        for block in (1, 3):
            found.append(Encoder(f"quicktex level {level}", *qt, block, _quicktex(block, level)))
    for perceptual in (True, False):
        weights = "perceptual" if perceptual else "uniform"
        for partitions, uber in ETCPAK_BC7:
            run = _etcpak_bc7(perceptual, partitions, uber)
            name = f"etcpak {weights} p{partitions}" + (f" u{uber}" if uber else "")
            found.append(Encoder(name, *etc, 7, run))
    for profile in ISPC_BC7:
        found.append(Encoder(f"ISPC {profile}", *isp, 7, _ispc(7, profile)))
    return found


ISPC_PACKAGE = ("ispc-texcomp", "ispc_texcomp")
# The settings the benchmark compares (the slow ends only where they were worth measuring).
QUICKTEX_LEVELS = (3, 5, 8, 9, 10, 18)
ETCPAK_BC7 = ((0, 0), (4, 0), (16, 0), (64, 0), (64, 2), (64, 4))  # (partitions, uber level)
ISPC_BC7 = ("ultrafast", "veryfast", "fast", "basic")


@functools.cache
def registry() -> dict[tuple[int, str], Encoder]:
    """Every encoder by (block format, name)."""
    return {(e.block, e.name): e for e in _all()}
