"""Rebuild the small real-texture files in this folder from the project's validation textures.

    PYTHONPATH=. python tests/data/make_data.py ../shared/data/textures   # needs quicktex

Crops and reductions of Red Eclipse textures (see LICENSE.md). The DDS files are written by tools
other than ours, so that reading them tests our reader against someone else's writer: quicktex
(BC1/BC3/BC4/BC5 with mips, legacy FourCC headers), or Pillow / etcpak block encoders inside the
plain header packing below (BC1 with 1-bit alpha, DX10 BC7 sRGB, uncompressed layouts). Mip
levels are Pillow Lanczos reductions, as simple tools make them.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def _crop(path: Path, box: tuple[int, int, int, int]) -> Image.Image:
    with Image.open(path) as im:
        return im.crop(box).copy()


def _reduce_tileable(path: Path, size: tuple[int, int]) -> Image.Image:
    """Box-reduce a tileable texture to ``size`` (a whole divisor grid keeps it tileable)."""
    with Image.open(path) as im:
        return im.convert("RGB").reduce((im.width // size[0], im.height // size[1]))


def _reduce_normals(path: Path, factor: int) -> Image.Image:
    """Average vectors over factor x factor blocks and renormalise."""
    with Image.open(path) as im:
        v = np.asarray(im.convert("RGB"), dtype=np.float64) / 255 * 2 - 1
    h, w = v.shape[0] // factor, v.shape[1] // factor
    v = v[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    return Image.fromarray(np.round((v + 1) / 2 * 255).astype(np.uint8), "RGB")


def _header(w: int, h: int, mips: int, pf: bytes, dx10: bytes = b"", linear: int = 0) -> bytes:
    flags = 0x1 | 0x2 | 0x4 | 0x1000 | (0x20000 if mips > 1 else 0) | 0x80000
    caps = 0x1000 | (0x400008 if mips > 1 else 0)
    head = b"DDS " + struct.pack("<7I", 124, flags, h, w, linear, 0, mips) + bytes(44)
    return head + pf + struct.pack("<5I", caps, 0, 0, 0, 0) + dx10


def _fourcc_pf(code: bytes) -> bytes:
    return struct.pack("<2I4s5I", 32, 0x4, code, 0, 0, 0, 0, 0)


def _mask_pf(flags: int, bits: int, masks: tuple[int, int, int, int]) -> bytes:
    return struct.pack("<2I4s5I", 32, flags, b"\0\0\0\0", bits, *masks)


def _levels(image: Image.Image) -> list[Image.Image]:
    levels = [image]
    while levels[-1].size != (1, 1):
        w, h = levels[-1].size
        levels.append(image.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS))
    return levels


def _pillow_blocks(image: Image.Image, pixel_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "DDS", pixel_format=pixel_format)
    return buffer.getvalue()[128:]


def _pack(pixels: np.ndarray, masks: tuple[int, ...], step: int) -> bytes:
    value = np.zeros(pixels.shape[:2], dtype=np.uint64)
    for c, mask in enumerate(masks):
        if mask:
            shift = (mask & -mask).bit_length() - 1
            value |= pixels[:, :, c].astype(np.uint64) << np.uint64(shift)
    out = np.stack([(value >> np.uint64(8 * i)) & np.uint64(255) for i in range(step)], axis=2)
    return out.astype(np.uint8).tobytes()


def main(shared: Path) -> None:
    import etcpak
    import quicktex.dds as qdds
    from quicktex.s3tc.bc1 import BC1Encoder
    from quicktex.s3tc.bc3 import BC3Encoder
    from quicktex.s3tc.bc4 import BC4Encoder
    from quicktex.s3tc.bc5 import BC5Encoder

    val = shared / "val"
    rock = _reduce_tileable(val / "color/red_jojo_redrock01.png", (64, 32))  # 8x16 boxes
    rock.crop((0, 0, 64, 32)).save(HERE / "redrock01_tile.png")
    normal = _reduce_normals(val / "normal/red_jojo_grass01_n.png", 8)  # 64x64
    normal.crop((3, 5, 47, 41)).save(HERE / "grass01_n.png")  # 44x36
    grate = _crop(val / "alpha/red_jojo_grate01_skin.png", (140, 180, 188, 220)).convert("RGBA")
    grate.save(HERE / "grate01_skin.png")  # 48x40 cutout
    jar = _crop(shared / "train/alpha/red_mikeplus64_jar_diffuse2.png", (336, 224, 372, 256))
    jar.convert("RGBA").save(HERE / "jar_diffuse2.png")  # 36x32 blended
    sand = _crop(val / "color/red_jojo_sand01.png", (10, 20, 49, 51)).convert("L")
    sand.save(HERE / "sand01_rough.png")  # 39x31 8-bit data map
    # A 16-bit height map: the sand's luminance, smoothed in float so all 16 bits carry data.
    lum = np.asarray(sand, dtype=np.float64)
    smooth = (lum + np.roll(lum, 1, 0) + np.roll(lum, 1, 1) + np.roll(lum, (1, 1), (0, 1))) / 4
    height = np.round(smooth / 255 * 65535).astype(np.uint16)
    import imagecodecs

    (HERE / "sand01_height16_h.png").write_bytes(imagecodecs.png_encode(height))
    rock.quantize(colors=16, dither=Image.Dither.NONE).crop((0, 0, 40, 24)).save(
        HERE / "redrock01_palette.png"
    )

    # DDS written by quicktex: legacy FourCC headers, full mip chains.
    qdds.encode(grate.crop((0, 0, 40, 28)), BC3Encoder(5), "DXT5").save(HERE / "grate01_dxt5.dds")
    qdds.encode(normal.crop((0, 0, 40, 28)).convert("RGBA"), BC5Encoder(0, 1), "ATI2").save(
        HERE / "grass01_ati2_n.dds"
    )
    qdds.encode(sand.crop((0, 0, 36, 28)).convert("RGBA"), BC4Encoder(0), "ATI1").save(
        HERE / "sand01_ati1_rough.dds"
    )
    qdds.encode(rock.crop((0, 0, 40, 24)).convert("RGBA"), BC1Encoder(5), "DXT1").save(
        HERE / "redrock01_dxt1.dds"
    )
    # BC1 with 1-bit alpha (Pillow's encoder), legacy header, mips.
    cut = grate.crop((0, 0, 40, 28))
    a = np.asarray(cut)[:, :, 3]
    cut.putalpha(Image.fromarray(np.where(a >= 128, 255, 0).astype(np.uint8)))
    levels = _levels(cut)
    body = b"".join(_pillow_blocks(level, "DXT1") for level in levels)
    (HERE / "grate01_dxt1a.dds").write_bytes(
        _header(40, 28, len(levels), _fourcc_pf(b"DXT1"), linear=10 * 7 * 8) + body
    )
    # DX10 BC7_UNORM_SRGB (etcpak's BC7 encoder), mips.
    tile = rock.crop((0, 0, 32, 32)).convert("RGBA")
    levels = _levels(tile)
    body = b""
    for level in levels:
        w, h = level.size
        padded = np.zeros((-(-h // 4) * 4, -(-w // 4) * 4, 4), np.uint8)
        padded[:h, :w] = np.asarray(level)
        padded[h:, :w] = padded[h - 1 : h, :w]
        padded[:, w:] = padded[:, w - 1 : w]
        body += etcpak.compress_bc7(padded.tobytes(), padded.shape[1], padded.shape[0], None)
    dx10 = struct.pack("<5I", 99, 3, 0, 1, 0)
    (HERE / "redrock01_bc7_srgb.dds").write_bytes(
        _header(32, 32, len(levels), _fourcc_pf(b"DX10"), dx10, linear=8 * 8 * 16) + body
    )
    # Legacy uncompressed A8R8G8B8 (BGRA bytes), mips; and DX10 R16_UNORM, one level.
    masks = (0xFF0000, 0xFF00, 0xFF, 0xFF000000)
    levels = _levels(jar.convert("RGBA").crop((0, 0, 35, 29)))
    body = b"".join(_pack(np.asarray(level), masks, 4) for level in levels)
    pf = _mask_pf(0x40 | 0x1, 32, masks)
    (HERE / "jar_a8r8g8b8.dds").write_bytes(_header(35, 29, len(levels), pf) + body)
    dx10 = struct.pack("<5I", 56, 3, 0, 1, 0)
    (HERE / "sand01_r16_h.dds").write_bytes(
        _header(39, 31, 1, _fourcc_pf(b"DX10"), dx10) + height.astype("<u2").tobytes()
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared/data/textures")
